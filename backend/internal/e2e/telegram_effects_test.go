package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// TestTelegramSideEffects covers what real bots meet while orders are open:
// a group upgraded to a supergroup, a post deleted by an admin, an executor
// who blocked the bot, and a callback older than Telegram accepts.
func TestTelegramSideEffects(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 48000000, "effects", "ru", 8000)
		searching := tn.statusByIndex(1)

		// An admin deletes a post; the deal then leaves the search: the
		// withdrawal finds no message, logs it and finishes (no retry loop).
		l1 := tn.newLead(t, e, "Удалят пост")
		if err := e.amo.MoveLead(tn.acc.ID, l1.ID, searching); err != nil {
			t.Fatal(err)
		}
		eventually(t, "post 1", func() bool { return len(orderPosts(e, tn.group.ID)) == 1 })
		e.tg.AdminDeletesMessage(tn.group.ID, orderPosts(e, tn.group.ID)[0].MessageID)
		if err := e.amo.MoveLead(tn.acc.ID, l1.ID, tn.statusByIndex(3)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "withdrawal gave up on the deleted post", func() bool {
			return strings.Contains(e.logs.String(), "group post was deleted, not edited")
		})
		waitJobsIdle(t, b)

		// The group becomes a supergroup while an order is open: the link,
		// the default chat and the order follow; new orders go to the new id.
		l2 := tn.newLead(t, e, "До миграции")
		if err := e.amo.MoveLead(tn.acc.ID, l2.ID, searching); err != nil {
			t.Fatal(err)
		}
		eventually(t, "post 2", func() bool {
			o, err := b.Store().ActiveOrder(ctx, tn.acc.ID, l2.ID)
			return err == nil && o.MessageID != 0
		})
		newID := e.tg.MigrateToSupergroup(tn.group.ID)
		eventually(t, "chat migrated", func() bool { c, err := b.Store().Chat(ctx, newID); return err == nil && c.Active })
		eventually(t, "order follows", func() bool { o, _ := b.Store().ActiveOrder(ctx, tn.acc.ID, l2.ID); return o.ChatID == newID })
		s, _ := b.Store().Settings(ctx, tn.acc.ID)
		if s.Rules[0].DefaultChatID != newID {
			t.Fatalf("default chat still %d after migration to %d", s.Rules[0].DefaultChatID, newID)
		}
		l3 := tn.newLead(t, e, "После миграции")
		if err := e.amo.MoveLead(tn.acc.ID, l3.ID, searching); err != nil {
			t.Fatal(err)
		}
		eventually(t, "post in the supergroup", func() bool { return len(orderPosts(e, newID)) == 1 })
		post := orderPosts(e, newID)[0]
		btn := buttonsOf(t, post)

		// An executor who blocked the bot: the contact cannot be sent, the
		// bot remembers it, and the next press gets the start link instead.
		u := e.tg.AddUser("Заблокировавший", "", "blocker")
		e.tg.UserStartsBot(u.ID, "")
		eventually(t, "registered", func() bool { x, err := b.Store().Executor(ctx, u.ID); return err == nil && x.Started })
		e.tg.BlockBot(u.ID)
		q, err := e.tg.PressButton(newID, post.MessageID, u.ID, btn[0].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "blocked executor recorded", func() bool { x, _ := b.Store().Executor(ctx, u.ID); return x.Blocked })
		if a := e.tg.CallbackAnswers(q); len(a) != 1 || a[0].URL != "" {
			t.Fatalf("first answer: %+v", a)
		}
		waitJobsIdle(t, b)
		q2, err := e.tg.PressButton(newID, post.MessageID, u.ID, btn[0].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "second answer", func() bool { return len(e.tg.CallbackAnswers(q2)) == 1 })
		if a := e.tg.CallbackAnswers(q2)[0]; !strings.Contains(a.URL, "?start=") {
			t.Fatalf("a blocked executor must be sent to the bot: %+v", a)
		}

		// A press answered too late ("query is too old"): the take still
		// counts and the post shows the executor.
		e.tg.SetCallbackMaxAge(time.Nanosecond)
		w := e.tg.AddUser("Медленный", "", "slowpoke")
		if _, err := e.tg.PressButton(newID, post.MessageID, w.ID, btn[1].CallbackData); err != nil {
			t.Fatal(err)
		}
		eventually(t, "taken despite the late answer", func() bool {
			o, err := b.Store().LatestOrder(ctx, tn.acc.ID, l3.ID)
			return err == nil && o.Status == dispatch.OrderTaken && o.ExecutorID == w.ID
		})
		eventually(t, "post edited", func() bool {
			m, _ := e.tg.Message(newID, post.MessageID)
			return strings.Contains(m.Text, "@slowpoke")
		})
		if !strings.Contains(e.logs.String(), "answerCallbackQuery failed") {
			t.Fatal("the late answer is not logged")
		}
	})
}
