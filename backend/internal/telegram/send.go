package telegram

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	botapi "github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
)

// Outcomes of a Bot API call that the caller must treat differently from a
// plain retryable failure.
var (
	// ErrChatGone: the bot cannot post to the chat any more (removed, kicked,
	// chat deleted). Retrying is useless.
	ErrChatGone = errors.New("telegram: chat unavailable to the bot")
	// ErrUserUnreachable: a private chat the bot may not write to (never
	// started, blocked, deactivated).
	ErrUserUnreachable = errors.New("telegram: user cannot be written to")
	// ErrMessageGone: the message to edit no longer exists.
	ErrMessageGone = errors.New("telegram: message not found")
	// ErrNotDeletable: the bot may not delete the message (older than 48
	// hours, or another's message without the right to delete it).
	ErrNotDeletable = errors.New("telegram: message can't be deleted")
)

// RetryAfterError is a 429: nothing may be sent before After.
type RetryAfterError struct{ After time.Duration }

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("telegram: flood limit, retry after %s", e.After)
}

// MigratedError: the group became a supergroup with a new id.
type MigratedError struct{ NewChatID int64 }

func (e *MigratedError) Error() string {
	return fmt.Sprintf("telegram: group migrated to supergroup %d", e.NewChatID)
}

// classify turns the library's errors into the outcomes above.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var tooMany *botapi.TooManyRequestsError
	if errors.As(err, &tooMany) {
		return &RetryAfterError{After: time.Duration(max(tooMany.RetryAfter, 1)) * time.Second}
	}
	var migrate *botapi.MigrateError
	if errors.As(err, &migrate) {
		return &MigratedError{NewChatID: int64(migrate.MigrateToChatID)}
	}
	msg := err.Error()
	switch {
	case errors.Is(err, botapi.ErrorForbidden):
		if strings.Contains(msg, "initiate conversation") || strings.Contains(msg, "blocked by the user") ||
			strings.Contains(msg, "user is deactivated") {
			return fmt.Errorf("%w: %s", ErrUserUnreachable, msg)
		}
		return fmt.Errorf("%w: %s", ErrChatGone, msg)
	case errors.Is(err, botapi.ErrorBadRequest):
		switch {
		case strings.Contains(msg, "message is not modified"):
			return nil // the edit is already in place
		case strings.Contains(msg, "chat not found"), strings.Contains(msg, "group chat was deactivated"):
			return fmt.Errorf("%w: %s", ErrChatGone, msg)
		case strings.Contains(msg, "message can't be deleted"), strings.Contains(msg, "MESSAGE_DELETE_FORBIDDEN"):
			return fmt.Errorf("%w: %s", ErrNotDeletable, msg)
		case strings.Contains(msg, "message to edit not found"), strings.Contains(msg, "message to delete not found"),
			strings.Contains(msg, "MESSAGE_ID_INVALID"):
			return fmt.Errorf("%w: %s", ErrMessageGone, msg)
		}
	}
	return fmt.Errorf("telegram: %w", err)
}

// Button is one inline keyboard button (callback or URL).
type Button struct {
	Text, Data, URL string
}

func keyboard(rows [][]Button) models.ReplyMarkup {
	if rows == nil {
		return nil
	}
	kb := make([][]models.InlineKeyboardButton, len(rows))
	for i, row := range rows {
		for _, b := range row {
			kb[i] = append(kb[i], models.InlineKeyboardButton{Text: b.Text, CallbackData: b.Data, URL: b.URL})
		}
	}
	return &models.InlineKeyboardMarkup{InlineKeyboard: kb}
}

// SendHTML posts an HTML message, with an optional inline keyboard.
func (b *Client) SendHTML(ctx context.Context, chatID int64, html string, rows [][]Button) (int, error) {
	if err := b.pace.wait(ctx, chatID); err != nil {
		return 0, err
	}
	// The time limit is the request's, not the wait for its turn.
	ctx, cancel := context.WithTimeout(ctx, b.o.CallTimeout)
	defer cancel()
	disabled := true
	msg, err := b.api.SendMessage(ctx, &botapi.SendMessageParams{
		ChatID: chatID, Text: html, ParseMode: models.ParseModeHTML, ReplyMarkup: keyboard(rows),
		LinkPreviewOptions: &models.LinkPreviewOptions{IsDisabled: &disabled},
	})
	if err != nil {
		return 0, b.flooded(ctx, chatID, classify(err))
	}
	return msg.ID, nil
}

// flooded passes err on; a 429 first pauses every send to its scope (the
// chat; 0: every chat) until its retry_after, in every process: the other
// sends would meet the same limit, and Telegram lengthens the ban of a bot
// that keeps sending into it.
func (b *Client) flooded(ctx context.Context, scope int64, err error) error {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		b.pace.hold(context.WithoutCancel(ctx), scope, ra.After)
	}
	return err
}

