package flow

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// statusEnv is env with the pipeline's last two stages mapped to "on the
// way" and "done", and an order taken by execMapped and written back.
func statusEnv(t *testing.T, kind dbtest.Kind) (*env, dispatch.Order, int64, int64) {
	t.Helper()
	e := newEnv(t, kind)
	ctx := context.Background()
	onWay, done := e.stages[3], e.stages[4]
	if err := e.db.SaveSettings(ctx, dispatch.Settings{AccountID: e.accountID, ExecutorUsers: map[int64]int64{execMapped: e.amoUser},
		Rules: []dispatch.Rule{{PipelineID: e.pipelineID, TriggerStageIDs: []int64{e.trigger}, FoundStageID: e.found, DefaultChatID: e.chatID,
			StatusStages: map[dispatch.OrderStatus]int64{dispatch.OrderOnWay: onWay, dispatch.OrderDone: done}}}}); err != nil {
		t.Fatal(err)
	}
	// Before the take the deal belongs to another user, whom a release
	// gives it back to.
	if _, err := e.amo.UpdateLead(e.accountID, e.leadID, func(l *fakeamocrm.Lead) { l.ResponsibleUserID = e.users[len(e.users)-1] }); err != nil {
		t.Fatal(err)
	}
	o := e.openOrder(t, 100)
	if res, err := e.f.Take(ctx, e.chatID, 100, o.ID, user(execMapped)); err != nil || res.Outcome != WonOpenBot {
		t.Fatalf("take: %v %v", res.Outcome, err)
	}
	if err := e.f.updateLead(ctx, o.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.f.addNote(ctx, o.ID); err != nil {
		t.Fatal(err)
	}
	e.amo.ResetRequests()
	return e, o, onWay, done
}

// eventID returns the id of an order's timeline step.
func eventID(t *testing.T, e *env, orderID, kind string) string {
	t.Helper()
	evs, err := e.db.LeadEvents(context.Background(), e.accountID, e.leadID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.OrderID == orderID && ev.Kind == kind {
			return ev.ID
		}
	}
	t.Fatalf("no %s event of order %s in %v", kind, orderID, evs)
	return ""
}

// A status pressed many times, at once and again later, with its job run
// twice (a retry after a crash): one change, one PATCH, one note.
func TestStatusPressWritesOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, o, onWay, _ := statusEnv(t, kind)
		ctx := context.Background()
		const presses = 10
		saved := 0
		var (
			mu sync.Mutex
			wg sync.WaitGroup
		)
		for range presses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.f.StatusPress(ctx, string(codeOnWay)+o.ID, user(execMapped))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				switch res.Outcome {
				case StatusSaved:
					saved++
				case StatusAlready:
				default:
					t.Errorf("press outcome %v", res.Outcome)
				}
			}()
		}
		wg.Wait()
		if saved != 1 {
			t.Fatalf("%d presses saved the status, want 1", saved)
		}
		if res, _ := e.f.StatusPress(ctx, string(codeOnWay)+o.ID, user(execMapped)); res.Outcome != StatusAlready {
			t.Errorf("a later press: %v, want StatusAlready", res.Outcome)
		}
		if n := e.jobs(t, "amo_event_write"); n != 1 {
			t.Errorf("%d write jobs, want 1", n)
		}
		id := eventID(t, e, o.ID, string(dispatch.OrderOnWay))
		for range 2 {
			if err := e.f.writeEvent(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		// A crash after amoCRM took both writes but before they were
		// recorded: the job runs again and finds them.
		if _, err := e.db.SQL().Exec(`UPDATE order_events SET noted_at = NULL, lead_updated_at = NULL`); err != nil {
			t.Fatal(err)
		}
		if err := e.f.writeEvent(ctx, id); err != nil {
			t.Fatal(err)
		}
		// LeadUpdates counts the take's PATCH too.
		if n := len(e.amo.LeadUpdates(e.accountID)) - 1; n != 1 {
			t.Errorf("%d PATCHes for the status, want 1", n)
		}
		lead, _ := e.amo.Lead(e.accountID, e.leadID)
		if lead.StatusID != onWay {
			t.Errorf("deal in stage %d, want the on-the-way stage %d", lead.StatusID, onWay)
		}
		var statusNotes []string
		for _, n := range e.amo.Notes(e.accountID, e.leadID) {
			if strings.Contains(n.Text(), "в пути") {
				statusNotes = append(statusNotes, n.Text())
			}
		}
		if len(statusNotes) != 1 || !strings.HasPrefix(statusNotes[0], "User5001: в пути, ") {
			t.Errorf("status notes %q, want one \"User5001: в пути, HH:MM\"", statusNotes)
		}
		// Started has no stage: a note, no PATCH; done moves the deal and
		// closes the card (no buttons follow).
		for _, code := range []byte{codeStarted, codeDone} {
			if res, err := e.f.StatusPress(ctx, string(code)+o.ID, user(execMapped)); err != nil || res.Outcome != StatusSaved {
				t.Fatalf("press %c: %v %v", code, res.Outcome, err)
			}
		}
		for _, st := range []dispatch.OrderStatus{dispatch.OrderStarted, dispatch.OrderDone} {
			if err := e.f.writeEvent(ctx, eventID(t, e, o.ID, string(st))); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(e.amo.LeadUpdates(e.accountID)) - 1; n != 2 {
			t.Errorf("%d PATCHes after on the way, started and done, want 2", n)
		}
		got, _ := e.db.OrderByID(ctx, o.ID)
		if got.Status != dispatch.OrderDone || statusButtons("ru", got, dispatch.Rule{}) != nil {
			t.Errorf("order %s, buttons %v; want done without buttons", got.Status, statusButtons("ru", got, dispatch.Rule{}))
		}
		if res, _ := e.f.StatusPress(ctx, string(codeOnWay)+o.ID, user(execMapped)); res.Outcome != StatusAlready {
			t.Errorf("on the way after done: %v, want StatusAlready", res.Outcome)
		}
	})
}

