package flow

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/orderview"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// The executor card's button codes: one letter after ActionStatus.
const (
	codeOnWay      = 'w'
	codeStarted    = 's'
	codeDone       = 'd'
	codeRelease    = 'r' // asks for confirmation
	codeReleaseYes = 'R'
	codeReleaseNo  = 'x'
)

var statusCode = map[dispatch.OrderStatus]byte{
	dispatch.OrderOnWay: codeOnWay, dispatch.OrderStarted: codeStarted, dispatch.OrderDone: codeDone, dispatch.OrderReleased: codeRelease,
}

// StatusData is the callback data of a card button.
func StatusData(code byte, orderID string) string {
	return ActionStatus + string(code) + orderID
}

// statusButtons are the card's buttons for an order in progress: the
// pipeline's chosen statuses that may still follow the current one.
func statusButtons(lang string, o dispatch.Order, rule dispatch.Rule) [][]telegram.Button {
	if !o.InProgress() {
		return nil
	}
	var rows [][]telegram.Button
	for _, st := range rule.Buttons() {
		if !dispatch.CanBecome(o.Status, st, false) {
			continue
		}
		rows = append(rows, []telegram.Button{{Text: i18n.T(lang, "btn."+string(st)), Data: StatusData(statusCode[st], o.ID)}})
	}
	return rows
}

func releaseQuestion(lang, orderID string) [][]telegram.Button {
	return [][]telegram.Button{
		{{Text: i18n.T(lang, "btn.release_yes"), Data: StatusData(codeReleaseYes, orderID)}},
		{{Text: i18n.T(lang, "btn.release_no"), Data: StatusData(codeReleaseNo, orderID)}},
	}
}

// executorsOrder reads the order a private button's data (a code, then the
// order id) names. Only the order's executor may act on it: for anyone else,
// or an order that is gone, answer is what the press gets.
func (f *Flow) executorsOrder(ctx context.Context, data string, user dispatch.Executor, what string) (code byte, o dispatch.Order, answer *PressResult, err error) {
	if len(data) < 2 {
		return 0, o, &PressResult{Outcome: Closed}, nil
	}
	code, orderID := data[0], data[1:]
	o, err = f.db.OrderByID(ctx, orderID)
	if errors.Is(err, dispatch.ErrNotFound) {
		return 0, o, &PressResult{Outcome: Closed}, nil
	}
	if err != nil {
		return 0, o, &PressResult{}, err
	}
	if o.ExecutorID != user.TelegramID || o.ExecutorID == 0 {
		f.log.Info("a "+what+" press by someone other than the executor, ignored", "order_id", o.ID, "telegram_id", user.TelegramID)
		return 0, o, &PressResult{Outcome: NotYours}, nil
	}
	return code, o, nil, nil
}

