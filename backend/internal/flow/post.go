package flow

import (
	"context"
	"errors"
	"fmt"
	"html"
	"time"
	"unicode/utf16"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/orderview"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

var errNoBot = errors.New("telegram bot is not configured")

// leadFields returns the account's deal fields, cached for a minute: every
// post needs them, and amoCRM allows an account 7 requests a second.
func (f *Flow) leadFields(ctx context.Context, api *amocrm.API, accountID int64) ([]amocrm.CustomField, error) {
	f.fieldsMu.Lock()
	c, ok := f.fields[accountID]
	f.fieldsMu.Unlock()
	if ok && time.Since(c.at) < time.Minute {
		return c.fields, nil
	}
	fields, err := api.ListLeadCustomFields(ctx)
	if err != nil {
		return nil, fmt.Errorf("list deal fields: %w", err)
	}
	f.fieldsMu.Lock()
	f.fields[accountID] = cachedFields{fields: fields, at: time.Now()}
	f.fieldsMu.Unlock()
	return fields, nil
}

type cachedFields struct {
	fields []amocrm.CustomField
	at     time.Time
}

// viewOptions gathers how an account's orders are rendered.
func (f *Flow) viewOptions(ctx context.Context, api *amocrm.API, a dispatch.Account, s dispatch.Settings) (orderview.Options, error) {
	fields, err := f.leadFields(ctx, api, a.ID)
	if err != nil {
		return orderview.Options{}, err
	}
	o := orderview.Options{Lang: i18n.Lang(s.Lang(a)), Currency: a.Currency, Location: f.o.Location,
		ShowFieldIDs: s.OrderFieldIDs, ShowBudget: s.ShowBudget}
	for _, fd := range fields {
		if fd.Code == "AMODISPATCH_EXECUTOR" {
			// The executor field is our output, not part of the order; the
			// deal carries its value after the take, so it is hidden by id.
			o.HiddenFieldIDs = append(o.HiddenFieldIDs, fd.ID)
			continue
		}
		o.Fields = append(o.Fields, orderview.Field{ID: fd.ID, Name: fd.Name, Type: fd.Type, Code: fd.Code})
	}
	return o, nil
}

// orderContext loads what rendering an order needs.
func (f *Flow) orderContext(ctx context.Context, o dispatch.Order, withContacts bool) (*amocrm.API, amocrm.Lead, orderview.Options, error) {
	a, s, api, err := f.tenant(ctx, o.AccountID)
	if err != nil {
		return nil, amocrm.Lead{}, orderview.Options{}, err
	}
	lead, err := api.GetLead(ctx, o.LeadID, withContacts)
	if err != nil {
		return nil, amocrm.Lead{}, orderview.Options{}, err
	}
	view, err := f.viewOptions(ctx, api, a, s)
	return api, lead, view, err
}

// buttons are the group post's: "Get client phone" unless only the executor
// gets the contact, and "Take order".
func buttons(lang, orderID string, policy dispatch.ContactPolicy) [][]telegram.Button {
	take := []telegram.Button{{Text: i18n.T(lang, "btn.take"), Data: ActionTake + orderID}}
	if policy == dispatch.ContactExecutorOnly {
		return [][]telegram.Button{take}
	}
	return [][]telegram.Button{{{Text: i18n.T(lang, "btn.phone"), Data: ActionPhone + orderID}}, take}
}

// postOrder sends the order to its chat with the two buttons. The order's
// status guards against a second post: only a "posting" order is sent.
func (f *Flow) postOrder(ctx context.Context, orderID string) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil {
		return err
	}
	if !o.AwaitsPost() {
		return nil
	}
	if c, err := f.db.Chat(ctx, o.ChatID); err != nil || !c.ActiveFor(o.AccountID) {
		return f.db.FailOrder(ctx, o.ID, "chat is no longer linked")
	}
	a, s, err := f.accountSettings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	text := o.GroupText
	msgID, err := f.o.Sender.SendHTML(ctx, o.ChatID, text, buttons(i18n.Lang(s.Lang(a)), o.ID, s.ContactPolicy))
	if err != nil {
		return f.chatFailure(ctx, o, err)
	}
	posted, err := f.db.MarkPosted(ctx, o.ID, msgID, text)
	if err != nil {
		return err
	}
	if !posted {
		// Withdrawn while the post was on its way: record the message so the
		// withdrawal can still edit it.
		if err := f.db.RecordMessage(ctx, o.ID, msgID, text); err != nil {
			return err
		}
		return f.withdrawPost(ctx, o.ID)
	}
	if _, _, err := f.db.AddEvent(ctx, dispatch.Event{AccountID: o.AccountID, OrderID: o.ID, Kind: dispatch.EventPosted}); err != nil {
		return err
	}
	if at := webhookAt(ctx); !at.IsZero() {
		f.o.Metrics.Posted(time.Since(at))
	}
	f.log.Info("order posted", "account_id", o.AccountID, "order_id", o.ID, "chat_id", o.ChatID, "message_id", msgID)
	return nil
}