// Only the order's executor can press its card: anyone else (a forwarded
// card, forged data) gets an answer and nothing changes.
func TestStatusPressByAnotherChangesNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, o, _, _ := statusEnv(t, kind)
		ctx := context.Background()
		for _, code := range []byte{codeOnWay, codeDone, codeRelease, codeReleaseYes} {
			res, err := e.f.StatusPress(ctx, string(code)+o.ID, user(777))
			if err != nil || res.Outcome != NotYours {
				t.Errorf("press %c by a stranger: %v %v, want NotYours", code, res.Outcome, err)
			}
		}
		got, _ := e.db.OrderByID(ctx, o.ID)
		if got.Status != dispatch.OrderTaken {
			t.Errorf("order %s, want still taken", got.Status)
		}
		for _, kind := range []string{"amo_event_write", "amo_release_lead", "edit_card"} {
			if n := e.jobs(t, kind); n != 0 {
				t.Errorf("%d %s jobs after a stranger's presses, want 0", n, kind)
			}
		}
	})
}

// Fifty confirmations of a release: one release, the deal back in its search
// stage with the responsible user it had before the take, one note, and one
// new order posted, however often the release job runs.
func TestReleaseRepostsOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, o, _, _ := statusEnv(t, kind)
		ctx := context.Background()
		before := e.users[len(e.users)-1]
		if got, _ := e.db.OrderByID(ctx, o.ID); got.PrevResponsibleID != before {
			t.Fatalf("responsible user before the take kept as %d, want %d", got.PrevResponsibleID, before)
		}
		const presses = 50
		var (
			mu       sync.Mutex
			wg       sync.WaitGroup
			released int
		)
		for range presses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.f.StatusPress(ctx, string(codeReleaseYes)+o.ID, user(execMapped))
				if err != nil {
					t.Error(err)
					return
				}
				if res.Outcome == Released {
					mu.Lock()
					released++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if released != 1 {
			t.Fatalf("%d confirmations released the order, want 1", released)
		}
		if n := e.jobs(t, "amo_release_lead"); n != 1 {
			t.Fatalf("%d release jobs, want 1", n)
		}
		if n := e.jobs(t, "edit_released"); n != 1 {
			t.Errorf("%d group edits, want 1", n)
		}
		id := eventID(t, e, o.ID, string(dispatch.OrderReleased))
		// A crash between the release and the re-post: the job's first run
		// dies after the deal is back in the search (its note fails), and
		// the retries post once.
		e.amo.InjectFault(fakeamocrm.Fault{Pattern: "POST /api/v4/leads/notes", Times: 1, Status: 500})
		if err := e.f.releaseLead(ctx, ReleaseLeadArgs{EventID: id}); err == nil {
			t.Fatal("the first run did not fail")
		}
		for range 2 {
			if err := e.f.releaseLead(ctx, ReleaseLeadArgs{EventID: id}); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(e.amo.LeadUpdates(e.accountID)) - 1; n != 1 {
			t.Errorf("%d PATCHes for the release, want 1", n)
		}
		lead, _ := e.amo.Lead(e.accountID, e.leadID)
		if lead.StatusID != e.trigger || lead.ResponsibleUserID != before {
			t.Errorf("deal in stage %d for user %d, want the search stage %d for user %d", lead.StatusID, lead.ResponsibleUserID, e.trigger, before)
		}
		notes := 0
		for _, n := range e.amo.Notes(e.accountID, e.leadID) {
			if strings.Contains(n.Text(), "отказался от заказа") {
				notes++
			}
		}
		if notes != 1 {
			t.Errorf("%d release notes, want 1", notes)
		}
		next, err := e.db.ActiveOrder(ctx, e.accountID, e.leadID)
		if err != nil || next.ID == o.ID || next.Status != dispatch.OrderPosting {
			t.Fatalf("new round %+v %v, want a new order being posted", next, err)
		}
		if n := e.jobs(t, "post_order"); n != 1 {
			t.Errorf("%d post jobs, want 1", n)
		}
		if n, _ := e.db.CountOrders(ctx, e.accountID); n != 2 {
			t.Errorf("%d orders, want the released one and one new", n)
		}
		// The webhook of the release's own move changes nothing more.
		if err := e.f.dispatchLead(ctx, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, HintStageID: e.trigger}); err != nil {
			t.Fatal(err)
		}
		if n, _ := e.db.CountOrders(ctx, e.accountID); n != 2 {
			t.Errorf("%d orders after the echo, want 2", n)
		}
	})
}