// StatusPress handles a button of the executor's private card (data without
// ActionStatus). Only the order's executor changes anything; the answer
// never waits on amoCRM or Telegram: the note, the stage move and the card's
// edit are jobs queued in the transaction that changed the status.
func (f *Flow) StatusPress(ctx context.Context, data string, user dispatch.Executor) (PressResult, error) {
	code, o, answer, err := f.executorsOrder(ctx, data, user, "card")
	if answer != nil || err != nil {
		return *answer, err
	}
	switch code {
	case codeRelease, codeReleaseNo:
		if !o.InProgress() {
			return PressResult{Outcome: Closed}, nil
		}
		err := f.db.InTx(ctx, func(tx *store.Tx) error {
			return f.enqueue(ctx, tx, EditCardArgs{AccountID: o.AccountID, OrderID: o.ID, Ask: code == codeRelease})
		})
		if err != nil {
			return PressResult{}, err
		}
		if code == codeRelease {
			return PressResult{Outcome: ReleaseAsk}, nil
		}
		return PressResult{Outcome: ReleaseKept}, nil
	case codeReleaseYes:
		moved, err := f.release(ctx, o.AccountID, o.ID, user.TelegramID, false)
		if err != nil {
			return PressResult{}, err
		}
		if !moved {
			return PressResult{Outcome: Closed}, nil
		}
		return PressResult{Outcome: Released}, nil
	}
	var to dispatch.OrderStatus
	for st, c := range statusCode {
		if c == code && st != dispatch.OrderReleased {
			to = st
		}
	}
	if to == "" {
		return PressResult{Outcome: Closed}, nil
	}
	var now dispatch.Order
	moved := false
	err = f.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		now, moved, err = tx.MoveAssigned(o.AccountID, o.ID, user.TelegramID, to)
		if err != nil || !moved {
			return err
		}
		ev, _, err := tx.AddEvent(dispatch.Event{AccountID: o.AccountID, OrderID: o.ID, Kind: string(to), TelegramID: user.TelegramID,
			Actor: orderview.ExecutorLabel(executorView(now))})
		if err != nil {
			return err
		}
		return f.enqueue(ctx, tx, EditCardArgs{AccountID: o.AccountID, OrderID: o.ID}, EventWriteArgs{AccountID: o.AccountID, EventID: ev.ID})
	})
	switch {
	case err != nil:
		return PressResult{}, err
	case moved:
		f.log.Info("executor status", "account_id", o.AccountID, "order_id", o.ID, "status", to, "telegram_id", user.TelegramID)
		return PressResult{Outcome: StatusSaved}, nil
	case now.Reached(to):
		return PressResult{Outcome: StatusAlready}, nil
	}
	return PressResult{Outcome: Closed}, nil
}

// Unassign releases the deal's order on the manager's request from the deal
// card: like the executor's release, and the executor is told privately.
func (f *Flow) Unassign(ctx context.Context, accountID, leadID int64) error {
	o, err := f.db.InProgressOrder(ctx, accountID, leadID)
	if err != nil {
		return err
	}
	moved, err := f.release(ctx, accountID, o.ID, 0, true)
	if err != nil {
		return err
	}
	if !moved {
		return fmt.Errorf("deal %d has no executor now: %w", leadID, dispatch.ErrOrderClosed)
	}
	return nil
}

// release ends the executor's hold on an order: one conditional UPDATE
// decides among any number of confirmations, and the same transaction queues
// the deal's return to the search (which then posts it again), the group
// post's and the card's edits, and the executor's notice for an unassign.
func (f *Flow) release(ctx context.Context, accountID int64, orderID string, executorID int64, byManager bool) (bool, error) {
	moved := false
	err := f.db.InTx(ctx, func(tx *store.Tx) error {
		o, ok, err := tx.MoveAssigned(accountID, orderID, executorID, dispatch.OrderReleased)
		if err != nil || !ok {
			return err
		}
		moved = true
		ev, _, err := tx.AddEvent(dispatch.Event{AccountID: o.AccountID, OrderID: o.ID, Kind: string(dispatch.OrderReleased),
			TelegramID: executorID, Actor: orderview.ExecutorLabel(executorView(o))})
		if err != nil {
			return err
		}
		jobs := []river.JobArgs{ReleaseLeadArgs{AccountID: o.AccountID, EventID: ev.ID, ByManager: byManager}, EditCardArgs{AccountID: o.AccountID, OrderID: o.ID},
			EditReleasedArgs{AccountID: o.AccountID, OrderID: o.ID}}
		if byManager {
			jobs = append(jobs, NotifyExecutorArgs{AccountID: o.AccountID, OrderID: o.ID, Key: "notice.unassigned"})
		}
		return f.enqueue(ctx, tx, jobs...)
	})
	if err == nil && moved {
		f.log.Info("order released", "account_id", accountID, "order_id", orderID, "by_manager", byManager)
	}
	return moved, err
}

// EndUnderExecutor is called when the deal of an order in progress was
// closed or moved out of the flow's stages by a person: the order ends, the
// executor is told, and the card's buttons go.
func (f *Flow) endUnderExecutor(ctx context.Context, o dispatch.Order) error {
	return f.db.InTx(ctx, func(tx *store.Tx) error {
		_, moved, err := tx.MoveAssigned(o.AccountID, o.ID, 0, dispatch.OrderEnded)
		if err != nil || !moved {
			return err
		}
		f.log.Info("deal closed under its executor", "account_id", o.AccountID, "order_id", o.ID, "lead_id", o.LeadID)
		return f.enqueue(ctx, tx, EditCardArgs{AccountID: o.AccountID, OrderID: o.ID}, NotifyExecutorArgs{AccountID: o.AccountID, OrderID: o.ID, Key: "notice.ended"})
	})
}

