package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

type orderRow struct {
	ID               string `gorm:"primaryKey"`
	AccountID        int64
	LeadID           int64
	PipelineID       int64
	StageID          int64
	ChatID           int64
	MessageID        int64
	Status           string
	Active           bool
	GroupText        string
	ExecutorID       int64
	ExecutorName     string
	ExecutorUsername string
	TakenAt          *time.Time
	FailReason       string
	LeadUpdatedAt    *time.Time
	NotedAt          *time.Time
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

func (orderRow) TableName() string { return "orders" }

func (r orderRow) toOrder() dispatch.Order {
	return dispatch.Order{ID: r.ID, AccountID: r.AccountID, LeadID: r.LeadID, PipelineID: r.PipelineID, StageID: r.StageID,
		ChatID: r.ChatID, MessageID: int(r.MessageID), Status: dispatch.OrderStatus(r.Status), Active: r.Active,
		GroupText: r.GroupText, ExecutorID: r.ExecutorID, ExecutorName: r.ExecutorName, ExecutorUsername: r.ExecutorUsername,
		TakenAt: r.TakenAt, FailReason: r.FailReason, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type revealRow struct {
	ID          string `gorm:"primaryKey"`
	AccountID   int64
	OrderID     string
	TelegramID  int64
	Kind        string
	RequestedAt time.Time
	SentAt      *time.Time
}

func (revealRow) TableName() string { return "contact_reveals" }

// Tx is one unit of work: store writes and the jobs they cause commit together.
type Tx struct {
	db *DB
	g  *gorm.DB
}

// InTx runs fn in a transaction.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	return db.transaction(ctx, func(g *gorm.DB) error { return fn(&Tx{db: db, g: g}) })
}

// SQL is the transaction for libraries that enqueue into it (River's InsertTx).
func (tx *Tx) SQL() *sql.Tx {
	return tx.g.Statement.ConnPool.(*sql.Tx)
}

// CreateOrder opens a new round for a deal. It returns ErrConflict when the
// deal already has a current order (the partial unique index decides, so this
// holds across processes).
func (tx *Tx) CreateOrder(o dispatch.Order) (dispatch.Order, error) {
	now := tx.db.utcNow()
	row := orderRow{ID: uuid.NewString(), AccountID: o.AccountID, LeadID: o.LeadID, PipelineID: o.PipelineID, StageID: o.StageID,
		ChatID: o.ChatID, Status: string(o.Status), Active: true, GroupText: o.GroupText, FailReason: o.FailReason,
		CreatedAt: now, UpdatedAt: now}
	if o.Status == dispatch.OrderFailed {
		row.Active = false
	}
	// A savepoint keeps a unique violation from aborting the caller's
	// PostgreSQL transaction.
	err := tx.g.Transaction(func(g *gorm.DB) error { return g.Create(&row).Error })
	if err != nil {
		return dispatch.Order{}, translate(err, fmt.Sprintf("create order for lead %d", o.LeadID))
	}
	return row.toOrder(), nil
}

// ActiveOrder returns the deal's current order.
func (db *DB) ActiveOrder(ctx context.Context, accountID, leadID int64) (dispatch.Order, error) {
	var r orderRow
	err := db.gorm.WithContext(ctx).Where("account_id = ? AND lead_id = ? AND active = ?", accountID, leadID, true).Take(&r).Error
	if err != nil {
		return dispatch.Order{}, translate(err, fmt.Sprintf("active order of lead %d", leadID))
	}
	return r.toOrder(), nil
}

// LatestOrder returns the deal's most recent order, current or not.
func (db *DB) LatestOrder(ctx context.Context, accountID, leadID int64) (dispatch.Order, error) {
	var r orderRow
	err := db.gorm.WithContext(ctx).Where("account_id = ? AND lead_id = ?", accountID, leadID).
		Order("created_at DESC, id DESC").Take(&r).Error
	if err != nil {
		return dispatch.Order{}, translate(err, fmt.Sprintf("latest order of lead %d", leadID))
	}
	return r.toOrder(), nil
}

// Order returns one of an account's orders.
func (db *DB) Order(ctx context.Context, accountID int64, id string) (dispatch.Order, error) {
	var r orderRow
	if err := db.gorm.WithContext(ctx).Where("account_id = ? AND id = ?", accountID, id).Take(&r).Error; err != nil {
		return dispatch.Order{}, translate(err, "order "+id)
	}
	return r.toOrder(), nil
}

// OrderInChat returns an order by id as seen from a Telegram chat: the chat
// is the credential of a button press, so an order of another chat is not found.
func (db *DB) OrderInChat(ctx context.Context, chatID int64, id string) (dispatch.Order, error) {
	var r orderRow
	if err := db.gorm.WithContext(ctx).Where("chat_id = ? AND id = ?", chatID, id).Take(&r).Error; err != nil {
		return dispatch.Order{}, translate(err, "order "+id)
	}
	return r.toOrder(), nil
}

// OrderByID returns an order by id alone, for jobs that carry it.
func (db *DB) OrderByID(ctx context.Context, id string) (dispatch.Order, error) {
	var r orderRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return dispatch.Order{}, translate(err, "order "+id)
	}
	return r.toOrder(), nil
}

// MarkPosted records the group message of an order that is still posting.
func (db *DB) MarkPosted(ctx context.Context, id string, messageID int, text string) (bool, error) {
	res := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("id = ? AND status = ?", id, dispatch.OrderPosting).
		Updates(map[string]any{"status": string(dispatch.OrderOpen), "message_id": messageID, "group_text": text, "updated_at": db.utcNow()})
	return res.RowsAffected == 1, translate(res.Error, "mark posted")
}

// ConfirmPosted marks a "posting" order open with the message a user pressed.
func (db *DB) ConfirmPosted(ctx context.Context, chatID int64, id string, messageID int) (dispatch.Order, error) {
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).
		Where("id = ? AND chat_id = ? AND status = ? AND message_id = 0", id, chatID, dispatch.OrderPosting).
		Updates(map[string]any{"status": string(dispatch.OrderOpen), "message_id": messageID, "updated_at": db.utcNow()}).Error
	if err != nil {
		return dispatch.Order{}, translate(err, "confirm posted")
	}
	return db.OrderInChat(ctx, chatID, id)
}

