package flow

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// sendHook is fakeSender with a hook that runs inside a send, after
// Telegram "accepted" it and before the flow records it.
type sendHook struct {
	*fakeSender
	during func()
}

func (s *sendHook) SendHTML(ctx context.Context, chatID int64, html string, rows [][]telegram.Button) (int, error) {
	id, err := s.fakeSender.SendHTML(ctx, chatID, html, rows)
	if s.during != nil {
		s.during()
		s.during = nil
	}
	return id, err
}

// ladderOrder is an order posted as message 100 with the ladder's timers
// planned and the rule's ladder set.
func ladderOrder(t *testing.T, e *env, l dispatch.Ladder, timers ...string) dispatch.Order {
	t.Helper()
	ctx := context.Background()
	if err := e.db.SaveSettings(ctx, dispatch.Settings{AccountID: e.accountID, Rules: []dispatch.Rule{{PipelineID: e.pipelineID,
		TriggerStageIDs: []int64{e.trigger}, FoundStageID: e.found, DefaultChatID: e.chatID, Ladder: l}}}); err != nil {
		t.Fatal(err)
	}
	o := e.openOrder(t, 100)
	err := e.db.InTx(ctx, func(tx *store.Tx) error {
		var ts []dispatch.Timer
		for _, k := range timers {
			ts = append(ts, dispatch.Timer{Kind: k, At: time.Now()})
		}
		return tx.AddTimers(o, ts)
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func postID(t *testing.T, e *env, orderID, kind string) string {
	t.Helper()
	var id string
	if err := e.db.SQL().QueryRow(`SELECT id FROM order_posts WHERE order_id = '` + orderID + `' AND kind = '` + kind + `'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// A take that lands while the bump's post is on its way wins; the bump's
// message is not made the order's post and shows the outcome, nothing is
// retired, and the steps left do nothing.
func TestBumpOvertakenByATake(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		ctx := context.Background()
		o := ladderOrder(t, e, dispatch.Ladder{BumpAfter: 15 * time.Minute, TaskAfter: time.Hour}, dispatch.TimerBump, dispatch.TimerTask)
		tg := &sendHook{fakeSender: &fakeSender{}}
		e.f.o.Sender = tg
		if err := e.f.fireTimer(ctx, TimerArgs{OrderID: o.ID, Step: dispatch.TimerBump}); err != nil {
			t.Fatal(err)
		}
		if err := e.f.fireTimer(ctx, TimerArgs{OrderID: o.ID, Step: dispatch.TimerBump}); err != nil {
			t.Fatal(err)
		}
		if n := e.jobs(t, "send_order_post"); n != 1 {
			t.Fatalf("%d bump sends queued by two firings, want 1", n)
		}
		tg.during = func() {
			if res, err := e.f.Take(ctx, e.chatID, 100, o.ID, user(execMapped)); err != nil || (res.Outcome != Won && res.Outcome != WonOpenBot) {
				t.Errorf("take during the bump: %v %v", res.Outcome, err)
			}
		}
		if err := e.f.sendPost(ctx, postID(t, e, o.ID, dispatch.PostBump)); err != nil {
			t.Fatal(err)
		}
		got, err := e.db.OrderByID(ctx, o.ID)
		if err != nil || got.Status != dispatch.OrderTaken || got.MessageID != 100 {
			t.Fatalf("order %+v, %v: want taken with its first post", got, err)
		}
		bump := tg.sends[0].messageID
		edited := false
		for _, ed := range tg.edits {
			if ed.chatID == e.chatID && ed.messageID == bump && ed.rows == nil && strings.Contains(ed.text, "User5001") {
				edited = true
			}
		}
		if !edited {
			t.Fatalf("the overtaken bump post %d was not edited to the outcome: %+v", bump, tg.edits)
		}
		if n := e.jobs(t, "retire_order_post"); n != 0 {
			t.Fatalf("%d retirements of the first post after a take, want 0", n)
		}
		if err := e.f.fireTimer(ctx, TimerArgs{OrderID: o.ID, Step: dispatch.TimerTask, After: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if n := e.jobs(t, "amo_order_task"); n != 0 {
			t.Fatalf("%d tasks queued after the take, want 0", n)
		}
	})
}

// The fallback chat's post acts on the order: a take there wins, and the
// decision's edit reaches both chats' posts.
func TestFallbackPostEditedWithTheOrder(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		ctx := context.Background()
		const wide = -1002
		if _, err := e.db.LinkChat(ctx, dispatch.Chat{ID: wide, AccountID: e.accountID, Title: "Wide", Type: "supergroup"}); err != nil {
			t.Fatal(err)
		}
		o := ladderOrder(t, e, dispatch.Ladder{FallbackAfter: 30 * time.Minute, FallbackChatID: wide}, dispatch.TimerFallback)
		tg := &fakeSender{}
		e.f.o.Sender = tg
		if err := e.f.fireTimer(ctx, TimerArgs{OrderID: o.ID, Step: dispatch.TimerFallback}); err != nil {
			t.Fatal(err)
		}
		if err := e.f.sendPost(ctx, postID(t, e, o.ID, dispatch.PostFallback)); err != nil {
			t.Fatal(err)
		}
		if len(tg.sends) != 1 || tg.sends[0].chatID != wide || len(tg.sends[0].rows) == 0 {
			t.Fatalf("fallback sends %+v", tg.sends)
		}
		fb := tg.sends[0].messageID
		if res, err := e.f.Take(ctx, -1003, fb, o.ID, user(42)); err != nil || res.Outcome != Closed {
			t.Fatalf("press in an unrelated chat: %v %v, want closed", res.Outcome, err)
		}
		if res, err := e.f.Take(ctx, wide, fb, o.ID, user(execMapped)); err != nil || (res.Outcome != Won && res.Outcome != WonOpenBot) {
			t.Fatalf("take in the fallback chat: %v %v", res.Outcome, err)
		}
		if res, err := e.f.Take(ctx, e.chatID, 100, o.ID, user(42)); err != nil || res.Outcome != AlreadyTaken {
			t.Fatalf("press in the first chat after: %v %v, want already taken", res.Outcome, err)
		}
		if err := e.f.editTaken(ctx, o.ID); err != nil {
			t.Fatal(err)
		}
		posts := map[int64]int{}
		for _, ed := range tg.edits {
			if ed.rows == nil && strings.Contains(ed.text, "User5001") {
				posts[ed.chatID] = ed.messageID
			}
		}
		if posts[e.chatID] != 100 || posts[wide] != fb {
			t.Fatalf("taken edits %v, want both posts", posts)
		}
	})
}

// Expiry withdraws the order but keeps it the deal's current one (the deal,
// still searching, is not posted again); the task and the note are written
// once however often their job runs; the manager's Post starts a new round.
func TestExpiryWithdrawsAndTasksOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		ctx := context.Background()
		o := ladderOrder(t, e, dispatch.Ladder{ExpireAfter: 6 * time.Hour}, dispatch.TimerExpire)
		if err := e.f.fireTimer(ctx, TimerArgs{OrderID: o.ID, Step: dispatch.TimerExpire, After: 6 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		got, err := e.db.ActiveOrder(ctx, e.accountID, e.leadID)
		if err != nil || got.ID != o.ID || got.Status != dispatch.OrderWithdrawn {
			t.Fatalf("current order %+v, %v: want this one, withdrawn", got, err)
		}
		if e.jobs(t, "withdraw_post") != 1 || e.jobs(t, "amo_order_task") != 1 {
			t.Fatalf("withdraw_post %d, amo_order_task %d, want 1 each", e.jobs(t, "withdraw_post"), e.jobs(t, "amo_order_task"))
		}
		// The deal is still in its search stage: dispatching it posts nothing.
		if err := e.f.dispatchLead(ctx, DispatchLeadArgs{AccountID: e.accountID, LeadID: e.leadID, Reason: "reconcile"}); err != nil {
			t.Fatal(err)
		}
		if n, _ := e.db.CountOrders(ctx, e.accountID); n != 1 {
			t.Fatalf("%d orders after dispatching the expired deal, want 1", n)
		}
		args := OrderTaskArgs{EventID: eventID(t, e, o.ID, dispatch.EventExpired), After: 6, At: time.Now().Unix()}
		for range 2 {
			if err := e.f.addOrderTask(ctx, args); err != nil {
				t.Fatal(err)
			}
		}
		tasks := e.amo.Tasks(e.accountID, e.leadID)
		if len(tasks) != 1 || tasks[0].Text != "Заказ снят с поиска: никто не взял его за 6 ч" {
			t.Fatalf("tasks %+v, want one expiry task", tasks)
		}
		notes := 0
		for _, n := range e.amo.Notes(e.accountID, e.leadID) {
			if strings.Contains(n.Text(), "никто не взял его за 6 ч") {
				notes++
			}
		}
		if notes != 1 {
			t.Fatalf("%d expiry notes, want 1", notes)
		}
		if err := e.f.PostNow(ctx, e.accountID, e.leadID); err != nil {
			t.Fatalf("post after expiry: %v", err)
		}
		if cur, err := e.db.ActiveOrder(ctx, e.accountID, e.leadID); err != nil || cur.ID == o.ID || cur.Status != dispatch.OrderPosting {
			t.Fatalf("current order after the manager's post %+v, %v: want a new round", cur, err)
		}
	})
}