// cardLang is the executor's language, for their private messages.
func (f *Flow) cardLang(ctx context.Context, telegramID int64) string {
	if e, err := f.db.Executor(ctx, telegramID); err == nil {
		return i18n.Lang(e.LanguageCode)
	}
	return "ru"
}

// editCard rewrites the executor's private card: the order as sent, a line
// with the current status, and the buttons that may still follow (or the
// release question). A card never recorded (the contact went out before
// this version) is left alone.
func (f *Flow) editCard(ctx context.Context, args EditCardArgs) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, args.OrderID)
	if err != nil || o.CardMessageID == 0 {
		return err
	}
	_, s, err := f.accountSettings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	lang := f.cardLang(ctx, o.ExecutorID)
	rule, _ := s.Rule(o.PipelineID)
	text, rows := f.cardView(ctx, o, lang, rule)
	if args.Ask && o.InProgress() {
		text = withLine(text, i18n.T(lang, "card.release_ask"))
		rows = releaseQuestion(lang, o.ID)
	}
	err = f.o.Sender.EditHTMLButtons(ctx, o.ExecutorID, o.CardMessageID, text, rows)
	if errors.Is(err, telegram.ErrMessageGone) || errors.Is(err, telegram.ErrUserUnreachable) {
		f.log.Warn("executor card not edited", "order_id", o.ID, "telegram_id", o.ExecutorID, "err", err)
		return nil
	}
	return err
}

// cardView is the card's text and buttons for the order as it is now.
func (f *Flow) cardView(ctx context.Context, o dispatch.Order, lang string, rule dispatch.Rule) (string, [][]telegram.Button) {
	text := o.CardText
	switch o.Status {
	case dispatch.OrderReleased:
		key := "card.released"
		if f.unassigned(ctx, o) {
			key = "card.unassigned"
		}
		return withLine(text, i18n.T(lang, key)), nil
	case dispatch.OrderEnded:
		return withLine(text, i18n.T(lang, "card.ended")), nil
	}
	at := o.TakenAt
	if evs, err := f.db.LeadEvents(ctx, o.AccountID, o.LeadID); err == nil {
		for _, e := range evs {
			if e.OrderID == o.ID && e.Kind == string(o.Status) {
				at = &e.At
			}
		}
	}
	when := ""
	if at != nil {
		when = at.In(f.o.Location).Format("15:04")
	}
	return withLine(text, i18n.T(lang, "card.status", i18n.T(lang, "status."+string(o.Status)), when)), statusButtons(lang, o, rule)
}

// unassigned reports whether a released order was released by the manager
// (its release step names no presser).
func (f *Flow) unassigned(ctx context.Context, o dispatch.Order) bool {
	evs, err := f.db.LeadEvents(ctx, o.AccountID, o.LeadID)
	if err != nil {
		return false
	}
	for _, e := range evs {
		if e.OrderID == o.ID && e.Kind == string(dispatch.OrderReleased) && e.TelegramID == 0 {
			return true
		}
	}
	return false
}

// notifyExecutor tells the executor privately what happened to their order.
func (f *Flow) notifyExecutor(ctx context.Context, args NotifyExecutorArgs) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, args.OrderID)
	if err != nil || o.ExecutorID == 0 {
		return err
	}
	lang := f.cardLang(ctx, o.ExecutorID)
	_, err = f.o.Sender.SendHTML(ctx, o.ExecutorID, html.EscapeString(i18n.T(lang, args.Key, o.LeadID)), nil)
	if errors.Is(err, telegram.ErrUserUnreachable) {
		f.log.Warn("executor cannot be told", "order_id", o.ID, "telegram_id", o.ExecutorID, "err", err)
		return nil
	}
	return err
}

