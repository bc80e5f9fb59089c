package flow

import (
	"context"
	"errors"
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/orderview"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// Reminders before the job time (issue #13). A take queues remind_plan in
// its transaction; the plan job reads the deal's job-time field and makes
// the order's reminder plan, whose steps are River jobs scheduled at their
// times and queued in the transaction that makes the plan. A moved job time
// (update_lead webhook, or the reconciler) cancels the plan and makes a new
// one in one transaction. Each step job re-reads its plan and order before
// it acts and records itself done with one conditional UPDATE, so a step
// acts once across retries, restarts and replicas; a release, done, the deal
// closing or a cancelled plan makes it do nothing.

// ActionRemind prefixes the buttons of a reminder: a code and the order id.
const ActionRemind = "m:"

// The reminder's button codes.
const (
	remindConfirm    = 'c'
	remindRelease    = 'r' // asks for confirmation in the reminder itself
	remindReleaseYes = 'R'
	remindReleaseNo  = 'x'
)

// RemindData is the callback data of a reminder's button.
func RemindData(code byte, orderID string) string {
	return ActionRemind + string(code) + orderID
}

// PlanRemindersArgs makes a taken order's reminder plan from its deal.
type PlanRemindersArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
}

func (PlanRemindersArgs) Kind() string { return "remind_plan" }

func (PlanRemindersArgs) InsertOpts() river.InsertOpts { return onceLive() }

// RemindArgs is one step of a reminder plan, scheduled at its time.
type RemindArgs struct {
	AccountID int64  `json:"account_id"`
	PlanID    string `json:"plan_id"`
	Step      string `json:"step"`
	OffsetMin int64  `json:"offset_min"`
}

func (RemindArgs) Kind() string { return "remind" }

// InsertOpts: a step is queued once per plan.
func (RemindArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// EditReminderArgs rewrites a reminder message after a press on it.
type EditReminderArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
	MessageID int    `json:"message_id"`
	Ask       bool   `json:"ask,omitempty"`
}

func (EditReminderArgs) Kind() string { return "edit_reminder" }

func (f *Flow) registerReminders(w *river.Workers) {
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[PlanRemindersArgs]) error {
		return outcome(f.planReminders(ctx, j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[RemindArgs]) error {
		return outcome(f.remind(ctx, j.Args))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EditReminderArgs]) error {
		return outcome(f.editReminder(ctx, j.Args))
	}))
}

// zones caches each account's time zone: amoCRM is asked once an hour.
type zones struct {
	mu sync.Mutex
	m  map[int64]cachedZone
}

type cachedZone struct {
	name string
	at   time.Time
}

// zoneName is the account's time zone name as amoCRM has it (Europe/Moscow
// for a name this build does not know).
func (f *Flow) zoneName(ctx context.Context, api *amocrm.API, accountID int64) (string, error) {
	f.zones.mu.Lock()
	c, ok := f.zones.m[accountID]
	f.zones.mu.Unlock()
	if ok && time.Since(c.at) < time.Hour {
		return c.name, nil
	}
	name, err := api.Timezone(ctx)
	if err != nil {
		return "", fmt.Errorf("read the account's time zone: %w", err)
	}
	if _, err := time.LoadLocation(name); err != nil || name == "" {
		f.log.Warn("amoCRM named a time zone this build does not know; Europe/Moscow used", "account_id", accountID, "timezone", name)
		name = "Europe/Moscow"
	}
	f.zones.mu.Lock()
	if f.zones.m == nil || len(f.zones.m) > 10000 {
		f.zones.m = map[int64]cachedZone{}
	}
	f.zones.m[accountID] = cachedZone{name: name, at: time.Now()}
	f.zones.mu.Unlock()
	return name, nil
}

