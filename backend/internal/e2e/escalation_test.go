package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

// ladderEnv is a tenant on a controlled clock whose pipeline escalates: a
// bump after 15 minutes, the fallback chat after 30, a task after 60.
type ladderEnv struct {
	e        *env
	b        *backend
	tn       *tenant
	clock    *testClock
	fallback faketelegram.Chat
	lead     fakeamocrm.Lead
	order    dispatch.Order
}

func newLadderEnv(t *testing.T, kind dbtest.Kind, id int64, sub string) *ladderEnv {
	t.Helper()
	ctx := context.Background()
	clock := newTestClock()
	e := newEnv(t, kind, withClock(clock), withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
	b := e.start()
	tn := newTenant(t, e, b, id, sub, "ru", 5000)
	fallback := e.tg.NewGroup("Wider group of " + sub)
	e.tg.AddBotToGroup(fallback.ID, tn.boss, tn.linkCode(t, b))
	eventually(t, "fallback group linked", func() bool {
		c, err := b.Store().Chat(ctx, fallback.ID)
		return err == nil && c.AccountID == tn.acc.ID
	})
	eventually(t, "link confirmed in the fallback group", func() bool { return len(botTexts(e, fallback.ID)) > 0 })
	err := b.Store().SaveSettings(ctx, dispatch.Settings{AccountID: tn.acc.ID, ShowBudget: true,
		Rules: []dispatch.Rule{{PipelineID: tn.pipeline, TriggerStageIDs: []int64{5002}, FoundStageID: 5003, DefaultChatID: tn.group.ID,
			Ladder: dispatch.Ladder{BumpAfter: 15 * time.Minute, FallbackAfter: 30 * time.Minute, FallbackChatID: fallback.ID,
				TaskAfter: 60 * time.Minute}}}})
	if err != nil {
		t.Fatal(err)
	}
	l := &ladderEnv{e: e, b: b, tn: tn, clock: clock, fallback: fallback}
	l.lead = tn.newLead(t, e, "Переезд")
	tn.toSearch(t, e, l.lead.ID)
	// The controlled clock stands still by itself; it moves while the post
	// goes out as the wall clock would (River on PostgreSQL did not pick up
	// jobs on a clock frozen since before they were queued).
	l.until(t, "deal posted and recorded", func() bool {
		var err error
		l.order, err = b.Store().ActiveOrder(ctx, tn.acc.ID, l.lead.ID)
		return err == nil && l.order.MessageID != 0
	})
	// Telegram's pace counts real seconds: a bump and a delete a real second
	// after the link confirmation and the post would wait for their turn
	// (snoozed, then moved by River's scheduler), as minutes apart they do not.
	time.Sleep(3 * time.Second)
	return l
}

// livePosts are the bot's order messages in a chat that are not deleted.
func livePosts(e *env, chatID int64) []faketelegram.Message {
	var out []faketelegram.Message
	for _, m := range orderPosts(e, chatID) {
		if !m.Deleted {
			out = append(out, m)
		}
	}
	return out
}

// until polls cond while the controlled clock (which stands still by itself)
// moves a second every 100 ms, as the wall clock would: a send that waits
// for Telegram's pace is snoozed on it. Steps are minutes apart, so the
// drift is immaterial.
func (l *ladderEnv) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
		l.clock.Advance(time.Second)
	}
}

func (l *ladderEnv) tasks() []fakeamocrm.Task { return l.e.amo.Tasks(l.tn.acc.ID, l.lead.ID) }

func (l *ladderEnv) notesWith(s string) int {
	n := 0
	for _, note := range l.e.amo.Notes(l.tn.acc.ID, l.lead.ID) {
		if strings.Contains(note.Text(), s) {
			n++
		}
	}
	return n
}