// editReleased turns the group post of a released order into "executor
// released", without buttons; the new round has a post of its own.
func (f *Flow) editReleased(ctx context.Context, orderID string) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil || o.MessageID == 0 {
		return err
	}
	a, s, err := f.accountSettings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	key := "order.released"
	if f.unassigned(ctx, o) {
		key = "order.unassigned"
	}
	text := withLine(o.GroupText, i18n.T(s.Lang(a), key))
	return f.eachPost(ctx, o, func(p dispatch.Order) error { return f.editPost(ctx, p, text) })
}

// takeWriteWait is how long a status write waits for the take's own
// write-back before it looks again.
const takeWriteWait = 2 * time.Second

// waitTakeWrite is the snooze of a write that must follow the take's own
// write-back (which moves the deal to "executor found").
func (f *Flow) waitTakeWrite(ctx context.Context, orderID string) error {
	done, err := f.db.LeadUpdated(ctx, orderID)
	if err != nil || done {
		return err
	}
	return river.JobSnooze(takeWriteWait)
}

// writeEvent writes one timeline step into the deal: the status's stage
// (when the pipeline maps one) with at most one PATCH, read before, and one
// note, found by its marker before it is added again.
func (f *Flow) writeEvent(ctx context.Context, eventID string) error {
	e, noted, moved, err := f.db.Event(ctx, eventID)
	if err != nil {
		return err
	}
	o, err := f.db.OrderByID(ctx, e.OrderID)
	if err != nil {
		return err
	}
	if e.Kind != dispatch.EventContact {
		if err := f.waitTakeWrite(ctx, o.ID); err != nil {
			return err
		}
	}
	a, s, api, err := f.tenant(ctx, o.AccountID)
	if err != nil {
		return err
	}
	rule, _ := s.Rule(o.PipelineID)
	if stage := rule.StatusStages[dispatch.OrderStatus(e.Kind)]; stage != 0 && !moved && o.Assigned() {
		u := amocrm.LeadUpdate{ID: o.LeadID, StatusID: amocrm.Ptr(stage), PipelineID: amocrm.Ptr(o.PipelineID)}
		lead, err := api.GetLead(ctx, o.LeadID, false)
		switch {
		case errors.Is(err, amocrm.ErrNotFound):
		case err != nil:
			return err
		case !applied(lead, u):
			if err := api.UpdateLead(ctx, u); err != nil {
				return err
			}
		}
		if err := f.db.MarkEventLeadUpdated(ctx, e.ID); err != nil {
			return err
		}
	}
	if noted {
		return nil
	}
	when := e.At.In(f.o.Location).Format("15:04")
	lang := s.Lang(a)
	var text string
	if e.Kind == dispatch.EventContact {
		text = i18n.T(lang, "note.contact", e.Actor, when)
	} else {
		text = i18n.T(lang, "note.status", e.Actor, i18n.T(lang, "status."+e.Kind), when)
	}
	return f.noteOnce(ctx, api, o, e.ID, text)
}

// noteOnce adds a note to the order's deal unless one with the event's
// marker is there already, and records it on the event.
func (f *Flow) noteOnce(ctx context.Context, api *amocrm.API, o dispatch.Order, eventID, text string) error {
	marker := "[amoDispatch " + eventID + "]"
	notes, err := api.ListLeadNotes(ctx, o.LeadID)
	if errors.Is(err, amocrm.ErrNotFound) {
		return f.db.MarkEventNoted(ctx, eventID)
	}
	if err != nil {
		return err
	}
	for _, n := range notes {
		if strings.Contains(n.Params.Text, marker) {
			return f.db.MarkEventNoted(ctx, eventID)
		}
	}
	if _, err := api.AddLeadNote(ctx, o.LeadID, text+" "+marker); err != nil {
		return err
	}
	return f.db.MarkEventNoted(ctx, eventID)
}

