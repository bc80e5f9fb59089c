package service

import (
	"context"
	"fmt"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// LinkChat links the Telegram chat to the account whose link code was given
// (deep link `startgroup` parameter or `/link CODE`). The code is single-use:
// the "/start@bot CODE" it leaves in the group's history must link no other
// group, so any use of a current code spends it and the account gets a new
// one (ErrChatTaken spends it too). A code that is not current (spent,
// rotated, made up) is ErrNotFound and changes nothing.
func (s *Service) LinkChat(ctx context.Context, code string, chat dispatch.Chat) (dispatch.Account, dispatch.Chat, error) {
	a, linked, err := s.db.LinkChatByCode(ctx, code, chat)
	if a.ID != 0 {
		s.log.Info("link code spent, a new one issued", "account_id", a.ID, "chat_id", chat.ID)
	}
	if err != nil {
		return a, dispatch.Chat{}, fmt.Errorf("link chat %d: %w", chat.ID, err)
	}
	s.log.Info("chat linked", "account_id", a.ID, "chat_id", chat.ID)
	return a, linked, nil
}

// ChatRemoved marks a chat inactive after the bot left or was removed.
func (s *Service) ChatRemoved(ctx context.Context, chatID int64) error {
	changed, err := s.db.DeactivateChat(ctx, chatID)
	if err == nil && changed {
		s.log.Info("chat deactivated: bot removed", "chat_id", chatID)
	}
	return err
}

// ChatMigrated keeps a group's link when Telegram upgrades it to a supergroup.
func (s *Service) ChatMigrated(ctx context.Context, oldID, newID int64) error {
	changed, err := s.db.MigrateChat(ctx, oldID, newID, "supergroup")
	if err != nil {
		return err
	}
	if changed {
		s.log.Info("chat migrated to supergroup", "chat_id", oldID, "new_chat_id", newID)
	}
	return nil
}

// ChatAccount returns the account a chat is actively linked to.
func (s *Service) ChatAccount(ctx context.Context, chatID int64) (dispatch.Account, dispatch.Chat, error) {
	c, err := s.db.Chat(ctx, chatID)
	if err != nil {
		return dispatch.Account{}, dispatch.Chat{}, err
	}
	a, err := s.db.Account(ctx, c.AccountID)
	return a, c, err
}

// RegisterExecutor records a Telegram user who opened the bot privately.
func (s *Service) RegisterExecutor(ctx context.Context, e dispatch.Executor) error {
	return s.db.SaveExecutor(ctx, e, true)
}
