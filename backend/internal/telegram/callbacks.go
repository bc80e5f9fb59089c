package telegram

import (
	"context"
	"errors"
	"strings"

	"github.com/go-telegram/bot/models"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
)

// Callback data of the order buttons: a one-letter action and the order id,
// well inside Telegram's 64 bytes.
const (
	ActionPhone = "p:"
	ActionTake  = "t:"
	// StartContactPrefix marks a /start payload that asks for a contact.
	StartContactPrefix = "c"
)

// TakeResult tells how a "Take order" press ended for the presser.
type TakeResult struct {
	Order dispatch.Order
	// Won: this press took the order (also on a repeat press by the winner).
	Won bool
	// StartToken is set when the winner must open the bot to receive the contact.
	StartToken string
}

// ContactResult tells how a "Get client phone" press is answered.
type ContactResult struct {
	// StartToken is set when the user never opened the bot: the answer sends
	// them to t.me/<bot>?start=<token>, and the contact follows that /start.
	StartToken string
}

// Orders is what button presses and contact deep links need from the dispatch flow.
type Orders interface {
	// messageID is the pressed post: a press proves the post exists even if
	// the process that sent it died before recording it. 0: the press came
	// from a message the bot cannot access, which is never recorded or edited.
	Take(ctx context.Context, chatID int64, messageID int, orderID string, user dispatch.Executor) (TakeResult, error)
	RequestContact(ctx context.Context, chatID int64, messageID int, orderID string, user dispatch.Executor) (ContactResult, error)
	StartToken(ctx context.Context, user dispatch.Executor, token string) error
}

func executorOf(u models.User) dispatch.Executor {
	return dispatch.Executor{TelegramID: u.ID, FirstName: u.FirstName, LastName: u.LastName, Username: u.Username, LanguageCode: u.LanguageCode}
}

// onCallback answers a button press. The answer never waits on amoCRM or on
// another Telegram call: everything else the press causes runs as jobs.
func (b *Bot) onCallback(ctx context.Context, q *models.CallbackQuery) error {
	if b.o.Orders == nil {
		return nil
	}
	lang := q.From.LanguageCode
	var (
		chatID    int64
		messageID int
	)
	switch {
	case q.Message.Message != nil:
		m := q.Message.Message
		// Telegram does not check that the pressed message has a button with
		// the query's data: a modified client can send another order's data
		// on this post, and acting on it would rewrite this post.
		if !hasButton(m.ReplyMarkup, q.Data) {
			b.log.Info("telegram press without such a button, ignored", "chat_id", m.Chat.ID, "message_id", m.ID, "telegram_id", q.From.ID)
			b.answer(ctx, q.ID, i18n.T(lang, "cb.stale"), "")
			return nil
		}
		chatID, messageID = m.Chat.ID, m.ID
	case q.Message.InaccessibleMessage != nil:
		// Its keyboard cannot be checked, so the message is neither
		// recorded as the order's post nor edited: messageID 0 acts on the
		// order alone, still only in its own chat.
		chatID = q.Message.InaccessibleMessage.Chat.ID
	}
	user := executorOf(q.From)
	// Each action yields a start token (the user must open the bot first) or
	// an error; the keys name the answers for success, success-with-token
	// and "already taken".
	var (
		token                  string
		err                    error
		okKey, tokenKey, taken = "", "", "cb.taken"
	)
	switch {
	case strings.HasPrefix(q.Data, ActionTake):
		var res TakeResult
		res, err = b.o.Orders.Take(ctx, chatID, messageID, strings.TrimPrefix(q.Data, ActionTake), user)
		token, okKey, tokenKey = res.StartToken, "cb.yours", "cb.yours_start"
		if res.Order.ExecutorID == user.TelegramID {
			taken = "cb.already_yours"
		}
	case strings.HasPrefix(q.Data, ActionPhone):
		var res ContactResult
		res, err = b.o.Orders.RequestContact(ctx, chatID, messageID, strings.TrimPrefix(q.Data, ActionPhone), user)
		token, okKey, tokenKey = res.StartToken, "cb.contact_sent", "cb.open_bot"
	default:
		// A button of an older bot version, or forged data: answer so the
		// spinner stops, do nothing else.
		err = dispatch.ErrOrderClosed
	}
	var url, key string
	switch {
	case err == nil && token != "":
		key = tokenKey
		if link, lerr := b.StartLink(ctx, token); lerr == nil {
			url = link
		}
	case err == nil:
		key = okKey
	case errors.Is(err, dispatch.ErrAlreadyTaken):
		key = taken
	case errors.Is(err, dispatch.ErrOrderClosed), errors.Is(err, dispatch.ErrNotFound):
		key = "cb.closed"
	default:
		b.answer(ctx, q.ID, i18n.T(lang, "cb.error"), "")
		return err
	}
	b.answer(ctx, q.ID, i18n.T(lang, key), url)
	return nil
}

func hasButton(kb *models.InlineKeyboardMarkup, data string) bool {
	if kb == nil || data == "" {
		return false
	}
	for _, row := range kb.InlineKeyboard {
		for _, btn := range row {
			if btn.CallbackData == data {
				return true
			}
		}
	}
	return false
}

// answer is best effort: a query older than Telegram accepts ("query is too
// old") cannot be answered later either, so failures are only logged.
func (b *Bot) answer(ctx context.Context, queryID, text, url string) {
	if err := b.AnswerCallback(ctx, queryID, text, url, false); err != nil {
		b.log.Warn("telegram answerCallbackQuery failed", "err", err)
	}
}