// releaseLead returns a released order's deal to the search: the search
// stage it was posted from, the executor field cleared and the responsible
// user it had before the take (one PATCH, read before), a note, and then a
// new round through dispatchLead, which the deal's one current order keeps
// to one post however often this job runs.
func (f *Flow) releaseLead(ctx context.Context, args ReleaseLeadArgs) error {
	e, noted, moved, err := f.db.Event(ctx, args.EventID)
	if err != nil {
		return err
	}
	o, err := f.db.OrderByID(ctx, e.OrderID)
	if err != nil {
		return err
	}
	if err := f.waitTakeWrite(ctx, o.ID); err != nil {
		return err
	}
	a, _, api, err := f.tenant(ctx, o.AccountID)
	if err != nil {
		return err
	}
	s, err := f.db.Settings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	lead, err := api.GetLead(ctx, o.LeadID, false)
	if errors.Is(err, amocrm.ErrNotFound) {
		f.log.Info("released deal no longer in amoCRM", "account_id", o.AccountID, "lead_id", o.LeadID)
		return f.db.MarkEventNoted(ctx, e.ID)
	}
	if err != nil {
		return err
	}
	if !moved {
		u := amocrm.LeadUpdate{ID: o.LeadID, StatusID: amocrm.Ptr(o.StageID), PipelineID: amocrm.Ptr(o.PipelineID)}
		if o.PrevResponsibleID != 0 {
			u.ResponsibleUserID = amocrm.Ptr(o.PrevResponsibleID)
		}
		clear := a.ExecutorFieldID != 0 && fieldSet(lead, a.ExecutorFieldID)
		if clear {
			u.CustomFieldsValues = []amocrm.CustomFieldValue{{FieldID: a.ExecutorFieldID}}
		}
		if clear || !applied(lead, u) {
			if err := api.UpdateLead(ctx, u); err != nil {
				return err
			}
			lead.StatusID, lead.PipelineID = o.StageID, o.PipelineID
		}
		if err := f.db.MarkEventLeadUpdated(ctx, e.ID); err != nil {
			return err
		}
	}
	if !noted {
		key := "note.released"
		if args.ByManager {
			key = "note.unassigned"
		}
		text := i18n.T(s.Lang(a), key, e.Actor, e.At.In(f.o.Location).Format("15:04"))
		if err := f.noteOnce(ctx, api, o, e.ID, text); err != nil {
			return err
		}
	}
	// The new round: the deal is in its search stage again.
	return f.dispatchLead(ctx, DispatchLeadArgs{AccountID: o.AccountID, LeadID: o.LeadID, Reason: "release"})
}

// fieldSet reports whether the deal has a value in the field.
func fieldSet(l amocrm.Lead, fieldID int64) bool {
	for _, v := range l.CustomFieldsValues {
		if v.FieldID == fieldID && len(v.Values) > 0 {
			return true
		}
	}
	return false
}

// Mine answers /my in the private chat: a job sends the executor's open
// orders, each with its buttons, at the chat's pace.
func (f *Flow) Mine(ctx context.Context, user dispatch.Executor, messageID int) error {
	return f.db.InTx(ctx, func(tx *store.Tx) error {
		return f.enqueue(ctx, tx, SendMineArgs{TelegramID: user.TelegramID, MessageID: messageID})
	})
}

// sendMine sends each open order's card again; the new message becomes the
// card that status edits rewrite.
func (f *Flow) sendMine(ctx context.Context, telegramID int64) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	lang := f.cardLang(ctx, telegramID)
	orders, err := f.db.ExecutorOrders(ctx, telegramID)
	if err != nil {
		return err
	}
	if len(orders) == 0 {
		_, err := f.o.Sender.SendHTML(ctx, telegramID, html.EscapeString(i18n.T(lang, "my.none")), nil)
		return err
	}
	for _, o := range orders {
		if o.CardText == "" {
			continue // the contact has not reached them yet: its message will be the card
		}
		_, s, err := f.accountSettings(ctx, o.AccountID)
		if err != nil {
			return err
		}
		rule, _ := s.Rule(o.PipelineID)
		text, rows := f.cardView(ctx, o, lang, rule)
		msgID, err := f.o.Sender.SendHTML(ctx, telegramID, text, rows)
		if err != nil {
			return err
		}
		if err := f.db.SetCard(ctx, o.ID, msgID, o.CardText); err != nil {
			return err
		}
	}
	return nil
}