// EditHTML replaces a message's text and removes its keyboard. An identical
// edit ("message is not modified") counts as success.
func (b *Client) EditHTML(ctx context.Context, chatID int64, messageID int, html string) error {
	return b.EditHTMLButtons(ctx, chatID, messageID, html, nil)
}

// EditHTMLButtons replaces a message's text and its keyboard (nil rows
// remove it), at the chat's pace like every send.
func (b *Client) EditHTMLButtons(ctx context.Context, chatID int64, messageID int, html string, rows [][]Button) error {
	if err := b.pace.wait(ctx, chatID); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.o.CallTimeout)
	defer cancel()
	disabled := true
	_, err := b.api.EditMessageText(ctx, &botapi.EditMessageTextParams{
		ChatID: chatID, MessageID: messageID, Text: html, ParseMode: models.ParseModeHTML, ReplyMarkup: keyboard(rows),
		LinkPreviewOptions: &models.LinkPreviewOptions{IsDisabled: &disabled},
	})
	return b.flooded(ctx, chatID, classify(err))
}

// DeleteMessage deletes a message, at the chat's pace like every send.
func (b *Client) DeleteMessage(ctx context.Context, chatID int64, messageID int) error {
	if err := b.pace.wait(ctx, chatID); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.o.CallTimeout)
	defer cancel()
	_, err := b.api.DeleteMessage(ctx, &botapi.DeleteMessageParams{ChatID: chatID, MessageID: messageID})
	return b.flooded(ctx, chatID, classify(err))
}

// Reachable asks Telegram whether the bot may write to the user privately,
// for a user this database has not seen start the bot (started before the
// install, a restored database, another deployment of the same bot). A
// "typing" status is the cheapest call that meets sendMessage's 403s and
// leaves nothing in the chat. The answer is false with a nil error only on
// such a 403; a timeout, a 5xx or a 429 are errors, since they prove nothing.
func (b *Client) Reachable(ctx context.Context, userID int64, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The pace is kept even here: a wait longer than the timeout fails at
	// once instead of crossing Telegram's limit.
	if err := b.pace.wait(ctx, userID); err != nil {
		return false, fmt.Errorf("telegram sendChatAction to %d: %w", userID, err)
	}
	_, err := b.api.SendChatAction(ctx, &botapi.SendChatActionParams{ChatID: userID, Action: models.ChatActionTyping})
	switch err = b.flooded(ctx, userID, classify(err)); {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUserUnreachable):
		return false, nil
	default:
		return false, fmt.Errorf("telegram sendChatAction to %d: %w", userID, err)
	}
}

// AnswerCallback answers a button press: a short text, or a URL that makes
// Telegram open the bot's private chat.
func (b *Client) AnswerCallback(ctx context.Context, queryID, text, url string, alert bool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := b.api.AnswerCallbackQuery(ctx, &botapi.AnswerCallbackQueryParams{
		CallbackQueryID: queryID, Text: text, URL: url, ShowAlert: alert,
	})
	return classify(err)
}

// Reply sends a plain-text message within the same pace as every other send:
// a burst of commands in a group must not cross its 20 messages a minute.
// The wait for the pace is bounded by paceWait, separately from the call. A
// chat that no longer accepts messages is not worth retrying, so that is
// logged and not returned.
func (b *Client) Reply(ctx context.Context, chatID int64, text string, paceWait time.Duration) error {
	// The update handler's own workers wait here, not the jobs' workers.
	waitCtx, cancel := context.WithTimeout(ctx, paceWait)
	err := b.pace.waitUpTo(waitCtx, chatID, paceWait)
	cancel()
	if err != nil {
		return fmt.Errorf("telegram reply to %d waits for the chat's pace: %w", chatID, err)
	}
	callCtx, cancel := context.WithTimeout(ctx, b.o.CallTimeout)
	defer cancel()
	_, err = b.api.SendMessage(callCtx, &botapi.SendMessageParams{ChatID: chatID, Text: text})
	if err == nil {
		return nil
	}
	_ = b.flooded(ctx, chatID, classify(err))
	if errors.Is(err, botapi.ErrorForbidden) || errors.Is(err, botapi.ErrorBadRequest) {
		b.log.Warn("telegram reply not delivered", "chat_id", chatID, "err", err)
		return nil
	}
	return fmt.Errorf("telegram sendMessage to %d: %w", chatID, err)
}

// StartLink is the deep link that opens the bot's private chat with a payload.
func (b *Client) StartLink(ctx context.Context, payload string) (string, error) {
	u, err := b.Username(ctx)
	if err != nil {
		return "", err
	}
	return "https://t.me/" + u + "?start=" + payload, nil
}
