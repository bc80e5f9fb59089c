package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// The escalation ladder's storage: a pipeline's step times on its rule row,
// an order's timers, and its posts besides the one on the order row.

func (r ruleRow) ladder() dispatch.Ladder {
	return dispatch.Ladder{BumpAfter: time.Duration(r.BumpAfterMin) * time.Minute,
		FallbackAfter: time.Duration(r.FallbackAfterMin) * time.Minute, FallbackChatID: r.FallbackChatID,
		TaskAfter: time.Duration(r.TaskAfterMin) * time.Minute, ExpireAfter: time.Duration(r.ExpireAfterH) * time.Hour}
}

func (r *ruleRow) setLadder(l dispatch.Ladder) {
	r.BumpAfterMin, r.FallbackAfterMin, r.FallbackChatID = int(l.BumpAfter/time.Minute), int(l.FallbackAfter/time.Minute), l.FallbackChatID
	r.TaskAfterMin, r.ExpireAfterH = int(l.TaskAfter/time.Minute), int(l.ExpireAfter/time.Hour)
}

type timerRow struct {
	OrderID   string `gorm:"primaryKey"`
	Kind      string `gorm:"primaryKey"`
	AccountID int64
	DueAt     time.Time
	DoneAt    *time.Time
}

func (timerRow) TableName() string { return "order_timers" }

// AddTimers plans an order's timers; the caller enqueues their jobs in tx.
func (tx *Tx) AddTimers(o dispatch.Order, timers []dispatch.Timer) error {
	for _, t := range timers {
		row := timerRow{OrderID: o.ID, Kind: t.Kind, AccountID: o.AccountID, DueAt: t.At.UTC()}
		if err := tx.g.Clauses(clause.OnConflict{DoNothing: true}).Create(&row).Error; err != nil {
			return translate(err, "add order timer")
		}
	}
	return nil
}

// PendingTimers lists the timers of an account's order that have not fired,
// earliest first; none once the order is no longer open or posting (a take,
// a withdrawal or the deal leaving the search cancelled them).
func (db *DB) PendingTimers(ctx context.Context, accountID int64, orderID string) ([]dispatch.Timer, error) {
	var rows []timerRow
	err := db.gorm.WithContext(ctx).Where("account_id = ? AND order_id = ? AND done_at IS NULL", accountID, orderID).
		Where("EXISTS (SELECT 1 FROM orders WHERE orders.id = order_timers.order_id AND orders.active AND orders.status IN ?)",
			[]string{string(dispatch.OrderPosting), string(dispatch.OrderOpen)}).
		Order("due_at, kind").Find(&rows).Error
	if err != nil {
		return nil, translate(err, "pending timers")
	}
	out := make([]dispatch.Timer, len(rows))
	for i, r := range rows {
		out[i] = dispatch.Timer{Kind: r.Kind, At: r.DueAt}
	}
	return out, nil
}

// FireTimer is the once-gate of a ladder step. Two conditional UPDATEs in tx:
// the order must still be open and current (the row lock it takes on
// PostgreSQL orders this against a take or a withdrawal), and the timer must
// not have fired. It reports the order as it is and whether this call fired
// the timer; the caller does the step's writes and enqueues its jobs in tx.
func (tx *Tx) FireTimer(orderID, kind string) (dispatch.Order, bool, error) {
	var r orderRow
	if err := tx.g.Where("id = ?", orderID).Take(&r).Error; err != nil {
		return dispatch.Order{}, false, translate(err, "order "+orderID)
	}
	res := tx.g.Model(&orderRow{}).Where("id = ? AND status = ? AND active = ?", orderID, dispatch.OrderOpen, true).
		UpdateColumn("updated_at", gorm.Expr("updated_at"))
	if res.Error != nil {
		return dispatch.Order{}, false, translate(res.Error, "hold order")
	}
	if res.RowsAffected == 0 {
		if err := tx.g.Where("id = ?", orderID).Take(&r).Error; err != nil {
			return dispatch.Order{}, false, translate(err, "order "+orderID)
		}
		return r.toOrder(), false, nil
	}
	res = tx.g.Model(&timerRow{}).Where("order_id = ? AND kind = ? AND done_at IS NULL", orderID, kind).
		UpdateColumn("done_at", tx.db.utcNow())
	if res.Error != nil {
		return dispatch.Order{}, false, translate(res.Error, "fire timer")
	}
	return r.toOrder(), res.RowsAffected == 1, nil
}

// ExpireOrder withdraws an open order at its expiry. The order stays the
// deal's current one, so the deal, still in the search stage, is not posted
// again; the deal leaving the stage closes the round as usual.
func (tx *Tx) ExpireOrder(orderID string) (bool, error) {
	moved, err := moveOrder(tx.g, dispatch.OrderWithdrawn, false, "id = ? AND active = ?", []any{orderID, true},
		map[string]any{"updated_at": tx.db.utcNow()})
	return moved, translate(err, "expire order")
}