// RecordMessage stores the message id of an order's post whatever its status
// (a withdrawal may have raced the post).
func (db *DB) RecordMessage(ctx context.Context, id string, messageID int, text string) error {
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("id = ? AND message_id = 0", id).
		Updates(map[string]any{"message_id": messageID, "group_text": text, "updated_at": db.utcNow()}).Error
	return translate(err, "record message")
}

// TakeOrder makes executor the winner if the order is still open: one
// conditional UPDATE decides among any number of concurrent presses, on any
// number of processes. The caller enqueues the follow-up jobs in the same tx.
//
// An order still "posting" can be taken too: a press proves its post exists
// (the sender died before recording it), and recording the pressed message
// keeps the post job from sending it again. Without a message (messageID 0)
// there is nothing to record, so a posting order cannot be taken that way.
func (tx *Tx) TakeOrder(chatID int64, messageID int, id string, e dispatch.Executor) (dispatch.Order, error) {
	now := tx.db.utcNow()
	res := tx.g.Model(&orderRow{}).
		Where("id = ? AND chat_id = ? AND (status = ? OR (status = ? AND message_id = 0 AND ? <> 0))", id, chatID, dispatch.OrderOpen, dispatch.OrderPosting, messageID).
		Updates(map[string]any{"status": string(dispatch.OrderTaken), "executor_id": e.TelegramID, "executor_name": e.FullName(),
			"executor_username": e.Username, "taken_at": now, "updated_at": now,
			"message_id": gorm.Expr("CASE WHEN message_id = 0 THEN ? ELSE message_id END", messageID)})
	if res.Error != nil {
		return dispatch.Order{}, translate(res.Error, "take order")
	}
	var r orderRow
	if err := tx.g.Where("id = ? AND chat_id = ?", id, chatID).Take(&r).Error; err != nil {
		return dispatch.Order{}, translate(err, "order "+id)
	}
	if res.RowsAffected == 1 {
		return r.toOrder(), nil
	}
	switch dispatch.OrderStatus(r.Status) {
	case dispatch.OrderTaken:
		return r.toOrder(), dispatch.ErrAlreadyTaken
	default:
		return r.toOrder(), dispatch.ErrOrderClosed
	}
}

// CloseOrder ends the deal's current round (the deal left the search stage or
// was deleted). An order still open or posting becomes withdrawn. It reports
// the order as it was, so the caller can tidy the group post.
func (tx *Tx) CloseOrder(accountID, leadID int64) (dispatch.Order, bool, error) {
	var r orderRow
	err := tx.g.Where("account_id = ? AND lead_id = ? AND active = ?", accountID, leadID, true).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return dispatch.Order{}, false, nil
	}
	if err != nil {
		return dispatch.Order{}, false, translate(err, "find active order")
	}
	updates := map[string]any{"active": false, "updated_at": tx.db.utcNow()}
	if r.Status == string(dispatch.OrderOpen) || r.Status == string(dispatch.OrderPosting) {
		updates["status"] = string(dispatch.OrderWithdrawn)
	}
	res := tx.g.Model(&orderRow{}).Where("id = ? AND active = ?", r.ID, true).Updates(updates)
	if res.Error != nil {
		return dispatch.Order{}, false, translate(res.Error, "close order")
	}
	return r.toOrder(), res.RowsAffected == 1, nil
}

// MarkLeadUpdated records that the deal carries the order's executor.
func (db *DB) MarkLeadUpdated(ctx context.Context, id string) error {
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("id = ? AND lead_updated_at IS NULL", id).
		Update("lead_updated_at", db.utcNow()).Error
	return translate(err, "mark lead updated")
}

// MarkNoted records that the deal carries the order's note.
func (db *DB) MarkNoted(ctx context.Context, id string) error {
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("id = ? AND noted_at IS NULL", id).
		Update("noted_at", db.utcNow()).Error
	return translate(err, "mark noted")
}

