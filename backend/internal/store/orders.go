package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

type orderRow struct {
	ID                string `gorm:"primaryKey"`
	AccountID         int64
	LeadID            int64
	PipelineID        int64
	StageID           int64
	ChatID            int64
	MessageID         int64
	Status            string
	Active            bool
	GroupText         string
	ExecutorID        int64
	ExecutorName      string
	ExecutorUsername  string
	TakenAt           *time.Time
	FailReason        string
	LeadUpdatedAt     *time.Time
	NotedAt           *time.Time
	CardMessageID     int64
	CardText          string
	PrevResponsibleID int64
	PostedAt          *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

func (orderRow) TableName() string { return "orders" }

func (r orderRow) toOrder() dispatch.Order {
	return dispatch.Order{ID: r.ID, AccountID: r.AccountID, LeadID: r.LeadID, PipelineID: r.PipelineID, StageID: r.StageID,
		ChatID: r.ChatID, MessageID: int(r.MessageID), Status: dispatch.OrderStatus(r.Status), Active: r.Active,
		GroupText: r.GroupText, ExecutorID: r.ExecutorID, ExecutorName: r.ExecutorName, ExecutorUsername: r.ExecutorUsername,
		TakenAt: r.TakenAt, FailReason: r.FailReason, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		CardMessageID: int(r.CardMessageID), CardText: r.CardText, PrevResponsibleID: r.PrevResponsibleID}
}

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

// moveOrder is every change of an order's status: one conditional UPDATE
// whose WHERE admits only the statuses that dispatch.Lifecycle lets become
// to, so of concurrent writers exactly one changes the row. A press proves
// a post only while none is recorded (message_id = 0). It reports whether
// the row changed.
func moveOrder(g *gorm.DB, to dispatch.OrderStatus, pressed bool, where string, args []any, set map[string]any) (bool, error) {
	from := dispatch.Sources(to, pressed)
	byPress := []string{}
	for _, st := range from {
		if !dispatch.CanBecome(st, to, false) {
			byPress = append(byPress, string(st))
		}
	}
	cond := g.Model(&orderRow{}).Where(where, args...).Where("status IN ?", statusStrings(from))
	if len(byPress) > 0 {
		cond = cond.Where("(status NOT IN ? OR message_id = 0)", byPress)
	}
	set["status"] = string(to)
	res := cond.Updates(set)
	return res.RowsAffected == 1, res.Error
}

func statusStrings(in []dispatch.OrderStatus) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = string(s)
	}
	return out
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
// is the credential of a button press, so an order neither posted in the chat
// nor escalated to it (the fallback chat) is not found.
func (db *DB) OrderInChat(ctx context.Context, chatID int64, id string) (dispatch.Order, error) {
	r, _, err := orderSeenFrom(db.gorm.WithContext(ctx), chatID, id)
	if err != nil {
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
	posted, err := moveOrder(db.gorm.WithContext(ctx), dispatch.OrderOpen, false, "id = ?", []any{id},
		map[string]any{"message_id": messageID, "group_text": text, "updated_at": db.utcNow(), "posted_at": postedAt(db.utcNow())})
	return posted, translate(err, "mark posted")
}

// postedAt sets an order's posted_at once: the first proof of the post (its
// recording, or a press on it) is when it went out, for the statistics.
func postedAt(now time.Time) clause.Expr {
	return gorm.Expr("COALESCE(posted_at, ?)", now)
}

// ConfirmPosted marks a "posting" order open with the message a user pressed.
func (db *DB) ConfirmPosted(ctx context.Context, chatID int64, id string, messageID int) (dispatch.Order, error) {
	_, err := moveOrder(db.gorm.WithContext(ctx), dispatch.OrderOpen, true, "id = ? AND chat_id = ? AND message_id = 0", []any{id, chatID},
		map[string]any{"message_id": messageID, "updated_at": db.utcNow(), "posted_at": postedAt(db.utcNow())})
	if err != nil {
		return dispatch.Order{}, translate(err, "confirm posted")
	}
	return db.OrderInChat(ctx, chatID, id)
}

// RecordMessage stores the message id of an order's post whatever its status
// (a withdrawal may have raced the post).
func (db *DB) RecordMessage(ctx context.Context, id string, messageID int, text string) error {
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("id = ? AND message_id = 0", id).
		Updates(map[string]any{"message_id": messageID, "group_text": text, "updated_at": db.utcNow(), "posted_at": postedAt(db.utcNow())}).Error
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
	r, main, err := orderSeenFrom(tx.g, chatID, id)
	if err != nil {
		return dispatch.Order{}, translate(err, "order "+id)
	}
	if !main {
		// A press in the fallback chat: its message is not the order's post,
		// so it neither proves nor records one.
		messageID = 0
	}
	won, err := moveOrder(tx.g, dispatch.OrderTaken, messageID != 0, "id = ? AND chat_id = ?", []any{id, r.ChatID},
		map[string]any{"executor_id": e.TelegramID, "executor_name": e.FullName(), "executor_username": e.Username,
			"taken_at": now, "updated_at": now, "posted_at": postedAt(now),
			"message_id": gorm.Expr("CASE WHEN message_id = 0 THEN ? ELSE message_id END", messageID)})
	if err != nil {
		return dispatch.Order{}, translate(err, "take order")
	}
	if err := tx.g.Where("id = ?", id).Take(&r).Error; err != nil {
		return dispatch.Order{}, translate(err, "order "+id)
	}
	if won {
		return r.toOrder(), nil
	}
	if r.Status == string(dispatch.OrderTaken) {
		return r.toOrder(), dispatch.ErrAlreadyTaken
	}
	return r.toOrder(), dispatch.ErrOrderClosed
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
	now := tx.db.utcNow()
	// Two steps, each conditional: an order the lifecycle lets go becomes
	// withdrawn, and whatever it is then stops being the deal's current one.
	withdrawn, err := moveOrder(tx.g, dispatch.OrderWithdrawn, false, "id = ? AND active = ?", []any{r.ID, true},
		map[string]any{"updated_at": now})
	if err != nil {
		return dispatch.Order{}, false, translate(err, "withdraw order")
	}
	if !withdrawn && r.toOrder().CanWithdraw() {
		// Taken between the read and the UPDATE: report it as it is now,
		// so the caller does not tidy the post of a taken order as withdrawn.
		if err := tx.g.Where("id = ?", r.ID).Take(&r).Error; err != nil {
			return dispatch.Order{}, false, translate(err, "reread order")
		}
	}
	res := tx.g.Model(&orderRow{}).Where("id = ? AND active = ?", r.ID, true).Updates(map[string]any{"active": false, "updated_at": now})
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
			"(status IN ? AND taken_at > ? AND (lead_updated_at IS NULL OR noted_at IS NULL)))",
			accountID, dispatch.OrderPosting, assignedStatuses(), since.UTC()).
		Order("created_at").Limit(500).Find(&rows).Error
	if err != nil {
		return nil, translate(err, "unfinished orders")
	}
	out := make([]Unfinished, len(rows))
	for i, r := range rows {
		out[i] = Unfinished{OrderID: r.ID, Post: r.Status == string(dispatch.OrderPosting),
			UpdateLead: r.Status != string(dispatch.OrderPosting) && r.LeadUpdatedAt == nil,
			AddNote:    r.Status != string(dispatch.OrderPosting) && r.NotedAt == nil}
	}
	return out, nil
}

