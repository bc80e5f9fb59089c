package tgbot

import (
	"context"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/flow"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
)

func executorOf(u models.User) dispatch.Executor {
	return dispatch.Executor{TelegramID: u.ID, FirstName: u.FirstName, LastName: u.LastName, Username: u.Username, LanguageCode: u.LanguageCode}
}

// answerKeys is what the presser reads for each outcome of a press.
var answerKeys = map[flow.Outcome]string{
	flow.Won:                 "cb.yours",
	flow.WonOpenBot:          "cb.yours_start",
	flow.AlreadyYours:        "cb.already_yours",
	flow.AlreadyTaken:        "cb.taken",
	flow.ContactSent:         "cb.contact_sent",
	flow.ContactOpenBot:      "cb.open_bot",
	flow.Closed:              "cb.closed",
	flow.ContactExecutorOnly: "cb.executor_only",
	flow.StatusSaved:         "cb.status_saved",
	flow.StatusAlready:       "cb.status_already",
	flow.NotYours:            "cb.not_yours",
	flow.ReleaseAsk:          "cb.release_ask",
	flow.Released:            "cb.released",
	flow.ReleaseKept:         "cb.release_kept",
	flow.Confirmed:           "cb.confirmed",
	flow.ConfirmedAlready:    "cb.confirmed_already",
}

// onCallback answers a button press. The answer never waits on amoCRM or on
// another Telegram call: everything else the press causes runs as jobs.
func (b *Handler) onCallback(ctx context.Context, q *models.CallbackQuery) error {
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
	var (
		res flow.PressResult
		err error
	)
	switch {
	case strings.HasPrefix(q.Data, flow.ActionTake):
		res, err = b.o.Orders.Take(ctx, chatID, messageID, strings.TrimPrefix(q.Data, flow.ActionTake), user)
	case strings.HasPrefix(q.Data, flow.ActionStatus):
		// The executor's private card: the presser must be the order's
		// executor, which flow checks; the chat proves nothing here.
		res, err = b.o.Orders.StatusPress(ctx, strings.TrimPrefix(q.Data, flow.ActionStatus), user)
	case strings.HasPrefix(q.Data, flow.ActionRemind):
		// A reminder before the job time, in the executor's private chat:
		// as with the card, flow checks the presser is the executor.
		res, err = b.o.Orders.ReminderPress(ctx, strings.TrimPrefix(q.Data, flow.ActionRemind), messageID, user)
	case strings.HasPrefix(q.Data, flow.ActionPhone):
		res, err = b.o.Orders.RequestContact(ctx, chatID, messageID, strings.TrimPrefix(q.Data, flow.ActionPhone), user)
	default:
		// A button of an older bot version, or forged data: answer so the
		// spinner stops, do nothing else.
		res = flow.PressResult{Outcome: flow.Closed}
	}
	if err != nil {
		b.answer(ctx, q.ID, i18n.T(lang, "cb.error"), "")
		return err
	}
	var url string
	if res.StartToken != "" {
		if link, lerr := b.o.Client.StartLink(ctx, res.StartToken); lerr == nil {
			url = link
		}
	}
	b.answer(ctx, q.ID, i18n.T(lang, answerKeys[res.Outcome]), url)
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
func (b *Handler) answer(ctx context.Context, queryID, text, url string) {
	if err := b.o.Client.AnswerCallback(ctx, queryID, text, url, false); err != nil {
		b.log.Warn("telegram answerCallbackQuery failed", "err", err)
		return
	}
	if at := receivedAt(ctx); !at.IsZero() {
		b.o.Metrics.Answered(time.Since(at))
	}
}
