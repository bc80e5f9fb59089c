package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

type chatRow struct {
	ID        int64 `gorm:"primaryKey;autoIncrement:false"`
	AccountID int64
	Title     string
	Type      string
	Active    bool
	LinkedBy  int64
	LinkedAt  time.Time
	UpdatedAt time.Time
}

func (chatRow) TableName() string { return "chats" }

func (r chatRow) toChat() dispatch.Chat {
	return dispatch.Chat{ID: r.ID, AccountID: r.AccountID, Title: r.Title, Type: dispatch.ChatType(r.Type),
		Active: r.Active, LinkedBy: r.LinkedBy, LinkedAt: r.LinkedAt, UpdatedAt: r.UpdatedAt}
}

// LinkChat links a Telegram chat to an account. A chat belongs to one
// account: while it is active under another account the link is refused with
// ErrChatTaken; an inactive chat (bot was removed) may be linked anew.
func (db *DB) LinkChat(ctx context.Context, c dispatch.Chat) (dispatch.Chat, error) {
	var out chatRow
	err := db.transaction(ctx, func(tx *gorm.DB) error {
		var err error
		out, err = linkChat(tx, c, db.utcNow())
		return err
	})
	if errors.Is(err, dispatch.ErrChatTaken) {
		return dispatch.Chat{}, fmt.Errorf("chat %d: %w", c.ID, dispatch.ErrChatTaken)
	}
	if err != nil {
		return dispatch.Chat{}, translate(err, "link chat")
	}
	return out.toChat(), nil
}

// LinkChatByCode links chat c to the active account whose current link code
// is code, and spends the code in the same transaction: the account gets a
// new code (the returned account carries it), so the "/start@bot CODE" left
// in the group's history links no other group. The code is spent whatever
// the outcome, ErrChatTaken included: once sent in a group, its members have
// seen it. A code that is not current (spent, rotated, made up) is
// ErrNotFound and changes nothing. The spending is one conditional UPDATE on
// the code's hash, so of two uses of one code at once (any replicas) one
// links and the other gets ErrNotFound.
func (db *DB) LinkChatByCode(ctx context.Context, code string, c dispatch.Chat) (dispatch.Account, dispatch.Chat, error) {
	hash := linkCodeHash(code)
	var acc accountRow
	var out chatRow
	var taken bool
	err := db.transaction(ctx, func(tx *gorm.DB) error {
		acc, taken = accountRow{}, false
		if err := tx.Where("link_code_hash = ? AND status = ?", hash, dispatch.AccountActive).Take(&acc).Error; err != nil {
			return err
		}
		_, newHash, sealed, err := db.newLinkCode(acc.ID)
		if err != nil {
			return err
		}
		now := db.utcNow()
		res := tx.Model(&accountRow{}).Where("id = ? AND link_code_hash = ? AND status = ?", acc.ID, hash, dispatch.AccountActive).
			Updates(map[string]any{"link_code_hash": newHash, "link_code_enc": sealed, "updated_at": now})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return gorm.ErrRecordNotFound // another use spent it first
		}
		acc.LinkCodeHash, acc.LinkCodeEnc, acc.UpdatedAt = newHash, sealed, now
		c.AccountID = acc.ID
		out, err = linkChat(tx, c, now)
		if errors.Is(err, dispatch.ErrChatTaken) {
			taken = true // commit: the code stays spent
			return nil
		}
		return err
	})
	if err != nil {
		return dispatch.Account{}, dispatch.Chat{}, translate(err, "link chat by code")
	}
	a, err := db.toAccount(acc)
	if err != nil {
		return dispatch.Account{}, dispatch.Chat{}, err
	}
	if taken {
		return a, dispatch.Chat{}, fmt.Errorf("chat %d: %w", c.ID, dispatch.ErrChatTaken)
	}
	return a, out.toChat(), nil
}

// linkChat is LinkChat inside a transaction.
func linkChat(tx *gorm.DB, c dispatch.Chat, now time.Time) (chatRow, error) {
	var existing chatRow
	err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", c.ID).Take(&existing).Error
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		out := chatRow{ID: c.ID, AccountID: c.AccountID, Title: c.Title, Type: string(c.Type), Active: true,
			LinkedBy: c.LinkedBy, LinkedAt: now, UpdatedAt: now}
		return out, tx.Create(&out).Error
	case err != nil:
		return chatRow{}, err
	}
	if existing.Active && existing.AccountID != c.AccountID {
		return chatRow{}, dispatch.ErrChatTaken
	}
	out := existing
	if !existing.Active || existing.AccountID != c.AccountID {
		out.LinkedAt, out.LinkedBy = now, c.LinkedBy
	}
	out.AccountID, out.Title, out.Type, out.Active, out.UpdatedAt = c.AccountID, c.Title, string(c.Type), true, now
	return out, tx.Save(&out).Error
}

// Chat returns a chat by its Telegram id (used where the chat itself is the
// credential: an update arriving from it).
func (db *DB) Chat(ctx context.Context, chatID int64) (dispatch.Chat, error) {
	var r chatRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", chatID).Take(&r).Error; err != nil {
		return dispatch.Chat{}, translate(err, fmt.Sprintf("chat %d", chatID))
	}
	return r.toChat(), nil
}

// Chats lists an account's chats, active first.
func (db *DB) Chats(ctx context.Context, accountID int64) ([]dispatch.Chat, error) {
	var rows []chatRow
	err := db.gorm.WithContext(ctx).Where("account_id = ?", accountID).Order("active DESC, linked_at").Find(&rows).Error
	if err != nil {
		return nil, translate(err, "chats")
	}
	out := make([]dispatch.Chat, len(rows))
	for i, r := range rows {
		out[i] = r.toChat()
	}
	return out, nil
}

// DeactivateChat marks a chat inactive (the bot left or was removed).
func (db *DB) DeactivateChat(ctx context.Context, chatID int64) (bool, error) {
	res := db.gorm.WithContext(ctx).Model(&chatRow{}).Where("id = ? AND active = ?", chatID, true).
		Updates(map[string]any{"active": false, "updated_at": db.utcNow()})
	return res.RowsAffected > 0, translate(res.Error, "deactivate chat")
}

// MigrateChat moves a group's link to the supergroup that replaced it, with
// everything that points at the chat: default chats of the pipelines, deals'
// own chats and orders. It is idempotent: Telegram announces a migration in
// both chats.
func (db *DB) MigrateChat(ctx context.Context, oldID, newID int64, newType dispatch.ChatType) (bool, error) {
	var moved bool
	err := db.transaction(ctx, func(tx *gorm.DB) error {
		var existing int64
		if err := tx.Model(&chatRow{}).Where("id = ?", newID).Count(&existing).Error; err != nil {
			return err
		}
		if existing == 0 {
			res := tx.Model(&chatRow{}).Where("id = ?", oldID).
				Updates(map[string]any{"id": newID, "type": string(newType), "updated_at": db.utcNow()})
			if res.Error != nil {
				return res.Error
			}
			moved = res.RowsAffected > 0
		}
		for _, q := range []struct{ table, column string }{
			{"dispatch_rules", "default_chat_id"}, {"deal_targets", "chat_id"}, {"orders", "chat_id"},
		} {
			if err := tx.Table(q.table).Where(q.column+" = ?", oldID).Update(q.column, newID).Error; err != nil {
				return err
			}
		}
		return nil
	})
	return moved, translate(err, "migrate chat")
}
