package tgbot

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/flow"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
)

// handle processes one stored update. A returned error means "retry later";
// updates that can never succeed are logged and return nil.
func (b *Handler) handle(ctx context.Context, payload []byte) error {
	var u models.Update
	if err := json.Unmarshal(payload, &u); err != nil {
		b.log.Warn("telegram update not understood, skipped", "err", err)
		return nil
	}
	switch {
	case u.CallbackQuery != nil:
		return b.onCallback(ctx, u.CallbackQuery)
	case u.MyChatMember != nil:
		return b.onMembership(ctx, u.MyChatMember)
	case u.Message != nil:
		return b.onMessage(ctx, u.Message)
	}
	return nil
}

func isGroup(t models.ChatType) bool {
	return t == models.ChatTypeGroup || t == models.ChatTypeSupergroup
}

func (b *Handler) onMembership(ctx context.Context, m *models.ChatMemberUpdated) error {
	if !isGroup(m.Chat.Type) {
		return nil
	}
	switch m.NewChatMember.Type {
	case models.ChatMemberTypeLeft, models.ChatMemberTypeBanned:
		return b.o.Chats.ChatRemoved(ctx, m.Chat.ID)
	}
	return nil
}

func (b *Handler) onMessage(ctx context.Context, m *models.Message) error {
	if m.MigrateToChatID != 0 {
		return b.o.Chats.ChatMigrated(ctx, m.Chat.ID, m.MigrateToChatID)
	}
	if m.MigrateFromChatID != 0 {
		return b.o.Chats.ChatMigrated(ctx, m.MigrateFromChatID, m.Chat.ID)
	}
	cmd, arg, ok, err := b.command(ctx, m.Text)
	if err != nil {
		return err
	}
	if !ok || m.From == nil {
		return nil
	}
	if m.Chat.Type == models.ChatTypePrivate {
		if cmd == "start" {
			return b.onPrivateStart(ctx, m, arg)
		}
		if cmd == "my" {
			return b.o.Orders.Mine(ctx, executorOf(*m.From), m.ID)
		}
		if cmd == "link" {
			return b.reply(ctx, m.Chat.ID, i18n.T(m.From.LanguageCode, "link.not_group"))
		}
		return nil
	}
	if !isGroup(m.Chat.Type) {
		return nil
	}
	switch cmd {
	case "start", "link":
		return b.onLink(ctx, m, arg)
	}
	return nil
}

// command parses "/cmd", "/cmd arg" and "/cmd@ThisBot arg". A command
// addressed to another bot is not ours.
func (b *Handler) command(ctx context.Context, text string) (cmd, arg string, ok bool, err error) {
	if !strings.HasPrefix(text, "/") {
		return "", "", false, nil
	}
	head, rest, _ := strings.Cut(text[1:], " ")
	name, target, addressed := strings.Cut(head, "@")
	if addressed {
		me, err := b.o.Client.Username(ctx)
		if err != nil {
			return "", "", false, err
		}
		if !strings.EqualFold(target, me) {
			return "", "", false, nil
		}
	}
	return strings.ToLower(name), strings.TrimSpace(rest), true, nil
}

func (b *Handler) onPrivateStart(ctx context.Context, m *models.Message, payload string) error {
	e := executorOf(*m.From)
	if err := b.o.Chats.RegisterExecutor(ctx, e); err != nil {
		return err
	}
	if strings.HasPrefix(payload, flow.StartContactPrefix) {
		// The user came from a "Get client phone" answer: the contact is
		// the reply, so no greeting.
		err := b.o.Orders.StartToken(ctx, e, payload)
		switch {
		case errors.Is(err, dispatch.ErrLinkExpired):
			return b.reply(ctx, m.Chat.ID, i18n.T(m.From.LanguageCode, "start.expired"))
		case errors.Is(err, dispatch.ErrOrderClosed):
			return b.reply(ctx, m.Chat.ID, i18n.T(m.From.LanguageCode, "start.closed"))
		case err == nil || !errors.Is(err, dispatch.ErrNotFound):
			return err
		}
	}
	return b.reply(ctx, m.Chat.ID, i18n.T(m.From.LanguageCode, "start.private", m.From.FirstName))
}

func (b *Handler) onLink(ctx context.Context, m *models.Message, code string) error {
	if code == "" {
		// A bare /start in a group: tell an already linked chat where it
		// belongs, otherwise how to link it.
		if a, c, err := b.o.Chats.ChatAccount(ctx, m.Chat.ID); err == nil && c.ActiveFor(a.ID) {
			return b.reply(ctx, m.Chat.ID, i18n.T(a.Language, "link.already", a.Name))
		}
		return b.reply(ctx, m.Chat.ID, i18n.T(m.From.LanguageCode, "link.usage"))
	}
	a, chat, err := b.o.Chats.LinkChat(ctx, code, dispatch.Chat{
		ID: m.Chat.ID, Title: m.Chat.Title, Type: dispatch.ChatType(m.Chat.Type), LinkedBy: m.From.ID,
	})
	switch {
	case errors.Is(err, dispatch.ErrNotFound):
		// A spent, rotated or made-up code links nothing. Replayed in the
		// group it once linked (a member re-sending the "/start@bot CODE"
		// of the history, or this update retried after its reply failed),
		// it is told where the group belongs.
		if a, c, err := b.o.Chats.ChatAccount(ctx, m.Chat.ID); err == nil && c.ActiveFor(a.ID) {
			return b.reply(ctx, m.Chat.ID, i18n.T(a.Language, "link.already", a.Name))
		}
		return b.reply(ctx, m.Chat.ID, i18n.T(m.From.LanguageCode, "link.bad_code"))
	case errors.Is(err, dispatch.ErrChatTaken):
		return b.reply(ctx, m.Chat.ID, i18n.T(m.From.LanguageCode, "link.taken"))
	case err != nil:
		return err
	}
	return b.reply(ctx, chat.ID, i18n.T(a.Language, "link.ok", chat.Title, a.Name))
}

// replyPaceWait bounds the wait for the chat's pace inside update handling:
// longer, and a burst of commands would hold the workers past the update's
// lease. The update is then retried later, when the pace allows.
const replyPaceWait = 20 * time.Second

// reply answers in a chat, keeping the chat's pace.
func (b *Handler) reply(ctx context.Context, chatID int64, text string) error {
	return b.o.Client.Reply(ctx, chatID, text, replyPaceWait)
}