// settle lets River move due jobs (it looks every few seconds of real time)
// and run them, so a step that should not happen has had its chance.
func (l *ladderEnv) settle(t *testing.T) {
	t.Helper()
	time.Sleep(7 * time.Second)
	l.until(t, "jobs idle", func() bool {
		n, err := l.b.Flow().PendingJobs(context.Background())
		return err == nil && n == 0
	})
}

func (l *ladderEnv) waitBump(t *testing.T) faketelegram.Message {
	t.Helper()
	var why string
	deadline := time.Now().Add(30 * time.Second)
	for {
		all, live := orderPosts(l.e, l.tn.group.ID), livePosts(l.e, l.tn.group.ID)
		o, err := l.b.Store().Order(context.Background(), l.tn.acc.ID, l.order.ID)
		switch {
		case len(all) != 2 || len(live) != 1 || !all[0].Deleted:
			why = fmt.Sprintf("%d posts, %d live", len(all), len(live))
		case err != nil || o.MessageID != live[0].MessageID || o.Status != dispatch.OrderOpen:
			why = fmt.Sprintf("order %+v, %v; live post %d", o, err, live[0].MessageID)
		default:
			return live[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("order not bumped (old post deleted, a new one below): %s", why)
		}
		time.Sleep(100 * time.Millisecond)
		l.clock.Advance(time.Second)
	}
}

func (l *ladderEnv) press(t *testing.T, chatID int64, m faketelegram.Message, user int64) {
	t.Helper()
	btns := buttonsOf(t, m)
	if len(btns) == 0 {
		t.Fatalf("message %d in chat %d has no buttons", m.MessageID, chatID)
	}
	if _, err := l.e.tg.PressButton(chatID, m.MessageID, user, btns[len(btns)-1].CallbackData); err != nil {
		t.Fatal(err)
	}
	l.until(t, "order taken", func() bool {
		o, err := l.b.Store().Order(context.Background(), l.tn.acc.ID, l.order.ID)
		return err == nil && o.Status == dispatch.OrderTaken
	})
}

// No take: one bump at 15 minutes, one fallback post at 30, one task (and
// its note) at 60, each once however much later the clock goes.
func TestLadderNoTakeEachStepOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		l := newLadderEnv(t, kind, 44000000, "ladder")
		l.clock.Advance(14 * time.Minute)
		l.settle(t)
		if n := len(orderPosts(l.e, l.tn.group.ID)); n != 1 {
			t.Fatalf("%d posts before the bump time, want 1", n)
		}

		l.clock.Advance(2 * time.Minute)
		bumped := l.waitBump(t)
		if len(buttonsOf(t, bumped)) != 2 {
			t.Fatalf("the bumped post has %d buttons, want the order's 2", len(buttonsOf(t, bumped)))
		}
		if n := len(orderPosts(l.e, l.fallback.ID)); n != 0 {
			t.Fatalf("%d fallback posts before their time", n)
		}

		l.clock.Advance(15 * time.Minute)
		l.until(t, "order posted to the fallback chat", func() bool { return len(livePosts(l.e, l.fallback.ID)) == 1 })
		if n := len(l.tasks()); n != 0 {
			t.Fatalf("%d tasks before their time", n)
		}

		l.clock.Advance(30 * time.Minute)
		l.until(t, "task for the responsible user", func() bool { return len(l.tasks()) == 1 })
		task := l.tasks()[0]
		lead, _ := l.e.amo.Lead(l.tn.acc.ID, l.lead.ID)
		if task.Text != "Никто не взял заказ за 60 мин" || task.ResponsibleUserID != lead.ResponsibleUserID {
			t.Fatalf("task %q for user %d, want the 60-minute text for %d", task.Text, task.ResponsibleUserID, lead.ResponsibleUserID)
		}
		if d := task.CompleteTill.Sub(l.clock.Now()); d <= 0 || d > 16*time.Minute {
			t.Fatalf("task due in %s, want about 15 minutes", d)
		}
		l.until(t, "note about the untaken order", func() bool { return l.notesWith("Никто не взял заказ") == 1 })

		l.clock.Advance(5 * time.Hour)
		l.settle(t)
		if n := len(orderPosts(l.e, l.tn.group.ID)); n != 2 {
			t.Fatalf("%d posts in the chat, want the first and one bump", n)
		}
		if n := len(orderPosts(l.e, l.fallback.ID)); n != 1 {
			t.Fatalf("%d fallback posts, want 1", n)
		}
		if n, notes := len(l.tasks()), l.notesWith("Никто не взял заказ"); n != 1 || notes != 1 {
			t.Fatalf("%d tasks and %d notes, want 1 each", n, notes)
		}
	})
}