// chatFailure handles what a group can answer to a post or an edit.
func (f *Flow) chatFailure(ctx context.Context, o dispatch.Order, err error) error {
	var mig *telegram.MigratedError
	switch {
	case errors.As(err, &mig):
		// The group became a supergroup: follow it and retry there.
		if _, merr := f.db.MigrateChat(ctx, o.ChatID, mig.NewChatID, "supergroup"); merr != nil {
			return merr
		}
		return err
	case errors.Is(err, telegram.ErrChatGone):
		f.log.Warn("chat is gone, order cannot be posted", "account_id", o.AccountID, "order_id", o.ID, "chat_id", o.ChatID, "err", err)
		if _, derr := f.db.DeactivateChat(ctx, o.ChatID); derr != nil {
			return derr
		}
		return f.db.FailOrder(ctx, o.ID, "chat unavailable: "+err.Error())
	}
	return err
}

// withdrawPost turns an order's group post into "withdrawn", without buttons.
func (f *Flow) withdrawPost(ctx context.Context, orderID string) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil || o.MessageID == 0 {
		return err // not posted yet: postOrder will see the withdrawal
	}
	return f.eachPost(ctx, o, func(p dispatch.Order) error { return f.editWithdrawn(ctx, p) })
}

func (f *Flow) editWithdrawn(ctx context.Context, o dispatch.Order) error {
	a, s, err := f.accountSettings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	text := withLine(o.GroupText, i18n.T(s.Lang(a), "order.withdrawn"))
	return f.editPost(ctx, o, text)
}

// editTaken shows the winner in the group post and removes the buttons.
func (f *Flow) editTaken(ctx context.Context, orderID string) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil {
		return err
	}
	if !o.Assigned() || o.MessageID == 0 {
		return nil
	}
	text, err := f.takenText(ctx, o)
	if err != nil {
		return err
	}
	return f.eachPost(ctx, o, func(p dispatch.Order) error { return f.editPost(ctx, p, text) })
}

func (f *Flow) editTakenPost(ctx context.Context, o dispatch.Order) error {
	text, err := f.takenText(ctx, o)
	if err != nil {
		return err
	}
	return f.editPost(ctx, o, text)
}

// takenText is a taken order's post: the order with its executor.
func (f *Flow) takenText(ctx context.Context, o dispatch.Order) (string, error) {
	_, lead, view, err := f.orderContext(ctx, o, false)
	switch {
	case err == nil:
		return orderview.Taken(lead, executorView(o), *o.TakenAt, view), nil
	case errors.Is(err, amocrm.ErrNotFound):
		a, _ := f.db.Account(ctx, o.AccountID)
		return withLine(o.GroupText, orderview.ExecutorLabel(executorView(o))+" ✅ "+a.Name), nil
	default:
		return "", err
	}
}

// tidyCopy brings a second post of an order up to date: a sendMessage that
// timed out after Telegram had carried it out leaves a copy whose buttons
// still work on the same order. The first press on it names it, and once the
// order is decided the copy shows the outcome too.
func (f *Flow) tidyCopy(ctx context.Context, args TidyCopyArgs) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, args.OrderID)
	chatID := args.ChatID
	if chatID == 0 {
		chatID = o.ChatID
	}
	if err != nil || (chatID == o.ChatID && o.MessageID == args.MessageID) {
		return err // the recorded post has its own edits
	}
	o.ChatID, o.MessageID = chatID, args.MessageID
	switch {
	case o.Assigned():
		return f.editTakenPost(ctx, o)
	case o.Status == dispatch.OrderOpen || o.Status == dispatch.OrderPosting:
		return nil // the copy's buttons act on the open order like the post's
	default:
		return f.editWithdrawn(ctx, o)
	}
}

func (f *Flow) editPost(ctx context.Context, o dispatch.Order, text string) error {
	err := f.o.Sender.EditHTML(ctx, o.ChatID, o.MessageID, text)
	if errors.Is(err, telegram.ErrMessageGone) {
		f.log.Warn("group post was deleted, not edited", "order_id", o.ID, "chat_id", o.ChatID)
		return nil
	}
	if errors.Is(err, telegram.ErrChatGone) {
		f.log.Warn("chat is gone, post not edited", "order_id", o.ID, "chat_id", o.ChatID)
		_, derr := f.db.DeactivateChat(ctx, o.ChatID)
		return derr
	}
	var mig *telegram.MigratedError
	if errors.As(err, &mig) {
		return f.chatFailure(ctx, o, err)
	}
	return err
}

func executorView(o dispatch.Order) orderview.Executor {
	e := o.Executor()
	return orderview.Executor{TelegramID: e.TelegramID, FirstName: e.FirstName, LastName: e.LastName, Username: e.Username}
}

// withLine appends a plain line to an HTML post, dropping the post body when
// the result would pass Telegram's limit.
func withLine(post, line string) string {
	out := post + "\n\n" + html.EscapeString(line)
	if len(utf16.Encode([]rune(out))) > orderview.MaxLen {
		return html.EscapeString(line)
	}
	return out
}

// accountSettings loads an account with its dispatch settings.
func (f *Flow) accountSettings(ctx context.Context, accountID int64) (dispatch.Account, dispatch.Settings, error) {
	a, err := f.db.Account(ctx, accountID)
	if err != nil {
		return a, dispatch.Settings{}, err
	}
	s, err := f.db.Settings(ctx, accountID)
	return a, s, err
}

// tenant loads an account, its settings and its amoCRM API.
func (f *Flow) tenant(ctx context.Context, accountID int64) (dispatch.Account, dispatch.Settings, *amocrm.API, error) {
	a, s, err := f.accountSettings(ctx, accountID)
	if err != nil {
		return a, s, nil, err
	}
	api, err := f.o.CRM.API(ctx, accountID)
	return a, s, api, err
}