type postRow struct {
	ID                string `gorm:"primaryKey"`
	AccountID         int64
	OrderID           string
	Kind              string
	ChatID            int64
	MessageID         int64
	ReplacedMessageID int64
	State             string
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

func (postRow) TableName() string { return "order_posts" }

func (r postRow) toPost() dispatch.Post {
	return dispatch.Post{ID: r.ID, AccountID: r.AccountID, OrderID: r.OrderID, Kind: r.Kind, ChatID: r.ChatID,
		MessageID: int(r.MessageID), ReplacedMessageID: int(r.ReplacedMessageID), State: r.State}
}

// AddPost decides one more post of an order (one per kind); its sending job
// is enqueued by the caller in tx.
func (tx *Tx) AddPost(o dispatch.Order, kind string, chatID int64) (dispatch.Post, error) {
	now := tx.db.utcNow()
	row := postRow{ID: uuid.NewString(), AccountID: o.AccountID, OrderID: o.ID, Kind: kind, ChatID: chatID,
		State: dispatch.PostSending, CreatedAt: now, UpdatedAt: now}
	err := tx.g.Transaction(func(g *gorm.DB) error { return g.Create(&row).Error })
	return row.toPost(), translate(err, "add order post")
}

// Post returns one of an order's extra posts.
func (db *DB) Post(ctx context.Context, id string) (dispatch.Post, error) {
	var r postRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return dispatch.Post{}, translate(err, "order post "+id)
	}
	return r.toPost(), nil
}

// CancelPost gives up a post not sent yet: its order was decided first.
func (db *DB) CancelPost(ctx context.Context, id string) error {
	err := db.gorm.WithContext(ctx).Model(&postRow{}).Where("id = ? AND state = ? AND message_id = 0", id, dispatch.PostSending).
		Updates(map[string]any{"state": dispatch.PostCancelled, "updated_at": db.utcNow()}).Error
	return translate(err, "cancel order post")
}

// RecordPost stores the message Telegram made for a post. A bump's message
// becomes the order's post in the same transaction, if the order is still
// open, and the old one is kept as the post to retire. A post the order's
// decision overtook becomes a stray, to be edited to the outcome. It reports
// the post as recorded; recorded is false when a retry finds it done.
func (tx *Tx) RecordPost(id string, messageID int) (dispatch.Post, bool, error) {
	var p postRow
	if err := tx.g.Where("id = ?", id).Take(&p).Error; err != nil {
		return dispatch.Post{}, false, translate(err, "order post "+id)
	}
	if p.MessageID != 0 {
		return p.toPost(), false, nil
	}
	now := tx.db.utcNow()
	state := dispatch.PostStray
	var o orderRow
	if err := tx.g.Where("id = ?", p.OrderID).Take(&o).Error; err != nil {
		return dispatch.Post{}, false, translate(err, "order "+p.OrderID)
	}
	set := map[string]any{"message_id": messageID, "updated_at": now}
	if p.Kind == dispatch.PostBump {
		res := tx.g.Model(&orderRow{}).Where("id = ? AND status = ? AND active = ? AND chat_id = ? AND message_id = ?",
			o.ID, dispatch.OrderOpen, true, p.ChatID, o.MessageID).Updates(map[string]any{"message_id": messageID, "updated_at": now})
		if res.Error != nil {
			return dispatch.Post{}, false, translate(res.Error, "swap order post")
		}
		if res.RowsAffected == 1 {
			state, set["replaced_message_id"] = dispatch.PostLive, o.MessageID
		}
	} else {
		// Recorded live whatever the order's status: a decision that came
		// first is seen by the caller's read after this commits, one that
		// comes later finds the post among the live ones.
		state = dispatch.PostLive
	}
	set["state"] = state
	res := tx.g.Model(&postRow{}).Where("id = ? AND message_id = 0", id).Updates(set)
	if res.Error != nil {
		return dispatch.Post{}, false, translate(res.Error, "record order post")
	}
	err := tx.g.Where("id = ?", id).Take(&p).Error
	return p.toPost(), res.RowsAffected == 1, translate(err, "order post "+id)
}

// LivePosts lists an order's posts in other chats whose buttons act on it
// (the fallback chat's), for the edits that follow its decision.
func (db *DB) LivePosts(ctx context.Context, orderID string) ([]dispatch.Post, error) {
	var rows []postRow
	err := db.gorm.WithContext(ctx).Where("order_id = ? AND kind = ? AND state = ? AND message_id <> 0",
		orderID, dispatch.PostFallback, dispatch.PostLive).Order("created_at").Find(&rows).Error
	if err != nil {
		return nil, translate(err, "order posts")
	}
	out := make([]dispatch.Post, len(rows))
	for i, r := range rows {
		out[i] = r.toPost()
	}
	return out, nil
}

// postedIn reports whether an order has a post in a chat other than its own
// (the fallback chat): a press there is a press on the order.
func postedIn(g *gorm.DB, orderID string, chatID int64) (bool, error) {
	var n int64
	err := g.Model(&postRow{}).Where("order_id = ? AND chat_id = ? AND kind = ?", orderID, chatID, dispatch.PostFallback).Count(&n).Error
	return n > 0, err
}

// orderSeenFrom loads an order as a press in chatID sees it: its own chat or
// a chat it was also posted to. main reports whether chatID is the order's
// own chat, where a press may prove or record the post.
func orderSeenFrom(g *gorm.DB, chatID int64, id string) (orderRow, bool, error) {
	var r orderRow
	if err := g.Where("id = ?", id).Take(&r).Error; err != nil {
		return r, false, err
	}
	if r.ChatID == chatID {
		return r, true, nil
	}
	ok, err := postedIn(g, id, chatID)
	if err != nil {
		return r, false, err
	}
	if !ok {
		return orderRow{}, false, gorm.ErrRecordNotFound
	}
	return r, false, nil
}