// A take after the bump cancels the rest: no fallback post, no task.
func TestLadderTakeAfterBumpCancelsRest(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		l := newLadderEnv(t, kind, 45000000, "ladtake")
		l.clock.Advance(16 * time.Minute)
		bumped := l.waitBump(t)
		executor := l.e.tg.AddUser("Пётр", "", "petr_ladder")
		l.e.tg.UserStartsBot(executor.ID, "")
		l.press(t, l.tn.group.ID, bumped, executor.ID)
		l.until(t, "the bumped post shows the executor", func() bool {
			m, _ := l.e.tg.Message(l.tn.group.ID, bumped.MessageID)
			return len(m.ReplyMarkup) == 0 && strings.Contains(m.Text, "petr_ladder")
		})

		l.clock.Advance(2 * time.Hour)
		l.settle(t)
		if n := len(orderPosts(l.e, l.fallback.ID)); n != 0 {
			t.Fatalf("%d fallback posts after the take, want 0", n)
		}
		if n := len(l.tasks()); n != 0 {
			t.Fatalf("%d tasks after the take, want 0", n)
		}
		if n := l.notesWith("Никто не взял заказ"); n != 0 {
			t.Fatalf("%d untaken notes after the take, want 0", n)
		}
		if n := len(orderPosts(l.e, l.tn.group.ID)); n != 2 {
			t.Fatalf("%d posts in the chat, want the first and one bump", n)
		}
	})
}

// A take in the fallback chat wins the order and finishes the first chat's
// post; a press in the first chat then finds it taken.
func TestLadderTakeInFallbackChat(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		l := newLadderEnv(t, kind, 46000000, "ladfall")
		l.clock.Advance(16 * time.Minute)
		bumped := l.waitBump(t)
		l.clock.Advance(15 * time.Minute)
		l.until(t, "order posted to the fallback chat", func() bool { return len(livePosts(l.e, l.fallback.ID)) == 1 })
		fb := livePosts(l.e, l.fallback.ID)[0]

		executor := l.e.tg.AddUser("Анна", "", "anna_fallback")
		l.e.tg.UserStartsBot(executor.ID, "")
		l.press(t, l.fallback.ID, fb, executor.ID)
		for _, p := range []struct {
			chat int64
			msg  int
		}{{l.tn.group.ID, bumped.MessageID}, {l.fallback.ID, fb.MessageID}} {
			l.until(t, "post shows the executor found", func() bool {
				m, _ := l.e.tg.Message(p.chat, p.msg)
				return len(m.ReplyMarkup) == 0 && strings.Contains(m.Text, "anna_fallback")
			})
		}
		o, err := l.b.Store().Order(context.Background(), l.tn.acc.ID, l.order.ID)
		if err != nil || o.ExecutorID != executor.ID || o.ChatID != l.tn.group.ID || o.MessageID != bumped.MessageID {
			t.Fatalf("order %+v, %v: want taken by %d with its post unchanged", o, err, executor.ID)
		}
		l.until(t, "executor note in amoCRM", func() bool { return l.notesWith("anna_fallback") > 0 })

		l.clock.Advance(2 * time.Hour)
		l.settle(t)
		if n := len(l.tasks()); n != 0 {
			t.Fatalf("%d tasks after the take, want 0", n)
		}
	})
}