// jobTime reads the job time from the deal's field: a date_time field is
// the moment it holds; a date field (a day) means dispatch.DateOnlyHour
// that day in the account's zone. amoCRM keeps both as Unix seconds (a day
// as its midnight in the account's zone; a day stored as midnight UTC by
// an integration is read as that UTC day).
func jobTime(lead amocrm.Lead, fieldID int64, loc *time.Location) (at time.Time, dateOnly, ok bool) {
	for _, v := range lead.CustomFieldsValues {
		if v.FieldID != fieldID || len(v.Values) == 0 {
			continue
		}
		t, ok := unixValue(v.Values[0].Value)
		if !ok {
			return time.Time{}, false, false
		}
		if v.FieldType != "date" && v.FieldType != "birthday" {
			return t, false, true
		}
		day := t.In(loc)
		if u := t.UTC(); (day.Hour() != 0 || day.Minute() != 0) && u.Hour() == 0 && u.Minute() == 0 {
			day = u
		}
		return time.Date(day.Year(), day.Month(), day.Day(), dispatch.DateOnlyHour, 0, 0, 0, loc), true, true
	}
	return time.Time{}, false, false
}

// unixValue reads a date value: Unix seconds as a number or a numeric
// string, or an RFC 3339 string.
func unixValue(raw any) (time.Time, bool) {
	switch v := raw.(type) {
	case float64:
		if math.IsNaN(v) || v <= 0 || v > 253402300799 {
			return time.Time{}, false
		}
		return time.Unix(int64(v), 0), true
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > 0 && n <= 253402300799 {
			return time.Unix(n, 0), true
		}
		if t, err := time.Parse(time.RFC3339, strings.TrimSpace(v)); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// planReminders makes a taken order's plan from its deal as amoCRM has it
// now (one read, and the zone once an hour).
func (f *Flow) planReminders(ctx context.Context, orderID string) error {
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil || !o.InProgress() {
		return err
	}
	s, err := f.db.Settings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	if rule, _ := s.Rule(o.PipelineID); rule.JobTimeFieldID == 0 {
		return nil
	}
	api, err := f.o.CRM.API(ctx, o.AccountID)
	if err != nil {
		return err
	}
	defer f.lockLead(o.LeadID)()
	lead, err := api.GetLead(ctx, o.LeadID, false)
	if errors.Is(err, amocrm.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.followJobTime(ctx, api, o, s, lead)
}

// followJobTime keeps the order's plan on the deal's job time: a new time
// cancels the plan and makes another with its step jobs, in one
// transaction; the same time changes nothing; no time cancels the plan.
func (f *Flow) followJobTime(ctx context.Context, api *amocrm.API, o dispatch.Order, s dispatch.Settings, lead amocrm.Lead) error {
	rule, _ := s.Rule(o.PipelineID)
	if rule.JobTimeFieldID == 0 || !o.InProgress() {
		return nil
	}
	zone, err := f.zoneName(ctx, api, o.AccountID)
	if err != nil {
		return err
	}
	loc, _ := time.LoadLocation(zone)
	at, dateOnly, ok := jobTime(lead, rule.JobTimeFieldID, loc)
	if !ok {
		if cancelled, err := f.db.CancelPlans(ctx, o.ID); err != nil || !cancelled {
			return err
		}
		f.log.Info("job time cleared, reminders cancelled", "account_id", o.AccountID, "order_id", o.ID)
		return nil
	}
	now := f.o.Now()
	steps := dispatch.PlanSteps(at, now, rule.Offsets())
	err = f.db.InTx(ctx, func(tx *store.Tx) error {
		p, steps, made, err := tx.ReplacePlan(dispatch.ReminderPlan{AccountID: o.AccountID, OrderID: o.ID, LeadID: o.LeadID, JobAt: at,
			TimeZone: zone, DateOnly: dateOnly}, steps)
		if err != nil || !made {
			return err
		}
		f.log.Info("reminders planned", "account_id", o.AccountID, "order_id", o.ID, "plan_id", p.ID, "job_at", at, "steps", len(steps))
		params := make([]river.InsertManyParams, len(steps))
		for i, st := range steps {
			opts := RemindArgs{}.InsertOpts()
			opts.ScheduledAt = st.DueAt
			params[i] = river.InsertManyParams{Args: RemindArgs{AccountID: p.AccountID, PlanID: p.ID, Step: st.Kind, OffsetMin: int64(st.Offset / time.Minute)},
				InsertOpts: &opts}
		}
		if len(params) == 0 {
			return nil
		}
		if _, err := f.river.InsertManyTx(ctx, tx.SQL(), params); err != nil {
			return fmt.Errorf("flow: enqueue reminders: %w", err)
		}
		return nil
	})
	if errors.Is(err, dispatch.ErrConflict) {
		return nil // a concurrent planner made it
	}
	return err
}

// remind carries out one step of a plan, once: a reminder to the executor,
// or for no confirmation a task and a note for the deal's responsible user.
// A cancelled plan, a step done or an order no longer in its executor's
// hands makes it do nothing.
func (f *Flow) remind(ctx context.Context, args RemindArgs) error {
	offset := time.Duration(args.OffsetMin) * time.Minute
	st, p, err := f.db.ReminderStep(ctx, args.PlanID, args.Step, offset)
	if errors.Is(err, dispatch.ErrNotFound) {
		return nil
	}
	if err != nil || st.DoneAt != nil || !p.Live() {
		return err
	}
	o, err := f.db.OrderByID(ctx, p.OrderID)
	if err != nil {
		return err
	}
	if !o.InProgress() {
		// Released, done or ended: the plan goes with the order.
		_, err := f.db.CancelPlans(ctx, o.ID)
		return err
	}
	if args.Step == dispatch.StepCheck {
		return f.checkConfirmed(ctx, o, p, st)
	}
	if !f.o.Now().Before(p.JobAt) {
		_, err := f.db.MarkStepDone(ctx, st.PlanID, st.Kind, st.Offset, 0) // too late to remind
		return err
	}
	if f.o.Sender == nil {
		return errNoBot
	}
	lang := f.cardLang(ctx, o.ExecutorID)
	text, rows := f.reminderView(ctx, o, p, lang, false)
	msgID, err := f.o.Sender.SendHTML(ctx, o.ExecutorID, text, rows)
	if errors.Is(err, telegram.ErrUserUnreachable) {
		f.log.Warn("executor cannot be reminded", "order_id", o.ID, "telegram_id", o.ExecutorID, "err", err)
		msgID, err = 0, nil
	}
	if err != nil {
		return err
	}
	f.log.Info("reminder sent", "account_id", o.AccountID, "order_id", o.ID, "plan_id", p.ID, "offset", offset, "telegram_id", o.ExecutorID)
	_, err = f.db.MarkStepDone(ctx, st.PlanID, st.Kind, st.Offset, msgID)
	return err
}

// checkConfirmed is the confirmation check: unconfirmed, the deal gets a
// task for its responsible user and a note, each found by the plan's
// marker before it is written, so a retry writes neither twice.
func (f *Flow) checkConfirmed(ctx context.Context, o dispatch.Order, p dispatch.ReminderPlan, st dispatch.ReminderStep) error {
	if p.ConfirmedAt != nil {
		_, err := f.db.MarkStepDone(ctx, st.PlanID, st.Kind, st.Offset, 0)
		return err
	}
	a, s, api, err := f.tenant(ctx, o.AccountID)
	if err != nil {
		return err
	}
	lead, err := api.GetLead(ctx, o.LeadID, false)
	if errors.Is(err, amocrm.ErrNotFound) {
		_, err := f.db.MarkStepDone(ctx, st.PlanID, st.Kind, st.Offset, 0)
		return err
	}
	if err != nil {
		return err
	}
	lang := s.Lang(a)
	marker := "[amoDispatch " + p.ID + "]"
	when := jobTimeText(p, lang)
	who := orderview.ExecutorLabel(executorView(o))
	tasks, err := api.ListLeadTasks(ctx, o.LeadID)
	if err != nil {
		return err
	}
	tasked := false
	for _, t := range tasks {
		tasked = tasked || strings.Contains(t.Text, marker)
	}
	if !tasked {
		due := p.JobAt
		if min := f.o.Now().Add(15 * time.Minute); due.Before(min) {
			due = min
		}
		if _, err := api.AddLeadTask(ctx, amocrm.Task{EntityID: o.LeadID, Text: i18n.T(lang, "remind.task", who, when) + " " + marker,
			CompleteTill: due.Unix(), ResponsibleUserID: lead.ResponsibleUserID}); err != nil {
			return err
		}
	}
	notes, err := api.ListLeadNotes(ctx, o.LeadID)
	if err != nil {
		return err
	}
	noted := false
	for _, n := range notes {
		noted = noted || strings.Contains(n.Params.Text, marker)
	}
	if !noted {
		if _, err := api.AddLeadNote(ctx, o.LeadID, i18n.T(lang, "remind.note", who, when)+" "+marker); err != nil {
			return err
		}
	}
	f.log.Info("no confirmation before the job time: task and note written", "account_id", o.AccountID, "order_id", o.ID, "plan_id", p.ID)
	_, err = f.db.MarkStepDone(ctx, st.PlanID, st.Kind, st.Offset, 0)
	return err
}

// jobTimeText is the job time as people read it, in the plan's zone: a day
// alone for a date field.
func jobTimeText(p dispatch.ReminderPlan, lang string) string {
	t := p.JobAt.In(p.Location())
	if p.DateOnly {
		return t.Format("02.01.2006")
	}
	if lang == "en" {
		return t.Format("02.01.2006 at 15:04")
	}
	return t.Format("02.01.2006 в 15:04")
}

// reminderView is a reminder's text and buttons for the order and its plan
// as they are now; ask shows the release question.
func (f *Flow) reminderView(ctx context.Context, o dispatch.Order, p dispatch.ReminderPlan, lang string, ask bool) (string, [][]telegram.Button) {
	head := i18n.T(lang, "remind.text", o.LeadID, jobTimeText(p, lang))
	text := html.EscapeString(head)
	if o.CardText != "" {
		text = withLine(o.CardText, head)
	}
	switch {
	case !o.InProgress():
		_, s, err := f.accountSettings(ctx, o.AccountID)
		if err != nil {
			return withLine(text, i18n.T(lang, "card.ended")), nil
		}
		rule, _ := s.Rule(o.PipelineID)
		card, _ := f.cardView(ctx, o, lang, rule)
		return withLine(text, lastLine(card)), nil
	case ask:
		return withLine(text, i18n.T(lang, "card.release_ask")), [][]telegram.Button{
			{{Text: i18n.T(lang, "btn.release_yes"), Data: RemindData(remindReleaseYes, o.ID)}},
			{{Text: i18n.T(lang, "btn.release_no"), Data: RemindData(remindReleaseNo, o.ID)}},
		}
	case p.ConfirmedAt != nil && p.Live():
		return withLine(text, i18n.T(lang, "remind.confirmed")), [][]telegram.Button{
			{{Text: i18n.T(lang, "btn.released"), Data: RemindData(remindRelease, o.ID)}},
		}
	}
	return text, [][]telegram.Button{
		{{Text: i18n.T(lang, "btn.confirm"), Data: RemindData(remindConfirm, o.ID)}},
		{{Text: i18n.T(lang, "btn.released"), Data: RemindData(remindRelease, o.ID)}},
	}
}

// lastLine is a card's status line (its last line).
func lastLine(text string) string {
	if i := strings.LastIndex(text, "\n"); i >= 0 {
		return html.UnescapeString(text[i+1:])
	}
	return html.UnescapeString(text)
}

// ReminderPress handles a reminder's button (data without ActionRemind)
// pressed on messageID of the executor's private chat (0: a message the bot
// cannot access, which is not edited). Only the order's executor changes
// anything; "Release" asks first and then releases exactly as the card does.
func (f *Flow) ReminderPress(ctx context.Context, data string, messageID int, user dispatch.Executor) (PressResult, error) {
	code, o, answer, err := f.executorsOrder(ctx, data, user, "reminder")
	if answer != nil || err != nil {
		return *answer, err
	}
	edit := func(tx *store.Tx, ask bool) error {
		if messageID == 0 {
			return nil
		}
		return f.enqueue(ctx, tx, EditReminderArgs{AccountID: o.AccountID, OrderID: o.ID, MessageID: messageID, Ask: ask})
	}
	if code == remindReleaseYes {
		moved, err := f.release(ctx, o.AccountID, o.ID, user.TelegramID, false)
		if err != nil {
			return PressResult{}, err
		}
		if err := f.db.InTx(ctx, func(tx *store.Tx) error { return edit(tx, false) }); err != nil {
			f.log.Warn("could not queue the reminder's edit", "order_id", o.ID, "err", err)
		}
		if !moved {
			return PressResult{Outcome: Closed}, nil
		}
		return PressResult{Outcome: Released}, nil
	}
	if !o.InProgress() {
		return PressResult{Outcome: Closed}, nil
	}
	res := PressResult{Outcome: Closed}
	err = f.db.InTx(ctx, func(tx *store.Tx) error {
		switch code {
		case remindRelease:
			res.Outcome = ReleaseAsk
			return edit(tx, true)
		case remindReleaseNo:
			res.Outcome = ReleaseKept
			return edit(tx, false)
		case remindConfirm:
			_, confirmed, err := tx.ConfirmPlan(o.ID)
			if errors.Is(err, dispatch.ErrNotFound) {
				return nil // no live plan: the job time was cleared
			}
			if err != nil {
				return err
			}
			if !confirmed {
				res.Outcome = ConfirmedAlready
				return nil
			}
			res.Outcome = Confirmed
			ev, added, err := tx.AddEvent(dispatch.Event{AccountID: o.AccountID, OrderID: o.ID, Kind: dispatch.EventConfirmed,
				TelegramID: user.TelegramID, Actor: orderview.ExecutorLabel(executorView(o))})
			if err != nil {
				return err
			}
			jobs := []river.JobArgs{}
			if added {
				jobs = append(jobs, EventWriteArgs{EventID: ev.ID})
			}
			if messageID != 0 {
				jobs = append(jobs, EditReminderArgs{AccountID: o.AccountID, OrderID: o.ID, MessageID: messageID})
			}
			if len(jobs) == 0 {
				return nil
			}
			return f.enqueue(ctx, tx, jobs...)
		}
		return nil
	})
	if err != nil {
		return PressResult{}, err
	}
	if res.Outcome == Confirmed {
		f.log.Info("executor confirmed the job time", "account_id", o.AccountID, "order_id", o.ID, "telegram_id", user.TelegramID)
	}
	return res, nil
}

// editReminder rewrites a pressed reminder for the order as it is now.
func (f *Flow) editReminder(ctx context.Context, args EditReminderArgs) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, args.OrderID)
	if err != nil || o.ExecutorID == 0 {
		return err
	}
	p, err := f.db.LivePlan(ctx, o.ID)
	if err != nil && !errors.Is(err, dispatch.ErrNotFound) {
		return err
	}
	if err != nil {
		p = dispatch.ReminderPlan{} // shown without a time
		if last, lerr := f.db.LatestPlan(ctx, o.ID); lerr == nil {
			p = last
		}
	}
	lang := f.cardLang(ctx, o.ExecutorID)
	text, rows := f.reminderView(ctx, o, p, lang, args.Ask)
	err = f.o.Sender.EditHTMLButtons(ctx, o.ExecutorID, args.MessageID, text, rows)
	if errors.Is(err, telegram.ErrMessageGone) || errors.Is(err, telegram.ErrUserUnreachable) {
		f.log.Warn("reminder not edited", "order_id", o.ID, "telegram_id", o.ExecutorID, "err", err)
		return nil
	}
	return err
}

// reconcileReminders brings the live plans of an account's orders in
// progress up to their deals, for a job time moved (or a deal closed) while
// its webhook was lost: one paged read of those deals changed since the
// pass's bound.
func (f *Flow) reconcileReminders(ctx context.Context, api *amocrm.API, s dispatch.Settings, since int64) error {
	plans, err := f.db.LivePlans(ctx, s.AccountID)
	if err != nil || len(plans) == 0 {
		return err
	}
	filter := amocrm.LeadFilter{}
	orders := map[int64]string{}
	for _, p := range plans {
		if _, dup := orders[p.LeadID]; !dup {
			filter.IDs = append(filter.IDs, p.LeadID)
		}
		orders[p.LeadID] = p.OrderID
	}
	if since != 0 {
		filter.UpdatedFrom = time.Unix(since, 0)
	}
	leads, err := api.ListLeads(ctx, filter)
	if err != nil {
		return err
	}
	for _, l := range leads {
		unlock := f.lockLead(l.ID)
		_, err := f.followExecutor(ctx, api, DispatchLeadArgs{AccountID: s.AccountID, LeadID: l.ID, Reason: "reconcile"}, s, l, l.IsDeleted)
		unlock()
		if err != nil {
			return err
		}
	}
	return nil
}
