package flow

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// testClock is a settable clock for the flow.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// remindEnv is statusEnv with the pipeline's job time in the deal's
// date_time field (default offsets), the job at jobAt, a controllable clock
// at now, a fake sender, and the order taken with its contact sent (the
// card). It returns the env, the order, the clock and the sender.
func remindEnv(t *testing.T, kind dbtest.Kind, now, jobAt time.Time) (*env, dispatch.Order, *testClock, *fakeSender) {
	t.Helper()
	e, o, _, _ := statusEnv(t, kind)
	ctx := context.Background()
	s, err := e.db.Settings(ctx, e.accountID)
	if err != nil {
		t.Fatal(err)
	}
	s.Rules[0].JobTimeFieldID = e.jobField
	if err := e.db.SaveSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	e.setJobTime(t, jobAt)
	clock := &testClock{now: now}
	e.f.o.Now = clock.Now
	tg := &fakeSender{}
	e.f.o.Sender = tg
	if err := e.f.sendContact(ctx, SendContactArgs{RevealID: firstReveal(t, e, o.ID), TelegramID: execMapped, Winner: true}); err != nil {
		t.Fatal(err)
	}
	tg.sends = nil
	o, err = e.db.OrderByID(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	return e, o, clock, tg
}

// setJobTime writes the deal's job time in amoCRM (zero clears it).
func (e *env) setJobTime(t *testing.T, at time.Time) {
	t.Helper()
	_, err := e.amo.UpdateLead(e.accountID, e.leadID, func(l *fakeamocrm.Lead) {
		l.CustomFieldsValues = slices.DeleteFunc(l.CustomFieldsValues, func(v fakeamocrm.CustomFieldValue) bool { return v.FieldID == e.jobField })
		if !at.IsZero() {
			l.CustomFieldsValues = append(l.CustomFieldsValues, fakeamocrm.CustomFieldValue{FieldID: e.jobField,
				Values: []fakeamocrm.FieldValue{{Value: at.Unix()}}})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// steps lists the remind jobs queued, as the worker would get them.
func (e *env) remindJobs(t *testing.T) []RemindArgs {
	t.Helper()
	q := `SELECT args FROM river_job WHERE kind = 'remind' ORDER BY scheduled_at, id`
	if e.db.Dialect() == store.SQLite {
		q = `SELECT json(args) FROM river_job WHERE kind = 'remind' ORDER BY scheduled_at, id`
	}
	rows, err := e.db.SQL().Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []RemindArgs
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var a RemindArgs
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// runDue runs every queued step due by the clock, as River would, twice
// each (a retry after a lost record must not act again).
func (e *env) runDue(t *testing.T, clock *testClock) {
	t.Helper()
	for _, a := range e.remindJobs(t) {
		st, _, err := e.db.ReminderStep(context.Background(), a.PlanID, a.Step, time.Duration(a.OffsetMin)*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if st.DueAt.After(clock.Now()) {
			continue
		}
		for range 2 {
			if err := e.f.remind(context.Background(), a); err != nil {
				t.Fatalf("remind %+v: %v", a, err)
			}
		}
	}
}

// reminders are the reminder messages the executor got.
func (s *fakeSender) reminders() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sent
	for _, m := range s.sends {
		if strings.Contains(m.text, "Напоминание") {
			out = append(out, m)
		}
	}
	return out
}

// t0 is tomorrow 08:00 UTC: ahead of the store's own (wall) clock, which
// decides which plans the reconciler still looks at.
var t0 = time.Now().UTC().Truncate(24 * time.Hour).Add(32 * time.Hour)

// mskText is a job time as a Russian reminder writes it.
func mskText(at time.Time) string {
	msk, _ := time.LoadLocation("Europe/Moscow")
	return at.In(msk).Format("02.01.2006 в 15:04")
}

// A take two days ahead: a reminder a day before and an hour before, each
// once however often its job runs or the plan is made again; each with
// Confirm and Release; nothing before its time.
func TestRemindersOncePerOffset(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		jobAt := t0.Add(48 * time.Hour)
		e, o, clock, tg := remindEnv(t, kind, t0, jobAt)
		ctx := context.Background()
		for range 2 {
			if err := e.f.planReminders(ctx, o.ID); err != nil {
				t.Fatal(err)
			}
		}
		jobs := e.remindJobs(t)
		if len(jobs) != 3 {
			t.Fatalf("%d step jobs, want 2 reminders and the check: %+v", len(jobs), jobs)
		}
		e.runDue(t, clock)
		if n := len(tg.reminders()); n != 0 {
			t.Fatalf("%d reminders two days ahead", n)
		}
		clock.Set(jobAt.Add(-24 * time.Hour))
		e.runDue(t, clock)
		got := tg.reminders()
		if len(got) != 1 || got[0].chatID != execMapped || !strings.Contains(got[0].text, mskText(jobAt)) {
			t.Fatalf("a day before: %+v", got)
		}
		if want := []string{"m:c" + o.ID, "m:r" + o.ID}; !slices.Equal(data(got[0].rows), want) {
			t.Errorf("reminder buttons %v, want %v", data(got[0].rows), want)
		}
		clock.Set(jobAt.Add(-time.Hour))
		e.runDue(t, clock)
		clock.Set(jobAt.Add(-10 * time.Minute))
		e.runDue(t, clock)
		if n := len(tg.reminders()); n != 2 {
			t.Errorf("%d reminders, want one per offset", n)
		}
	})
}

// A take less than a day ahead skips the day-before reminder; an hour
// ahead minus a bit, both; nothing planned means no check either.
func TestRemindersOnlyAheadOfTheTake(t *testing.T) {
	for _, c := range []struct {
		ahead time.Duration
		want  string
	}{
		{48 * time.Hour, "remind 24h0m0s, remind 1h0m0s, check 30m0s"},
		{5 * time.Hour, "remind 1h0m0s, check 30m0s"},
		{50 * time.Minute, ""},
	} {
		var got []string
		for _, st := range dispatch.PlanSteps(t0.Add(c.ahead), t0, dispatch.DefaultReminderOffsets) {
			got = append(got, st.Kind+" "+st.Offset.String())
		}
		if strings.Join(got, ", ") != c.want {
			t.Errorf("take %v ahead: steps %v, want %v", c.ahead, got, c.want)
		}
	}
}

// The job time moved in amoCRM (update_lead on the taken deal): the old
// reminders are not sent, the new ones are; the move costs no read beyond
// the webhook's own.
func TestRemindersFollowTheJobTime(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		first := t0.Add(48 * time.Hour)
		e, o, clock, tg := remindEnv(t, kind, t0, first)
		ctx := context.Background()
		if err := e.f.planReminders(ctx, o.ID); err != nil {
			t.Fatal(err)
		}
		moved := first.Add(30 * time.Hour)
		e.setJobTime(t, moved)
		if err := e.f.dispatchLead(ctx, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "webhook", Refresh: true}); err != nil {
			t.Fatal(err)
		}
		if n := len(e.remindJobs(t)); n != 6 {
			t.Fatalf("%d step jobs, want 3 old and 3 new", n)
		}
		p, err := e.db.LivePlan(ctx, o.ID)
		if err != nil || !p.JobAt.Equal(moved) {
			t.Fatalf("live plan at %v (%v), want %v", p.JobAt, err, moved)
		}
		for _, at := range []time.Time{first.Add(-24 * time.Hour), first.Add(-time.Hour), first.Add(-20 * time.Minute)} {
			clock.Set(at)
			e.runDue(t, clock)
		}
		if n := len(tg.reminders()); n != 0 {
			t.Fatalf("%d reminders for the old time", n)
		}
		if n := len(e.amo.Tasks(e.accountID, e.leadID)); n != 0 {
			t.Fatalf("%d tasks for the old time", n)
		}
		clock.Set(moved.Add(-24 * time.Hour))
		e.runDue(t, clock)
		clock.Set(moved.Add(-time.Hour))
		e.runDue(t, clock)
		got := tg.reminders()
		if len(got) != 2 || !strings.Contains(got[0].text, mskText(moved)) {
			t.Fatalf("reminders for the new time: %d %+v", len(got), got)
		}
		// Cleared: the plan is cancelled, its check does nothing.
		e.setJobTime(t, time.Time{})
		if err := e.f.dispatchLead(ctx, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "webhook", Refresh: true}); err != nil {
			t.Fatal(err)
		}
		clock.Set(moved.Add(-20 * time.Minute))
		e.runDue(t, clock)
		if n := len(e.amo.Tasks(e.accountID, e.leadID)); n != 0 {
			t.Fatalf("%d tasks after the job time was cleared", n)
		}
	})
}