// FailOrder marks an order that cannot be posted.
func (db *DB) FailOrder(ctx context.Context, id, reason string) error {
	_, err := moveOrder(db.gorm.WithContext(ctx), dispatch.OrderFailed, false, "id = ?", []any{id},
		map[string]any{"active": false, "fail_reason": reason, "updated_at": db.utcNow()})
	return translate(err, "fail order")
}

// CountOrders counts an account's orders, for tests and metrics.
func (db *DB) CountOrders(ctx context.Context, accountID int64) (int64, error) {
	var n int64
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("account_id = ?", accountID).Count(&n).Error
	return n, translate(err, "count orders")
}

// MoveAssigned moves an order in an executor's hands to `to` (a status of the
// executor's path, a release, or the deal ended under them): one conditional
// UPDATE from the lifecycle, which also demands the order's executor when
// executorID is not 0 (a press), so of any number of presses one changes the
// row and a stranger's changes nothing. A release or an end also ends the
// round (done leaves that to the deal's stage, like the take). It reports the order as it is now and whether this
// call moved it.
func (tx *Tx) MoveAssigned(accountID int64, id string, executorID int64, to dispatch.OrderStatus) (dispatch.Order, bool, error) {
	now := tx.db.utcNow()
	where, args := "id = ? AND account_id = ?", []any{id, accountID}
	if executorID != 0 {
		where, args = where+" AND executor_id = ?", append(args, executorID)
	}
	set := map[string]any{"updated_at": now}
	if to == dispatch.OrderReleased || to == dispatch.OrderEnded {
		// The deal is searched again or left the flow: a new round may begin.
		set["active"] = false
	}
	moved, err := moveOrder(tx.g, to, false, where, args, set)
	if err != nil {
		return dispatch.Order{}, false, translate(err, "move order to "+string(to))
	}
	var r orderRow
	if err := tx.g.Where("id = ? AND account_id = ?", id, accountID).Take(&r).Error; err != nil {
		return dispatch.Order{}, false, translate(err, "order "+id)
	}
	return r.toOrder(), moved, nil
}