// A restart between the steps neither loses nor repeats one: the bump before
// it stays the only bump, the fallback post and the task after it happen once.
func TestLadderRestartBetweenSteps(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		l := newLadderEnv(t, kind, 47000000, "ladrestart")
		l.clock.Advance(16 * time.Minute)
		l.waitBump(t)
		l.settle(t)
		l.b.stop(t)

		l.clock.Advance(15 * time.Minute) // the fallback step falls due while no backend runs
		l.b = l.e.start()
		l.until(t, "order posted to the fallback chat after the restart", func() bool { return len(livePosts(l.e, l.fallback.ID)) == 1 })
		l.settle(t)
		l.b.stop(t)

		l.b = l.e.start()
		l.clock.Advance(30 * time.Minute)
		l.until(t, "task after the second restart", func() bool { return len(l.tasks()) == 1 })
		l.clock.Advance(3 * time.Hour)
		l.settle(t)
		if n := len(orderPosts(l.e, l.tn.group.ID)); n != 2 {
			t.Fatalf("%d posts in the chat, want the first and one bump", n)
		}
		if n := len(orderPosts(l.e, l.fallback.ID)); n != 1 {
			t.Fatalf("%d fallback posts, want 1", n)
		}
		if n := len(l.tasks()); n != 1 {
			t.Fatalf("%d tasks, want 1", n)
		}
	})
}

// A post older than Telegram lets a bot delete (48 hours) is not deleted at
// the bump: it loses its buttons and points at the new post, with a link in
// a supergroup.
func TestLadderBumpPointsWhereItCannotDelete(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		clock := newTestClock()
		e := newEnv(t, kind, withClock(clock), withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		tn := newTenant(t, e, b, 48000000, "ladold", "ru", 6000)
		sg := e.tg.NewSupergroup("Supergroup of ladold")
		e.tg.AddBotToGroup(sg.ID, tn.boss, tn.linkCode(t, b))
		eventually(t, "supergroup linked", func() bool { c, err := b.Store().Chat(ctx, sg.ID); return err == nil && c.AccountID == tn.acc.ID })
		eventually(t, "link confirmed in the supergroup", func() bool { return len(botTexts(e, sg.ID)) > 0 })
		err := b.Store().SaveSettings(ctx, dispatch.Settings{AccountID: tn.acc.ID, ShowBudget: true,
			Rules: []dispatch.Rule{{PipelineID: tn.pipeline, TriggerStageIDs: []int64{6002}, DefaultChatID: sg.ID,
				Ladder: dispatch.Ladder{BumpAfter: 49 * time.Hour}}}})
		if err != nil {
			t.Fatal(err)
		}
		l := &ladderEnv{e: e, b: b, tn: tn, clock: clock}
		lead := tn.newLead(t, e, "Старый заказ")
		tn.toSearch(t, e, lead.ID)
		l.until(t, "deal posted", func() bool { return len(orderPosts(e, sg.ID)) == 1 })
		time.Sleep(3 * time.Second) // the supergroup's pace, in real seconds

		clock.Advance(49*time.Hour + time.Minute)
		var old, bumped faketelegram.Message
		l.until(t, "the old post points at the new one", func() bool {
			all := orderPosts(e, sg.ID)
			if len(all) != 2 {
				return false
			}
			old, bumped = all[0], all[1]
			return !old.Deleted && len(old.ReplyMarkup) == 0 && strings.Contains(old.Text, "Заказ поднят")
		})
		link := fmt.Sprintf("https://t.me/c/%s/%d", strings.TrimPrefix(fmt.Sprint(sg.ID), "-100"), bumped.MessageID)
		if !strings.Contains(old.RawText, link) {
			t.Fatalf("old post %q has no link %s", old.RawText, link)
		}
		if len(buttonsOf(t, bumped)) != 2 || bumped.Deleted {
			t.Fatalf("the new post has %d buttons", len(buttonsOf(t, bumped)))
		}
	})
}