// The backend's own status move comes back as a webhook: it neither ends nor
// re-posts the order. The manager winning the deal after the take ends it and
// tells the executor once.
func TestDealClosedUnderTheExecutor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, o, onWay, _ := statusEnv(t, kind)
		ctx := context.Background()
		if res, err := e.f.StatusPress(ctx, string(codeOnWay)+o.ID, user(execMapped)); err != nil || res.Outcome != StatusSaved {
			t.Fatalf("on the way: %v %v", res.Outcome, err)
		}
		if err := e.f.writeEvent(ctx, eventID(t, e, o.ID, string(dispatch.OrderOnWay))); err != nil {
			t.Fatal(err)
		}
		echo := DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "webhook", HintStageID: onWay, Refresh: true}
		if err := e.f.dispatchLead(ctx, echo); err != nil {
			t.Fatal(err)
		}
		got, _ := e.db.OrderByID(ctx, o.ID)
		if got.Status != dispatch.OrderOnWay || e.jobs(t, "notify_executor") != 0 || e.jobs(t, "post_order") != 0 {
			t.Fatalf("after the echo: order %s, %d notices, %d posts; want on_way, none, none", got.Status,
				e.jobs(t, "notify_executor"), e.jobs(t, "post_order"))
		}
		if err := e.amo.MoveLead(e.accountID, e.leadID, dispatch.StageWon); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := e.f.dispatchLead(ctx, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "webhook", HintStageID: dispatch.StageWon}); err != nil {
				t.Fatal(err)
			}
		}
		got, _ = e.db.OrderByID(ctx, o.ID)
		if got.Status != dispatch.OrderEnded {
			t.Errorf("order %s after the deal was won, want ended", got.Status)
		}
		if n := e.jobs(t, "notify_executor"); n != 1 {
			t.Errorf("%d notices to the executor, want 1", n)
		}
		if res, _ := e.f.StatusPress(ctx, string(codeDone)+o.ID, user(execMapped)); res.Outcome != Closed {
			t.Errorf("a press after the deal closed: %v, want Closed", res.Outcome)
		}
	})
}

