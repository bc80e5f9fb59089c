package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

type executorRow struct {
	TelegramID   int64 `gorm:"primaryKey;autoIncrement:false"`
	FirstName    string
	LastName     string
	Username     string
	LanguageCode string
	Started      bool
	Blocked      bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

func (executorRow) TableName() string { return "executors" }

// SaveExecutor records a Telegram user's current profile. started marks that
// they opened a private chat with the bot (and unblocks them if they had blocked it).
func (db *DB) SaveExecutor(ctx context.Context, e dispatch.Executor, started bool) error {
	now := db.utcNow()
	row := executorRow{TelegramID: e.TelegramID, FirstName: e.FirstName, LastName: e.LastName, Username: e.Username,
		LanguageCode: e.LanguageCode, Started: started, CreatedAt: now, UpdatedAt: now}
	cols := []string{"first_name", "last_name", "username", "language_code", "updated_at"}
	if started {
		cols = append(cols, "started", "blocked")
	}
	err := db.gorm.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "telegram_id"}},
		DoUpdates: clause.AssignmentColumns(cols),
	}).Create(&row).Error
	return translate(err, "save executor")
}

// SaveExecutor records the profile of a user inside a transaction and
// reports whether the bot may write to them privately.
func (tx *Tx) SaveExecutor(e dispatch.Executor) (reachable bool, err error) {
	now := tx.db.utcNow()
	row := executorRow{TelegramID: e.TelegramID, FirstName: e.FirstName, LastName: e.LastName, Username: e.Username,
		LanguageCode: e.LanguageCode, CreatedAt: now, UpdatedAt: now}
	err = tx.g.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "telegram_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"first_name", "last_name", "username", "language_code", "updated_at"}),
	}).Create(&row).Error
	if err != nil {
		return false, translate(err, "save executor")
	}
	var r executorRow
	if err := tx.g.Where("telegram_id = ?", e.TelegramID).Take(&r).Error; err != nil {
		return false, translate(err, "read executor")
	}
	return r.Started && !r.Blocked, nil
}

// Executor returns a known Telegram user.
func (db *DB) Executor(ctx context.Context, telegramID int64) (dispatch.Executor, error) {
	var r executorRow
	if err := db.gorm.WithContext(ctx).Where("telegram_id = ?", telegramID).Take(&r).Error; err != nil {
		return dispatch.Executor{}, translate(err, fmt.Sprintf("executor %d", telegramID))
	}
	return dispatch.Executor{TelegramID: r.TelegramID, FirstName: r.FirstName, LastName: r.LastName, Username: r.Username,
		LanguageCode: r.LanguageCode, Started: r.Started, Blocked: r.Blocked}, nil
}

// SetExecutorBlocked records that the user blocked (or unblocked) the bot.
func (db *DB) SetExecutorBlocked(ctx context.Context, telegramID int64, blocked bool) error {
	err := db.gorm.WithContext(ctx).Model(&executorRow{}).Where("telegram_id = ?", telegramID).
		Updates(map[string]any{"blocked": blocked, "updated_at": db.utcNow()}).Error
	return translate(err, "set executor blocked")
}

// AccountExecutors lists the Telegram users who took part in an account's
// orders (asked for a contact, took one), then the ones only mapped to an
// amoCRM user, by id alone: an account can map any id, and must not read
// the name of anyone who ever wrote to the bot that way.
func (db *DB) AccountExecutors(ctx context.Context, accountID int64) ([]dispatch.Executor, error) {
	var rows []executorRow
	err := db.gorm.WithContext(ctx).
		Where(`telegram_id IN (SELECT telegram_id FROM contact_reveals WHERE account_id = ?)
		    OR telegram_id IN (SELECT executor_id FROM orders WHERE account_id = ?)`, accountID, accountID).
		Order("first_name, telegram_id").Find(&rows).Error
	if err != nil {
		return nil, translate(err, "account executors")
	}
	var mapped []int64
	err = db.gorm.WithContext(ctx).Table("executor_users").Where("account_id = ?", accountID).
		Order("telegram_id").Pluck("telegram_id", &mapped).Error
	if err != nil {
		return nil, translate(err, "mapped executors")
	}
	out := make([]dispatch.Executor, 0, len(rows)+len(mapped))
	known := make(map[int64]bool, len(rows))
	for _, r := range rows {
		known[r.TelegramID] = true
		out = append(out, dispatch.Executor{TelegramID: r.TelegramID, FirstName: r.FirstName, LastName: r.LastName, Username: r.Username,
			LanguageCode: r.LanguageCode, Started: r.Started, Blocked: r.Blocked})
	}
	for _, id := range mapped {
		if !known[id] {
			out = append(out, dispatch.Executor{TelegramID: id})
		}
	}
	return out, nil
}