// Done, a release (from the reminder itself, as the card's) or the deal
// closing: no further reminder and no task.
func TestRemindersStopOnReleaseDoneOrClose(t *testing.T) {
	for _, how := range []string{"done", "release", "won"} {
		t.Run(how, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
				jobAt := t0.Add(48 * time.Hour)
				e, o, clock, tg := remindEnv(t, kind, t0, jobAt)
				ctx := context.Background()
				if err := e.f.planReminders(ctx, o.ID); err != nil {
					t.Fatal(err)
				}
				clock.Set(jobAt.Add(-24 * time.Hour))
				e.runDue(t, clock)
				rem := tg.reminders()
				if len(rem) != 1 {
					t.Fatalf("%d reminders a day before", len(rem))
				}
				switch how {
				case "done":
					if res, err := e.f.StatusPress(ctx, "d"+o.ID, user(execMapped)); err != nil || res.Outcome != StatusSaved {
						t.Fatalf("done: %v %v", res.Outcome, err)
					}
				case "release":
					if res, err := e.f.ReminderPress(ctx, "r"+o.ID, rem[0].messageID, user(execMapped)); err != nil || res.Outcome != ReleaseAsk {
						t.Fatalf("release asked: %v %v", res.Outcome, err)
					}
					if err := e.f.editReminder(ctx, EditReminderArgs{OrderID: o.ID, MessageID: rem[0].messageID, Ask: true}); err != nil {
						t.Fatal(err)
					}
					ask := tg.last(true)
					if want := []string{"m:R" + o.ID, "m:x" + o.ID}; ask.messageID != rem[0].messageID || !slices.Equal(data(ask.rows), want) {
						t.Fatalf("release question on message %d: %v, want %v", ask.messageID, data(ask.rows), want)
					}
					if res, err := e.f.ReminderPress(ctx, "R"+o.ID, rem[0].messageID, user(execMapped)); err != nil || res.Outcome != Released {
						t.Fatalf("release: %v %v", res.Outcome, err)
					}
					if n := e.jobs(t, ReleaseLeadArgs{}.Kind()); n != 1 {
						t.Errorf("%d release write-backs, want 1 (as the card's release)", n)
					}
				case "won":
					if _, err := e.amo.UpdateLead(e.accountID, e.leadID, func(l *fakeamocrm.Lead) { l.StatusID = dispatch.StageWon }); err != nil {
						t.Fatal(err)
					}
					if err := e.f.dispatchLead(ctx, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "webhook"}); err != nil {
						t.Fatal(err)
					}
				}
				for _, at := range []time.Time{jobAt.Add(-time.Hour), jobAt.Add(-20 * time.Minute)} {
					clock.Set(at)
					e.runDue(t, clock)
				}
				if n := len(tg.reminders()); n != 1 {
					t.Errorf("%d reminders, want none after the %s", n-1, how)
				}
				if n := len(e.amo.Tasks(e.accountID, e.leadID)); n != 0 {
					t.Errorf("%d tasks after the %s", n, how)
				}
			})
		})
	}
}