// A deal edited before the take edits its post, once per change of the text.
func TestDealEditedBeforeTheTakeEditsThePost(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		ctx := context.Background()
		if err := e.f.dispatchLead(ctx, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		o, err := e.db.ActiveOrder(ctx, e.accountID, e.leadID)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := e.db.MarkPosted(ctx, o.ID, 100, o.GroupText); err != nil || !ok {
			t.Fatal(ok, err)
		}
		update := DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "webhook", HintStageID: e.trigger, Refresh: true}
		if err := e.f.dispatchLead(ctx, update); err != nil {
			t.Fatal(err)
		}
		if n := e.jobs(t, "edit_open_post"); n != 0 {
			t.Fatalf("%d edits of an unchanged post, want 0", n)
		}
		if _, err := e.amo.UpdateLead(e.accountID, e.leadID, func(l *fakeamocrm.Lead) { l.Name = "Renamed deal" }); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := e.f.dispatchLead(ctx, update); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := e.db.OrderByID(ctx, o.ID)
		if !strings.Contains(got.GroupText, "Renamed deal") {
			t.Errorf("post text %q, want the new name", got.GroupText)
		}
		if n := e.jobs(t, "edit_open_post"); n != 1 {
			t.Errorf("%d post edits, want 1", n)
		}
	})
}

// "Only the executor" gets the contact: the post has the take button alone,
// a group member's contact press is refused, and the take sends the contact.
func TestContactOnlyForTheExecutor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		ctx := context.Background()
		s, _ := e.db.Settings(ctx, e.accountID)
		s.ContactPolicy = dispatch.ContactExecutorOnly
		if err := e.db.SaveSettings(ctx, s); err != nil {
			t.Fatal(err)
		}
		if rows := buttons("ru", "o1", dispatch.ContactExecutorOnly); len(rows) != 1 || rows[0][0].Data != ActionTake+"o1" {
			t.Errorf("post buttons %v, want only Take", rows)
		}
		o := e.openOrder(t, 100)
		if err := e.db.SaveExecutor(ctx, user(1), true); err != nil {
			t.Fatal(err)
		}
		if err := e.db.SaveExecutor(ctx, user(2), true); err != nil {
			t.Fatal(err)
		}
		if res, err := e.f.RequestContact(ctx, e.chatID, 100, o.ID, user(1)); err != nil || res.Outcome != ContactExecutorOnly {
			t.Errorf("contact press before the take: %v %v, want ContactExecutorOnly", res.Outcome, err)
		}
		if n := e.jobs(t, "send_contact"); n != 0 {
			t.Errorf("%d contacts queued before the take, want 0", n)
		}
		if res, err := e.f.Take(ctx, e.chatID, 100, o.ID, user(2)); err != nil || res.Outcome != Won {
			t.Fatalf("take: %v %v", res.Outcome, err)
		}
		if n := e.jobs(t, "send_contact"); n != 1 {
			t.Errorf("%d contacts queued with the take, want 1", n)
		}
	})
}

// sent is one message the fake sender sent or edited.
type sent struct {
	chatID    int64
	messageID int
	text      string
	rows      [][]telegram.Button
}

// fakeSender records sends and edits; message ids count from 500.
type fakeSender struct {
	mu    sync.Mutex
	sends []sent
	edits []sent
}

func (s *fakeSender) SendHTML(_ context.Context, chatID int64, html string, rows [][]telegram.Button) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := sent{chatID, 500 + len(s.sends), html, rows}
	s.sends = append(s.sends, m)
	return m.messageID, nil
}
func (s *fakeSender) EditHTML(ctx context.Context, chatID int64, messageID int, html string) error {
	return s.EditHTMLButtons(ctx, chatID, messageID, html, nil)
}
func (s *fakeSender) EditHTMLButtons(_ context.Context, chatID int64, messageID int, html string, rows [][]telegram.Button) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.edits = append(s.edits, sent{chatID, messageID, html, rows})
	return nil
}
func (s *fakeSender) DeleteMessage(context.Context, int64, int) error { return nil }

func (s *fakeSender) Reachable(context.Context, int64, time.Duration) (bool, error) { return true, nil }

