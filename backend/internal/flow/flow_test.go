package flow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// crmFunc is a CRM made of a function.
type crmFunc func(ctx context.Context, accountID int64) (*amocrm.API, error)

func (f crmFunc) API(ctx context.Context, accountID int64) (*amocrm.API, error) {
	return f(ctx, accountID)
}

type staticToken string

func (t staticToken) AccessToken(context.Context) (string, error) { return string(t), nil }
func (staticToken) Refresh(context.Context, string) (string, error) {
	return "", errors.New("no token refresh in flow tests")
}

// env is one account with a search pipeline, a linked chat and a deal, on a
// fresh database; no job runs unless a test calls its work function.
type env struct {
	db                  *store.DB
	f                   *Flow
	amo                 *fakeamocrm.Server
	accountID, chatID   int64
	pipelineID, trigger int64
	found, leadID       int64
	amoUser             int64
	stages, users       []int64 // the main pipeline's stages, the account's users
	jobField, dateField int64   // the deal's date_time and date fields
}

const execMapped = 5001 // a Telegram user mapped to the account's amoCRM user

func newEnv(t *testing.T, kind dbtest.Kind) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{db: dbtest.Open(t, kind, nil), chatID: -1001}
	if err := Migrate(ctx, e.db); err != nil {
		t.Fatal(err)
	}
	e.amo = fakeamocrm.New(fakeamocrm.Options{DisableRateLimit: true})
	t.Cleanup(e.amo.Close)
	acc := e.amo.AddAccount(fakeamocrm.AccountSpec{Subdomain: "flowtest",
		Users:      []fakeamocrm.User{{ID: 71001, Name: "Admin", IsAdmin: true}, {ID: 71002, Name: "Manager"}},
		LeadFields: []fakeamocrm.CustomField{{Name: "Время работ", Type: "date_time"}, {Name: "Дата работ", Type: "date"}}})
	for _, fd := range acc.LeadFields() {
		switch fd.Type {
		case "date_time":
			e.jobField = fd.ID
		case "date":
			e.dateField = fd.ID
		}
	}
	e.accountID, e.amoUser = acc.ID, acc.Users()[0].ID
	p := acc.MainPipeline()
	for _, st := range p.Statuses {
		e.stages = append(e.stages, st.ID)
	}
	for _, u := range acc.Users() {
		e.users = append(e.users, u.ID)
	}
	e.pipelineID, e.trigger, e.found = p.ID, p.Statuses[1].ID, p.Statuses[2].ID
	lead, err := e.amo.AddLead(acc.ID, fakeamocrm.Lead{Name: "Deal", PipelineID: p.ID, StatusID: e.trigger})
	if err != nil {
		t.Fatal(err)
	}
	e.leadID = lead.ID
	token := e.amo.IssueTokens(acc.ID).AccessToken
	client := amocrm.New(amocrm.Options{BaseURL: e.amo.URL(), RatePerSecond: -1, MaxAttempts: 1})
	crm := crmFunc(func(context.Context, int64) (*amocrm.API, error) {
		return client.Account(acc.Domain, acc.ID, staticToken(token)), nil
	})

	if _, _, err := e.db.SaveInstallation(ctx, store.Installation{ID: acc.ID, Subdomain: acc.Subdomain, Domain: acc.Domain,
		Name: "Flow test", Language: "ru", Tokens: dispatch.Tokens{Access: dispatch.Secret(token), Refresh: "r", ExpiresAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.LinkChat(ctx, dispatch.Chat{ID: e.chatID, AccountID: acc.ID, Title: "Group", Type: "supergroup"}); err != nil {
		t.Fatal(err)
	}
	if err := e.db.SaveSettings(ctx, dispatch.Settings{AccountID: acc.ID, ExecutorUsers: map[int64]int64{execMapped: e.amoUser},
		Rules: []dispatch.Rule{{PipelineID: p.ID, TriggerStageIDs: []int64{e.trigger}, FoundStageID: e.found, DefaultChatID: e.chatID}}}); err != nil {
		t.Fatal(err)
	}
	e.f, err = New(ctx, Options{DB: e.db, CRM: crm})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// openOrder creates the deal's order as posted in the group as messageID.
func (e *env) openOrder(t *testing.T, messageID int) dispatch.Order {
	t.Helper()
	ctx := context.Background()
	var o dispatch.Order
	err := e.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		o, err = tx.CreateOrder(dispatch.Order{AccountID: e.accountID, LeadID: e.leadID, PipelineID: e.pipelineID, StageID: e.trigger,
			ChatID: e.chatID, Status: dispatch.OrderPosting, GroupText: "order"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if messageID != 0 {
		if ok, err := e.db.MarkPosted(ctx, o.ID, messageID, "order"); err != nil || !ok {
			t.Fatalf("mark posted: %v %v", ok, err)
		}
	}
	return o
}

func (e *env) jobs(t *testing.T, kind string) int {
	t.Helper()
	var n int
	if err := e.db.SQL().QueryRow(`SELECT COUNT(*) FROM river_job WHERE kind = '` + kind + `'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func user(id int64) dispatch.Executor {
	return dispatch.Executor{TelegramID: id, FirstName: fmt.Sprint("User", id)}
}

// The take race without HTTP or Telegram: of many simultaneous presses one
// wins, every other presser is told it is taken, and the follow-up jobs are
// queued once.
func TestTakeRace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		ctx := context.Background()
		o := e.openOrder(t, 100)
		const presses = 12
		results := make([]PressResult, presses)
		var wg sync.WaitGroup
		for i := range presses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.f.Take(ctx, e.chatID, 100, o.ID, user(int64(7000+i)))
				if err != nil {
					t.Errorf("press %d: %v", i, err)
				}
				results[i] = res
			}()
		}
		wg.Wait()
		winner := -1
		for i, r := range results {
			switch r.Outcome {
			case WonOpenBot:
				if winner >= 0 {
					t.Fatalf("presses %d and %d both won", winner, i)
				}
				if r.StartToken == "" {
					t.Errorf("the winner has not started the bot but got no start link")
				}
				winner = i
			case AlreadyTaken:
			default:
				t.Errorf("press %d: outcome %v", i, r.Outcome)
			}
		}
		if winner < 0 {
			t.Fatal("nobody won")
		}
		got, err := e.db.OrderByID(ctx, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != dispatch.OrderTaken || got.ExecutorID != int64(7000+winner) {
			t.Errorf("order %s by %d, want taken by %d", got.Status, got.ExecutorID, 7000+winner)
		}
		for _, kind := range []string{EditTakenArgs{}.Kind(), UpdateLeadArgs{}.Kind(), AddNoteArgs{}.Kind(), PlanRemindersArgs{}.Kind()} {
			if n := e.jobs(t, kind); n != 1 {
				t.Errorf("%d %s jobs, want 1", n, kind)
			}
		}
		again, err := e.f.Take(ctx, e.chatID, 100, o.ID, user(int64(7000+winner)))
		if err != nil || again.Outcome != AlreadyYours {
			t.Errorf("the winner pressing again: %v %v, want AlreadyYours", again.Outcome, err)
		}
	})
}

// Press outcomes decided by the order alone, one row each.
func TestPressOutcomes(t *testing.T) {
	e := newEnv(t, dbtest.SQLite)
	ctx := context.Background()
	open := e.openOrder(t, 200)
	tests := []struct {
		name  string
		press func() (PressResult, error)
		want  Outcome
	}{
		{"take, unknown order", func() (PressResult, error) { return e.f.Take(ctx, e.chatID, 200, "nope", user(1)) }, Closed},
		{"take, order of another chat", func() (PressResult, error) { return e.f.Take(ctx, -999, 200, open.ID, user(1)) }, Closed},
		{"phone, unknown order", func() (PressResult, error) { return e.f.RequestContact(ctx, e.chatID, 200, "nope", user(1)) }, Closed},
		{"phone, open order, bot never opened", func() (PressResult, error) { return e.f.RequestContact(ctx, e.chatID, 200, open.ID, user(1)) }, ContactOpenBot},
		{"take, open order", func() (PressResult, error) { return e.f.Take(ctx, e.chatID, 200, open.ID, user(2)) }, WonOpenBot},
		{"phone, taken by another", func() (PressResult, error) { return e.f.RequestContact(ctx, e.chatID, 200, open.ID, user(1)) }, AlreadyTaken},
		{"phone, taken by the presser", func() (PressResult, error) { return e.f.RequestContact(ctx, e.chatID, 200, open.ID, user(2)) }, ContactOpenBot},
	}
	for _, tc := range tests {
		res, err := tc.press()
		if err != nil || res.Outcome != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.name, res.Outcome, err, tc.want)
		}
	}
	// Withdrawn: no press may take it or get its contact.
	if err := e.f.Withdraw(ctx, e.accountID, e.leadID); err != nil {
		t.Fatal(err)
	}
	second := e.openOrder(t, 300)
	if err := e.f.Withdraw(ctx, e.accountID, e.leadID); err != nil {
		t.Fatal(err)
	}
	for _, press := range []func() (PressResult, error){
		func() (PressResult, error) { return e.f.Take(ctx, e.chatID, 300, second.ID, user(3)) },
		func() (PressResult, error) { return e.f.RequestContact(ctx, e.chatID, 300, second.ID, user(3)) },
	} {
		if res, err := press(); err != nil || res.Outcome != Closed {
			t.Errorf("press on a withdrawn order: %v %v, want Closed", res.Outcome, err)
		}
	}
}

// A press on a post whose sender died before recording it proves the post:
// it takes the order and records the message, so the post is not sent again.
func TestTakeRecordsAnUnrecordedPost(t *testing.T) {
	e := newEnv(t, dbtest.SQLite)
	ctx := context.Background()
	o := e.openOrder(t, 0)
	if res, err := e.f.Take(ctx, e.chatID, 0, o.ID, user(1)); err != nil || res.Outcome != Closed {
		t.Fatalf("a press without a message on a posting order: %v %v, want Closed", res.Outcome, err)
	}
	if res, err := e.f.Take(ctx, e.chatID, 400, o.ID, user(1)); err != nil || res.Outcome != WonOpenBot {
		t.Fatalf("a press on the unrecorded post: %v %v, want WonOpenBot", res.Outcome, err)
	}
	got, _ := e.db.OrderByID(ctx, o.ID)
	if got.MessageID != 400 || got.AwaitsPost() {
		t.Errorf("message %d, awaits post %v; want 400 recorded", got.MessageID, got.AwaitsPost())
	}
}

// Write-back twice (a retried job, a lost answer) changes the deal once and
// adds one note.
func TestWriteBackIsIdempotent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		ctx := context.Background()
		o := e.openOrder(t, 100)
		if res, err := e.f.Take(ctx, e.chatID, 100, o.ID, user(execMapped)); err != nil || res.Outcome != WonOpenBot {
			t.Fatalf("take: %v %v", res.Outcome, err)
		}
		for range 2 {
			if err := e.f.updateLead(ctx, o.ID); err != nil {
				t.Fatal(err)
			}
			if err := e.f.addNote(ctx, o.ID); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(e.amo.LeadUpdates(e.accountID)); n != 1 {
			t.Errorf("%d PATCHes of the deal, want 1", n)
		}
		lead, _ := e.amo.Lead(e.accountID, e.leadID)
		if lead.StatusID != e.found || lead.ResponsibleUserID != e.amoUser {
			t.Errorf("deal in stage %d for user %d, want stage %d for user %d", lead.StatusID, lead.ResponsibleUserID, e.found, e.amoUser)
		}
		notes := e.amo.Notes(e.accountID, e.leadID)
		if len(notes) != 1 || !strings.Contains(notes[0].Text(), o.ID) {
			t.Errorf("notes %v, want one naming the order", notes)
		}
		// The deal left the search stage: the round is over.
		if _, err := e.db.ActiveOrder(ctx, e.accountID, e.leadID); !errors.Is(err, dispatch.ErrNotFound) {
			t.Errorf("the order is still current after the stage move: %v", err)
		}
	})
}

// A reconciler pass lists only deals changed in the last three intervals,
// except the pass that crosses a half-hour boundary, which lists them all.
func TestReconcileSince(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct {
		now  string
		want int64
	}{
		{"2026-11-30T10:15:20Z", at("2026-11-30T10:12:20Z").Unix()},
		{"2026-11-30T10:30:20Z", 0}, // 10:29:20 → 10:30:20 crosses the half hour
		{"2026-11-30T10:31:20Z", at("2026-11-30T10:28:20Z").Unix()},
	} {
		if got := reconcileSince(at(c.now), time.Minute); got != c.want {
			t.Errorf("pass at %s: since %d, want %d", c.now, got, c.want)
		}
	}
}

// A flow on a controllable clock runs a job scheduled for later only when
// that clock reaches its time: timers can be tested without waiting.
func TestStubbedClockRunsScheduledJobs(t *testing.T) {
	for _, kind := range dbtest.Kinds(t) {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, kind)
			var mu sync.Mutex
			now := time.Now()
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			f, err := New(ctx, Options{DB: e.db, CRM: e.f.o.CRM, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			res, err := f.river.Insert(ctx, ReconcileArgs{}, &river.InsertOpts{ScheduledAt: clock().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Stop(context.Background()) })
			state := func() string {
				var s string
				if err := e.db.SQL().QueryRow(`SELECT state FROM river_job WHERE id = ` + fmt.Sprint(res.Job.ID)).Scan(&s); err != nil {
					t.Fatal(err)
				}
				return s
			}
			time.Sleep(6 * time.Second) // longer than River's scheduler interval (5 s)
			if s := state(); s != "scheduled" {
				t.Fatalf("a job due in an hour ran early: %s", s)
			}
			mu.Lock()
			now = now.Add(time.Hour + time.Second)
			mu.Unlock()
			deadline := time.Now().Add(20 * time.Second)
			for state() != "completed" {
				if time.Now().After(deadline) {
					t.Fatalf("the job did not run when the clock reached its time: %s", state())
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// The post job queued by a webhook (which carries its time for the latency
// metric) and the reconciler's job for the same order are one job: two
// would post the order twice.
func TestOnePostJobPerOrder(t *testing.T) {
	for _, kind := range dbtest.Kinds(t) {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, kind)
			o := e.openOrder(t, 0)
			for _, at := range []time.Time{time.Now(), {}} {
				if err := e.db.InTx(ctx, func(tx *store.Tx) error {
					return e.f.enqueue(ctx, tx, PostOrderArgs{AccountID: o.AccountID, OrderID: o.ID, WebhookAt: at})
				}); err != nil {
					t.Fatal(err)
				}
			}
			if n := e.jobs(t, PostOrderArgs{}.Kind()); n != 1 {
				t.Fatalf("%d post jobs for one order", n)
			}
		})
	}
}