// Unfinished is an order with work left that its jobs should have done.
type Unfinished struct {
	OrderID                   string
	Post, UpdateLead, AddNote bool
}

// UnfinishedOrders lists an account's orders still posting, and its orders
// taken since `since` whose write-back to amoCRM did not finish.
func (db *DB) UnfinishedOrders(ctx context.Context, accountID int64, since time.Time) ([]Unfinished, error) {
	var rows []orderRow
	err := db.gorm.WithContext(ctx).
		Where("account_id = ? AND ((status = ? AND active) OR "+
			"(status = ? AND taken_at > ? AND (lead_updated_at IS NULL OR noted_at IS NULL)))",
			accountID, dispatch.OrderPosting, dispatch.OrderTaken, since.UTC()).
		Order("created_at").Limit(500).Find(&rows).Error
	if err != nil {
		return nil, translate(err, "unfinished orders")
	}
	out := make([]Unfinished, len(rows))
	for i, r := range rows {
		out[i] = Unfinished{OrderID: r.ID, Post: r.Status == string(dispatch.OrderPosting),
			UpdateLead: r.Status == string(dispatch.OrderTaken) && r.LeadUpdatedAt == nil,
			AddNote:    r.Status == string(dispatch.OrderTaken) && r.NotedAt == nil}
	}
	return out, nil
}

// FailOrder marks an order that cannot be posted.
func (db *DB) FailOrder(ctx context.Context, id, reason string) error {
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("id = ? AND status = ?", id, dispatch.OrderPosting).
		Updates(map[string]any{"status": string(dispatch.OrderFailed), "active": false, "fail_reason": reason, "updated_at": db.utcNow()}).Error
	return translate(err, "fail order")
}

// CountOrders counts an account's orders, for tests and metrics.
func (db *DB) CountOrders(ctx context.Context, accountID int64) (int64, error) {
	var n int64
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("account_id = ?", accountID).Count(&n).Error
	return n, translate(err, "count orders")
}

// Reveal kinds: a "Get client phone" press, or the winner's private order.
const (
	RevealRequest = "request"
	RevealWinner  = "winner"
)

// CreateReveal records a request for a deal's contact, or returns the one
// this user already has for the order and kind, so repeated presses (even
// concurrent ones) share one reveal. Its id doubles as the /start token when
// the user must open the bot first (Telegram allows A-Z a-z 0-9 _ - up to 64
// characters there).
func (tx *Tx) CreateReveal(o dispatch.Order, telegramID int64, kind string) (dispatch.Reveal, error) {
	row := revealRow{ID: "c" + strings.ReplaceAll(uuid.NewString(), "-", ""), AccountID: o.AccountID, OrderID: o.ID,
		TelegramID: telegramID, Kind: kind, RequestedAt: tx.db.utcNow()}
	err := tx.g.Clauses(clause.OnConflict{DoNothing: true}).Create(&row).Error
	if err != nil {
		return dispatch.Reveal{}, translate(err, "create reveal")
	}
	// A fresh struct: gorm would add the unsaved row's id to the conditions.
	var got revealRow
	if err := tx.g.Where("order_id = ? AND telegram_id = ? AND kind = ?", o.ID, telegramID, kind).Take(&got).Error; err != nil {
		return dispatch.Reveal{}, translate(err, "read reveal")
	}
	if got.ID != row.ID && got.SentAt == nil {
		// Pressed again while unsent: the start link given now must live
		// its full day, not expire with the first one.
		err := tx.g.Model(&revealRow{}).Where("id = ? AND sent_at IS NULL", got.ID).Update("requested_at", row.RequestedAt).Error
		if err != nil {
			return dispatch.Reveal{}, translate(err, "renew reveal")
		}
		got.RequestedAt = row.RequestedAt
	}
	return dispatch.Reveal{ID: got.ID, AccountID: got.AccountID, OrderID: got.OrderID, TelegramID: got.TelegramID,
		RequestedAt: got.RequestedAt, SentAt: got.SentAt}, nil
}

// Reveal returns a contact request of one Telegram user (the token's owner).
func (db *DB) Reveal(ctx context.Context, telegramID int64, id string) (dispatch.Reveal, error) {
	var r revealRow
	if err := db.gorm.WithContext(ctx).Where("id = ? AND telegram_id = ?", id, telegramID).Take(&r).Error; err != nil {
		return dispatch.Reveal{}, translate(err, "reveal")
	}
	return dispatch.Reveal{ID: r.ID, AccountID: r.AccountID, OrderID: r.OrderID, TelegramID: r.TelegramID, RequestedAt: r.RequestedAt, SentAt: r.SentAt}, nil
}

// MarkRevealSent records that the contact reached the user.
func (db *DB) MarkRevealSent(ctx context.Context, id string) error {
	err := db.gorm.WithContext(ctx).Model(&revealRow{}).Where("id = ? AND sent_at IS NULL", id).Update("sent_at", db.utcNow()).Error
	return translate(err, "mark reveal sent")
}