func (s *fakeSender) last(edits bool) sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.sends
	if edits {
		list = s.edits
	}
	if len(list) == 0 {
		return sent{}
	}
	return list[len(list)-1]
}

func data(rows [][]telegram.Button) []string {
	var out []string
	for _, r := range rows {
		for _, b := range r {
			out = append(out, b.Data)
		}
	}
	return out
}

// The card's life without amoCRM timing: the winner's contact is the card
// with the pipeline's buttons; a status edits it; a renamed deal reaches it;
// /my sends it again with its buttons; the manager's Unassign tells the
// executor and takes the buttons away.
func TestExecutorCard(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, o, _, _ := statusEnv(t, kind)
		ctx := context.Background()
		tg := &fakeSender{}
		e.f.o.Sender = tg
		s, _ := e.db.Settings(ctx, e.accountID)
		s.Rules[0].StatusButtons = []dispatch.OrderStatus{dispatch.OrderOnWay, dispatch.OrderDone, dispatch.OrderReleased}
		if err := e.db.SaveSettings(ctx, s); err != nil {
			t.Fatal(err)
		}
		reveal := firstReveal(t, e, o.ID)
		if err := e.f.sendContact(ctx, SendContactArgs{RevealID: reveal, TelegramID: execMapped, Winner: true}); err != nil {
			t.Fatal(err)
		}
		card := tg.last(false)
		want := []string{"s:w" + o.ID, "s:d" + o.ID, "s:r" + o.ID}
		if !slices.Equal(data(card.rows), want) {
			t.Fatalf("card buttons %v, want %v", data(card.rows), want)
		}
		if res, err := e.f.StatusPress(ctx, "w"+o.ID, user(execMapped)); err != nil || res.Outcome != StatusSaved {
			t.Fatalf("on the way: %v %v", res.Outcome, err)
		}
		if err := e.f.editCard(ctx, EditCardArgs{OrderID: o.ID}); err != nil {
			t.Fatal(err)
		}
		edit := tg.last(true)
		if edit.messageID != card.messageID || !strings.Contains(edit.text, "Статус: в пути") ||
			!slices.Equal(data(edit.rows), []string{"s:d" + o.ID, "s:r" + o.ID}) {
			t.Errorf("card after on the way: message %d %q %v", edit.messageID, edit.text, data(edit.rows))
		}
		// The deal renamed in amoCRM reaches the card.
		if _, err := e.amo.UpdateLead(e.accountID, e.leadID, func(l *fakeamocrm.Lead) { l.Name = "Renamed deal" }); err != nil {
			t.Fatal(err)
		}
		if err := e.f.refreshCard(ctx, o.ID); err != nil {
			t.Fatal(err)
		}
		if edit := tg.last(true); !strings.Contains(edit.text, "Renamed deal") || !strings.Contains(edit.text, "Статус: в пути") {
			t.Errorf("card after the rename: %q", edit.text)
		}
		edits := len(tg.edits)
		if err := e.f.refreshCard(ctx, o.ID); err != nil {
			t.Fatal(err)
		}
		if len(tg.edits) != edits {
			t.Errorf("an unchanged deal edited the card again")
		}
		// /my: the open order again, with its buttons, now the card.
		if err := e.f.sendMine(ctx, execMapped); err != nil {
			t.Fatal(err)
		}
		mine := tg.last(false)
		if mine.chatID != execMapped || !slices.Equal(data(mine.rows), []string{"s:d" + o.ID, "s:r" + o.ID}) {
			t.Errorf("/my sent %v to %d", data(mine.rows), mine.chatID)
		}
		// Unassign from the deal card.
		if err := e.f.Unassign(ctx, e.accountID, e.leadID); err != nil {
			t.Fatal(err)
		}
		if err := e.f.Unassign(ctx, e.accountID, e.leadID); !errors.Is(err, dispatch.ErrNotFound) {
			t.Errorf("a second unassign: %v, want not found", err)
		}
		if n := e.jobs(t, "notify_executor"); n != 1 {
			t.Errorf("%d notices, want 1", n)
		}
		if err := e.f.notifyExecutor(ctx, NotifyExecutorArgs{OrderID: o.ID, Key: "notice.unassigned"}); err != nil {
			t.Fatal(err)
		}
		if m := tg.last(false); m.chatID != execMapped || !strings.Contains(m.text, "Менеджер снял вас с заказа") {
			t.Errorf("notice %q to %d", m.text, m.chatID)
		}
		if err := e.f.editCard(ctx, EditCardArgs{OrderID: o.ID}); err != nil {
			t.Fatal(err)
		}
		if edit := tg.last(true); edit.messageID != mine.messageID || edit.rows != nil || !strings.Contains(edit.text, "Менеджер снял вас с заказа") {
			t.Errorf("card after unassign: message %d %q %v", edit.messageID, edit.text, data(edit.rows))
		}
	})
}