// No confirmation 30 minutes before the job time: one task for the deal's
// responsible user and one note, also when the step's record was lost and
// it runs again; a confirmation instead: no task.
func TestMissingConfirmationMakesOneTask(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		jobAt := t0.Add(48 * time.Hour)
		e, o, clock, _ := remindEnv(t, kind, t0, jobAt)
		ctx := context.Background()
		if err := e.f.planReminders(ctx, o.ID); err != nil {
			t.Fatal(err)
		}
		for _, at := range []time.Time{jobAt.Add(-24 * time.Hour), jobAt.Add(-time.Hour), jobAt.Add(-30 * time.Minute)} {
			clock.Set(at)
			e.runDue(t, clock)
		}
		// The record of the done check lost: the job runs a third time.
		if _, err := e.db.SQL().Exec(`UPDATE reminder_steps SET done_at = NULL WHERE kind = 'check'`); err != nil {
			t.Fatal(err)
		}
		e.runDue(t, clock)
		tasks := e.amo.Tasks(e.accountID, e.leadID)
		lead, _ := e.amo.Lead(e.accountID, e.leadID)
		if len(tasks) != 1 || tasks[0].ResponsibleUserID != lead.ResponsibleUserID || !tasks[0].CompleteTill.Equal(jobAt) ||
			!strings.Contains(tasks[0].Text, "не подтвердил") {
			t.Fatalf("tasks %+v, want one for user %d due at the job time", tasks, lead.ResponsibleUserID)
		}
		notes := 0
		for _, n := range e.amo.Notes(e.accountID, e.leadID) {
			if strings.Contains(n.Text(), "не подтвердил") {
				notes++
			}
		}
		if notes != 1 {
			t.Errorf("%d notes, want 1", notes)
		}
	})
}

