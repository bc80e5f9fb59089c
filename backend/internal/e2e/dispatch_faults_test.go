package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

func TestDispatchSurvivesFaults(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 43000000, "gamma", "ru", 3000)
		searching := tn.statusByIndex(1)

		// Telegram answers 429 with retry_after: the post waits and lands once.
		e.tg.FailNext("sendMessage", 1, 429, "Too Many Requests: retry after 1", 1)
		l1 := tn.newLead(t, e, "После флуд-лимита")
		if err := e.amo.MoveLead(tn.acc.ID, l1.ID, searching); err != nil {
			t.Fatal(err)
		}
		eventually(t, "post after 429", func() bool { return len(orderPosts(e, tn.group.ID)) == 1 })
		var failedAt, sentAt time.Time
		for _, c := range e.tg.Calls("sendMessage") {
			if c.String("chat_id") != "" && c.Status == 429 {
				failedAt = c.Time
			} else if c.Status == 200 && strings.Contains(c.String("reply_markup"), "t:") {
				sentAt = c.Time
			}
		}
		if failedAt.IsZero() || sentAt.Sub(failedAt) < time.Second {
			t.Fatalf("retry_after not honoured: 429 at %v, sent at %v", failedAt, sentAt)
		}

		// amoCRM loses a webhook: the reconciler finds the deal and posts it.
		l2 := tn.newLead(t, e, "Потерянный вебхук")
		if err := e.amo.WaitDeliveries(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		e.amo.DropNextDeliveries(2) // status_lead and update_lead of the move
		if err := e.amo.MoveLead(tn.acc.ID, l2.ID, searching); err != nil {
			t.Fatal(err)
		}
		if err := e.amo.WaitDeliveries(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		// A pass already running (the start-up one) would absorb this one
		// (one pass per account at a time) and may have listed the deals
		// before the move: start from idle.
		waitJobsIdle(t, b)
		if err := b.Flow().Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "reconciled post", func() bool { return len(orderPosts(e, tn.group.ID)) == 2 })
		// The start-up pass may have found it first; either way the
		// reconciler, not a webhook, created this order.
		if !strings.Contains(e.logs.String(), fmt.Sprintf(`"reconciler found a deal without an order" account_id=%d lead_id=%d`, tn.acc.ID, l2.ID)) ||
			!strings.Contains(e.logs.String(), fmt.Sprintf("lead_id=%d order_id=", l2.ID)) {
			t.Fatal("the lost deal was not posted by the reconciler")
		}
		// A second pass finds nothing new.
		if err := b.Flow().Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		waitJobsIdle(t, b)
		if n := len(orderPosts(e, tn.group.ID)); n != 2 {
			t.Fatalf("second reconcile re-posted: %d posts", n)
		}

		// The deal leaves the search stage before anyone takes it: the post
		// is withdrawn and loses its buttons.
		eventually(t, "reconciled order recorded as posted", func() bool {
			o, err := b.Store().ActiveOrder(ctx, tn.acc.ID, l2.ID)
			return err == nil && o.MessageID != 0
		})
		o2, _ := b.Store().ActiveOrder(ctx, tn.acc.ID, l2.ID)
		if err := e.amo.MoveLead(tn.acc.ID, l2.ID, tn.statusByIndex(3)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "post withdrawn", func() bool {
			m, _ := e.tg.Message(tn.group.ID, o2.MessageID)
			return strings.Contains(m.Text, "снят") && len(buttonsOf(t, m)) == 0
		})

		// A deal deleted in amoCRM before its job runs is skipped with a log line.
		l3 := tn.newLead(t, e, "Удалённая")
		if err := e.amo.WaitDeliveries(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		e.amo.DropNextDeliveries(2)
		if err := e.amo.MoveLead(tn.acc.ID, l3.ID, searching); err != nil {
			t.Fatal(err)
		}
		if err := e.amo.DeleteLead(tn.acc.ID, l3.ID); err != nil {
			t.Fatal(err)
		}
		if err := b.Flow().Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		waitJobsIdle(t, b)
		if _, err := b.Store().ActiveOrder(ctx, tn.acc.ID, l3.ID); err == nil {
			t.Fatal("a deleted deal got an order")
		}
		if !strings.Contains(e.logs.String(), "deal no longer in amoCRM, skipped") {
			t.Fatal("the deleted deal (amoCRM answers 204) is not logged")
		}

		// The bot is removed from the group: later orders are not posted
		// there (the chat is inactive), nothing is retried forever.
		boss := e.tg.AddUser("Admin", "", "admin_gamma")
		e.tg.RemoveBotFromGroup(tn.group.ID, boss.ID)
		eventually(t, "chat inactive", func() bool { c, _ := b.Store().Chat(ctx, tn.group.ID); return !c.Active })
		l4 := tn.newLead(t, e, "Нет чата")
		if err := e.amo.MoveLead(tn.acc.ID, l4.ID, searching); err != nil {
			t.Fatal(err)
		}
		if err := e.amo.WaitDeliveries(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		waitJobsIdle(t, b)
		if n := len(orderPosts(e, tn.group.ID)); n != 2 {
			t.Fatalf("posted into a chat the bot left: %d posts", n)
		}
		if _, err := b.Store().ActiveOrder(ctx, tn.acc.ID, l4.ID); err == nil {
			t.Fatal("order created without a chat")
		}
		if !strings.Contains(e.logs.String(), "no chat to post to") {
			t.Fatal("the missing chat is not reported in the log")
		}
	})
}

func TestButtonAbuseCostsOnlyAnswers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		tn := newTenant(t, e, b, 47000000, "abuse", "ru", 7000)
		l := tn.newLead(t, e, "Заказ для нажатий")
		if err := e.amo.MoveLead(tn.acc.ID, l.ID, tn.statusByIndex(1)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "posted", func() bool { return len(orderPosts(e, tn.group.ID)) == 1 })
		post := orderPosts(e, tn.group.ID)[0]
		btn := buttonsOf(t, post)
		u := e.tg.AddUser("Нажимающий", "", "presser")
		e.tg.UserStartsBot(u.ID, "")
		var queries []string
		for i := 0; i < 100; i++ {
			q, err := e.tg.PressButton(tn.group.ID, post.MessageID, u.ID, btn[0].CallbackData)
			if err != nil {
				t.Fatal(err)
			}
			queries = append(queries, q)
		}
		eventually(t, "all presses answered", func() bool {
			for _, q := range queries {
				if len(e.tg.CallbackAnswers(q)) == 0 {
					return false
				}
			}
			return true
		})
		waitJobsIdle(t, b)
		if got := botTexts(e, u.ID); len(got) != 2 { // the greeting and one contact
			t.Fatalf("100 presses sent %d private messages: %q", len(got)-1, got)
		}
	})
}