// SetCard records the executor's private card, which status edits rewrite.
func (db *DB) SetCard(ctx context.Context, id string, messageID int, text string) error {
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("id = ?", id).
		Updates(map[string]any{"card_message_id": messageID, "card_text": text}).Error
	return translate(err, "set card")
}

// SetPrevResponsible records the deal's responsible user before the take,
// once: a retried write-back reads the deal after its own PATCH.
func (db *DB) SetPrevResponsible(ctx context.Context, id string, userID int64) error {
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("id = ? AND prev_responsible_id = 0", id).
		Update("prev_responsible_id", userID).Error
	return translate(err, "set previous responsible")
}

// ExecutorOrders lists the orders a Telegram user works on now, newest first.
func (db *DB) ExecutorOrders(ctx context.Context, telegramID int64) ([]dispatch.Order, error) {
	var rows []orderRow
	err := db.gorm.WithContext(ctx).Where("executor_id = ? AND status IN ?", telegramID,
		statusStrings(dispatch.Sources(dispatch.OrderDone, false))).Order("taken_at DESC").Limit(20).Find(&rows).Error
	if err != nil {
		return nil, translate(err, "executor orders")
	}
	out := make([]dispatch.Order, len(rows))
	for i, r := range rows {
		out[i] = r.toOrder()
	}
	return out, nil
}

// InProgressOrder returns the deal's latest order while its executor works
// on it, current round or not (the "executor found" move ends the round).
func (db *DB) InProgressOrder(ctx context.Context, accountID, leadID int64) (dispatch.Order, error) {
	var r orderRow
	err := db.gorm.WithContext(ctx).Where("account_id = ? AND lead_id = ? AND status IN ?", accountID, leadID,
		statusStrings(dispatch.Sources(dispatch.OrderDone, false))).Order("created_at DESC, id DESC").Take(&r).Error
	if err != nil {
		return dispatch.Order{}, translate(err, fmt.Sprintf("order in progress of lead %d", leadID))
	}
	return r.toOrder(), nil
}

// HasCurrentOrder reports whether a deal has an order that a change of the
// deal may concern: its current one (active) or one an executor works on.
// One query for ActiveOrder's and InProgressOrder's question.
func (db *DB) HasCurrentOrder(ctx context.Context, accountID, leadID int64) (bool, error) {
	var ids []string
	err := db.gorm.WithContext(ctx).Model(&orderRow{}).Where("account_id = ? AND lead_id = ? AND (active = ? OR status IN ?)",
		accountID, leadID, true, statusStrings(dispatch.Sources(dispatch.OrderDone, false))).Limit(1).Pluck("id", &ids).Error
	if err != nil {
		return false, translate(err, fmt.Sprintf("current order of lead %d", leadID))
	}
	return len(ids) > 0, nil
}

// LeadUpdated reports whether the take's write-back reached the deal.
func (db *DB) LeadUpdated(ctx context.Context, id string) (bool, error) {
	var r orderRow
	if err := db.gorm.WithContext(ctx).Select("lead_updated_at").Where("id = ?", id).Take(&r).Error; err != nil {
		return false, translate(err, "order "+id)
	}
	return r.LeadUpdatedAt != nil, nil
}

// assignedStatuses are the statuses of an order an executor took (in hand or done).
func assignedStatuses() []string {
	return append(statusStrings(dispatch.Sources(dispatch.OrderDone, false)), string(dispatch.OrderDone))
}

// SetGroupText stores a re-rendered post of an order not taken yet; it
// reports whether the text changed.
func (tx *Tx) SetGroupText(id, text string) (bool, error) {
	res := tx.g.Model(&orderRow{}).Where("id = ? AND status IN ? AND group_text <> ?", id,
		[]string{string(dispatch.OrderPosting), string(dispatch.OrderOpen)}, text).
		Updates(map[string]any{"group_text": text, "updated_at": tx.db.utcNow()})
	return res.RowsAffected == 1, translate(res.Error, "set group text")
}
