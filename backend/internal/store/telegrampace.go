package store

import (
	"context"
	"sync"
	"time"

	"gorm.io/gorm"
)

// SendWindow allows at most N sends to Scope (a chat id; 0: every chat) in
// any span of Per.
type SendWindow struct {
	Scope int64
	N     int
	Per   time.Duration
}

// TelegramPace books the bot's sends in the database: a restarted process or
// another replica sees what was sent in the last minute and which chats
// Telegram told to wait (a 429's retry_after), instead of starting from zero.
// On PostgreSQL bookings are serialised by an advisory lock; the clocks of
// replicas are taken to agree (NTP) to well under the windows' margins.
type TelegramPace struct {
	db    *DB
	mu    sync.Mutex // this process's bookings one at a time (SQLite's single writer)
	count int
}

// TelegramPace returns the database's send ledger.
func (db *DB) TelegramPace() *TelegramPace { return &TelegramPace{db: db} }

// paceLock is the advisory lock key of Telegram bookings ("tgpace").
const paceLock = 0x7467706163650000

// prunePaceEvery: one booking in this many deletes rows no window reaches.
const prunePaceEvery = 256

// Book records a send to chatID now if no hold of the chat (or of every chat)
// is on and every window allows one more, and returns 0. Otherwise it
// records nothing and returns how long until the first one that might.
func (p *TelegramPace) Book(ctx context.Context, chatID int64, windows []SendWindow) (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var wait time.Duration
	err := p.db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if p.db.dialect == Postgres {
			if err := tx.Exec(`SELECT pg_advisory_xact_lock(?)`, int64(paceLock)).Error; err != nil {
				return err
			}
		}
		now := time.Now().UnixNano()
		var held []int64
		if err := tx.Raw(`SELECT held_until FROM tg_holds WHERE scope IN (0, ?) AND held_until > ?`, chatID, now).Scan(&held).Error; err != nil {
			return err
		}
		for _, h := range held {
			wait = max(wait, time.Duration(h-now))
		}
		for _, w := range windows {
			q := tx.Table("tg_sends").Select("sent_at").Where("sent_at > ?", now-int64(w.Per))
			if w.Scope != 0 {
				q = q.Where("chat_id = ?", w.Scope)
			}
			var at []int64
			if err := q.Order("sent_at DESC").Offset(w.N - 1).Limit(1).Scan(&at).Error; err != nil {
				return err
			}
			if len(at) == 1 {
				wait = max(wait, time.Duration(at[0]+int64(w.Per)-now))
			}
		}
		if wait > 0 {
			return nil
		}
		if err := tx.Exec(`INSERT INTO tg_sends (chat_id, sent_at) VALUES (?, ?)`, chatID, now).Error; err != nil {
			return err
		}
		if p.count++; p.count%prunePaceEvery == 0 {
			old := now - int64(5*time.Minute)
			if err := tx.Exec(`DELETE FROM tg_sends WHERE sent_at < ?`, old).Error; err != nil {
				return err
			}
			return tx.Exec(`DELETE FROM tg_holds WHERE held_until < ?`, now).Error
		}
		return nil
	})
	if err != nil {
		return 0, translate(err, "book a Telegram send")
	}
	return wait, nil
}

// Hold keeps every process from sending to scope (a chat id; 0: every chat)
// for d: Telegram's retry_after.
func (p *TelegramPace) Hold(ctx context.Context, scope int64, d time.Duration) error {
	until := time.Now().Add(d).UnixNano()
	err := p.db.gorm.WithContext(ctx).Exec(`
		INSERT INTO tg_holds (scope, held_until) VALUES (?, ?)
		ON CONFLICT (scope) DO UPDATE SET held_until = CASE WHEN excluded.held_until > tg_holds.held_until
			THEN excluded.held_until ELSE tg_holds.held_until END`, scope, until).Error
	return translate(err, "hold Telegram sends")
}