// A confirmation is recorded once, answered, shown in the reminder and
// noted in the deal; the check then makes no task. A stranger's press
// changes nothing.
func TestConfirmFromAReminder(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		jobAt := t0.Add(48 * time.Hour)
		e, o, clock, tg := remindEnv(t, kind, t0, jobAt)
		ctx := context.Background()
		if err := e.f.planReminders(ctx, o.ID); err != nil {
			t.Fatal(err)
		}
		clock.Set(jobAt.Add(-24 * time.Hour))
		e.runDue(t, clock)
		msg := tg.reminders()[0].messageID
		if res, err := e.f.ReminderPress(ctx, "c"+o.ID, msg, user(execMapped+1)); err != nil || res.Outcome != NotYours {
			t.Fatalf("a stranger's confirmation: %v %v", res.Outcome, err)
		}
		for i, want := range []Outcome{Confirmed, ConfirmedAlready} {
			if res, err := e.f.ReminderPress(ctx, "c"+o.ID, msg, user(execMapped)); err != nil || res.Outcome != want {
				t.Fatalf("confirmation %d: %v %v, want %v", i, res.Outcome, err, want)
			}
		}
		if err := e.f.editReminder(ctx, EditReminderArgs{OrderID: o.ID, MessageID: msg}); err != nil {
			t.Fatal(err)
		}
		if ed := tg.last(true); !strings.Contains(ed.text, "Вы подтвердили") || !slices.Equal(data(ed.rows), []string{"m:r" + o.ID}) {
			t.Errorf("reminder after the confirmation: %q %v", ed.text, data(ed.rows))
		}
		if err := e.f.writeEvent(ctx, eventID(t, e, o.ID, dispatch.EventConfirmed)); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range e.amo.Notes(e.accountID, e.leadID) {
			found = found || strings.Contains(n.Text(), "подтвердил заказ")
		}
		if !found {
			t.Error("no note of the confirmation")
		}
		for _, at := range []time.Time{jobAt.Add(-time.Hour), jobAt.Add(-30 * time.Minute)} {
			clock.Set(at)
			e.runDue(t, clock)
		}
		if n := len(e.amo.Tasks(e.accountID, e.leadID)); n != 0 {
			t.Errorf("%d tasks after a confirmation", n)
		}
		if n := len(tg.reminders()); n != 2 {
			t.Errorf("%d reminders, want 2 (the hour-before one still goes out)", n)
		}
	})
}

// The job time read from the deal: a date_time is the moment, a date the
// day at 09:00 in the account's zone, whichever midnight amoCRM stored.
func TestJobTime(t *testing.T) {
	msk, _ := time.LoadLocation("Europe/Moscow")
	ny, _ := time.LoadLocation("America/New_York")
	day := func(loc *time.Location) float64 { return float64(time.Date(2026, 12, 3, 0, 0, 0, 0, loc).Unix()) }
	lead := func(typ string, v any) amocrm.Lead {
		return amocrm.Lead{CustomFieldsValues: []amocrm.CustomFieldValue{{FieldID: 7, FieldType: typ, Values: []amocrm.CustomFieldItem{{Value: v}}}}}
	}
	for _, c := range []struct {
		name     string
		lead     amocrm.Lead
		loc      *time.Location
		want     time.Time
		dateOnly bool
		ok       bool
	}{
		{"date_time", lead("date_time", float64(t0.Unix())), msk, t0, false, true},
		{"date_time as a string", lead("date_time", t0.In(msk).Format(time.RFC3339)), msk, t0, false, true},
		{"date, local midnight", lead("date", day(msk)), msk, time.Date(2026, 12, 3, 9, 0, 0, 0, msk), true, true},
		{"date, UTC midnight", lead("date", day(time.UTC)), msk, time.Date(2026, 12, 3, 9, 0, 0, 0, msk), true, true},
		{"date, UTC midnight west", lead("date", day(time.UTC)), ny, time.Date(2026, 12, 3, 9, 0, 0, 0, ny), true, true},
		{"empty", amocrm.Lead{}, msk, time.Time{}, false, false},
		{"garbage", lead("date_time", "soon"), msk, time.Time{}, false, false},
	} {
		at, dateOnly, ok := jobTime(c.lead, 7, c.loc)
		if ok != c.ok || dateOnly != c.dateOnly || !at.Equal(c.want) {
			t.Errorf("%s: %v %v %v, want %v %v %v", c.name, at, dateOnly, ok, c.want, c.dateOnly, c.ok)
		}
	}
}

// A moved job time whose webhook amoCRM lost is caught by the reconciler's
// pass: one paged read of the deals with live plans, the plan moves.
func TestReconcilerMovesLostJobTimes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		first := t0.Add(48 * time.Hour)
		e, o, _, _ := remindEnv(t, kind, t0, first)
		ctx := context.Background()
		if err := e.f.planReminders(ctx, o.ID); err != nil {
			t.Fatal(err)
		}
		moved := first.Add(3 * time.Hour)
		e.setJobTime(t, moved) // no webhook reaches the backend
		e.amo.ResetRequests()
		if err := e.f.reconcileAccount(ctx, ReconcileAccountArgs{AccountID: e.accountID}); err != nil {
			t.Fatal(err)
		}
		p, err := e.db.LivePlan(ctx, o.ID)
		if err != nil || !p.JobAt.Equal(moved) {
			t.Fatalf("live plan at %v (%v), want %v", p.JobAt, err, moved)
		}
		// The search stages' list and one read of the deals with plans.
		if n := len(e.amo.Requests(fakeamocrm.RequestFilter{})); n != 2 {
			t.Errorf("%d amoCRM requests, want 2", n)
		}
	})
}
