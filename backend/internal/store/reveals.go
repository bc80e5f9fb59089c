package store

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

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