// firstReveal is the winner's reveal of an order.
func firstReveal(t *testing.T, e *env, orderID string) string {
	t.Helper()
	var id string
	if err := e.db.SQL().QueryRow(`SELECT id FROM contact_reveals WHERE order_id = '` + orderID + `' ORDER BY requested_at LIMIT 1`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// A status write whose jobs gave up (an outage past their retries) is queued
// again by the reconciler's pass; a finished one is not.
func TestResumeUnfinishedStatusWrites(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, o, _, _ := statusEnv(t, kind)
		ctx := context.Background()
		if res, err := e.f.StatusPress(ctx, "w"+o.ID, user(execMapped)); err != nil || res.Outcome != StatusSaved {
			t.Fatalf("on the way: %v %v", res.Outcome, err)
		}
		gaveUp := func() {
			if _, err := e.db.SQL().Exec(`DELETE FROM river_job`); err != nil {
				t.Fatal(err)
			}
		}
		gaveUp()
		if err := e.f.resume(ctx, e.accountID); err != nil {
			t.Fatal(err)
		}
		if n := e.jobs(t, "amo_event_write"); n != 1 {
			t.Fatalf("%d status writes queued again, want 1", n)
		}
		if err := e.f.writeEvent(ctx, eventID(t, e, o.ID, string(dispatch.OrderOnWay))); err != nil {
			t.Fatal(err)
		}
		gaveUp()
		if err := e.f.resume(ctx, e.accountID); err != nil {
			t.Fatal(err)
		}
		if n := e.jobs(t, "amo_event_write"); n != 0 {
			t.Errorf("%d writes queued for a finished status, want 0", n)
		}
	})
}

// A read of the deal taken before the take's own move to "executor found"
// (the round closed meanwhile) neither ends the executor's order nor posts
// the deal again: the deal is read afresh.
func TestStaleReadDoesNotEndTheExecutor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, o, _, _ := statusEnv(t, kind)
		ctx := context.Background()
		api, err := e.f.o.CRM.API(ctx, e.accountID)
		if err != nil {
			t.Fatal(err)
		}
		stale, err := api.GetLead(ctx, e.leadID, false)
		if err != nil {
			t.Fatal(err)
		}
		stale.StatusID = e.trigger // as read before the take's PATCH
		s, _ := e.db.Settings(ctx, e.accountID)
		lead, err := e.f.followExecutor(ctx, api, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID}, s, stale, false)
		if err != nil {
			t.Fatal(err)
		}
		if lead.StatusID != e.found {
			t.Errorf("dispatching goes on with stage %d, want the fresh %d", lead.StatusID, e.found)
		}
		if got, _ := e.db.OrderByID(ctx, o.ID); got.Status != dispatch.OrderTaken || e.jobs(t, "notify_executor") != 0 {
			t.Errorf("order %s, %d notices after a stale read; want taken, none", got.Status, e.jobs(t, "notify_executor"))
		}
		// Moved back to the search by the manager: the order ends, the deal is posted anew.
		if err := e.amo.MoveLead(e.accountID, e.leadID, e.trigger); err != nil {
			t.Fatal(err)
		}
		if err := e.f.dispatchLead(ctx, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "webhook"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.db.OrderByID(ctx, o.ID); got.Status != dispatch.OrderEnded || e.jobs(t, "post_order") != 1 {
			t.Errorf("order %s, %d posts after the manager's move back; want ended, 1", got.Status, e.jobs(t, "post_order"))
		}
	})
}
