package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

type eventRow struct {
	ID            string `gorm:"primaryKey"`
	AccountID     int64
	OrderID       string
	Kind          string
	TelegramID    int64
	Actor         string
	At            time.Time
	NotedAt       *time.Time
	LeadUpdatedAt *time.Time
}

func (eventRow) TableName() string { return "order_events" }

func (r eventRow) toEvent() dispatch.Event {
	return dispatch.Event{ID: r.ID, AccountID: r.AccountID, OrderID: r.OrderID, Kind: r.Kind, TelegramID: r.TelegramID,
		Actor: r.Actor, At: r.At}
}

// AddEvent records one step of an order's timeline once: the step of an order
// and a person already recorded is returned as it was, with added false.
func (tx *Tx) AddEvent(e dispatch.Event) (dispatch.Event, bool, error) {
	row := eventRow{ID: uuid.NewString(), AccountID: e.AccountID, OrderID: e.OrderID, Kind: e.Kind, TelegramID: e.TelegramID,
		Actor: e.Actor, At: tx.db.utcNow()}
	res := tx.g.Clauses(clause.OnConflict{DoNothing: true}).Create(&row)
	if res.Error != nil {
		return dispatch.Event{}, false, translate(res.Error, "add order event")
	}
	if res.RowsAffected == 1 {
		return row.toEvent(), true, nil
	}
	var have eventRow
	err := tx.g.Where("order_id = ? AND kind = ? AND telegram_id = ?", e.OrderID, e.Kind, e.TelegramID).Take(&have).Error
	return have.toEvent(), false, translate(err, "order event")
}

// AddEvent is AddEvent in a transaction of its own.
func (db *DB) AddEvent(ctx context.Context, e dispatch.Event) (dispatch.Event, bool, error) {
	var (
		out   dispatch.Event
		added bool
	)
	err := db.InTx(ctx, func(tx *Tx) error {
		var err error
		out, added, err = tx.AddEvent(e)
		return err
	})
	return out, added, err
}

// Event returns one timeline step and whether its note and its stage move
// already reached amoCRM.
func (db *DB) Event(ctx context.Context, id string) (e dispatch.Event, noted, leadUpdated bool, err error) {
	var r eventRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return dispatch.Event{}, false, false, translate(err, "order event "+id)
	}
	return r.toEvent(), r.NotedAt != nil, r.LeadUpdatedAt != nil, nil
}

// MarkEventNoted records that the deal carries the step's note.
func (db *DB) MarkEventNoted(ctx context.Context, id string) error {
	err := db.gorm.WithContext(ctx).Model(&eventRow{}).Where("id = ? AND noted_at IS NULL", id).
		Update("noted_at", db.utcNow()).Error
	return translate(err, "mark event noted")
}

// MarkEventLeadUpdated records that the deal carries the step's stage move.
func (db *DB) MarkEventLeadUpdated(ctx context.Context, id string) error {
	err := db.gorm.WithContext(ctx).Model(&eventRow{}).Where("id = ? AND lead_updated_at IS NULL", id).
		Update("lead_updated_at", db.utcNow()).Error
	return translate(err, "mark event lead updated")
}

// LeadEvents returns the timeline of a deal's orders, oldest first.
func (db *DB) LeadEvents(ctx context.Context, accountID, leadID int64) ([]dispatch.Event, error) {
	var rows []eventRow
	err := db.gorm.WithContext(ctx).Where("account_id = ? AND order_id IN (?)", accountID,
		db.gorm.Model(&orderRow{}).Select("id").Where("account_id = ? AND lead_id = ?", accountID, leadID)).
		Order("at, id").Limit(200).Find(&rows).Error
	if err != nil {
		return nil, translate(err, "lead events")
	}
	out := make([]dispatch.Event, len(rows))
	for i, r := range rows {
		out[i] = r.toEvent()
	}
	return out, nil
}

// UnfinishedEvents lists an account's timeline steps since `since` whose
// write to amoCRM (stage move, note) did not finish: a step is noted last.
func (db *DB) UnfinishedEvents(ctx context.Context, accountID int64, since time.Time) ([]dispatch.Event, error) {
	var rows []eventRow
	kinds := []string{string(dispatch.OrderOnWay), string(dispatch.OrderStarted), string(dispatch.OrderDone),
		string(dispatch.OrderReleased), dispatch.EventContact}
	err := db.gorm.WithContext(ctx).Where("account_id = ? AND noted_at IS NULL AND kind IN ? AND at > ?", accountID, kinds, since.UTC()).
		Order("at").Limit(500).Find(&rows).Error
	if err != nil {
		return nil, translate(err, "unfinished events")
	}
	out := make([]dispatch.Event, len(rows))
	for i, r := range rows {
		out[i] = r.toEvent()
	}
	return out, nil
}
