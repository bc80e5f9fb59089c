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

// TestOutagesRecover: Telegram answering 5xx and amoCRM answering 5xx and 429
// for a while delay the work but lose and duplicate nothing, and no amoCRM
// request goes out before the Retry-After it was given.
func TestOutagesRecover(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		tn := newTenant(t, e, b, 49000000, "outage", "ru", 9000)

		// Telegram is down for the first two posting attempts.
		e.tg.FailNext("sendMessage", 2, 502, "Bad Gateway", 0)
		l1 := tn.newLead(t, e, "Во время сбоя Telegram")
		tn.toSearch(t, e, l1.ID)
		eventually(t, "posted after the outage", func() bool { return len(orderPosts(e, tn.group.ID)) == 1 })

		// amoCRM answers 503 three times, then 429 with Retry-After: 1.
		e.amo.FailNext("GET /api/v4/leads/*", 3, 503)
		e.amo.FailNext("GET /api/v4/leads/*", 1, 429)
		l2 := tn.newLead(t, e, "Во время сбоя amoCRM")
		tn.toSearch(t, e, l2.ID)
		eventually(t, "posted after the amoCRM outage", func() bool { return len(orderPosts(e, tn.group.ID)) == 2 })
		waitJobsIdle(t, b)
		reqs := e.amo.Requests(fakeamocrm.RequestFilter{AccountID: tn.acc.ID, Method: "GET", Path: "/api/v4/leads/*"})
		for i, r := range reqs {
			if r.Status == 429 && i+1 < len(reqs) {
				if gap := reqs[i+1].At.Sub(r.At); gap < time.Second {
					t.Fatalf("a request went out %v after a 429 with Retry-After: 1", gap)
				}
			}
		}
		if n := len(orderPosts(e, tn.group.ID)); n != 2 {
			t.Fatalf("%d posts after the outages, want 2", n)
		}
		if strings.Contains(e.logs.String(), "level=ERROR") {
			t.Fatalf("errors logged during a recoverable outage:\n%s", e.logs.String())
		}
	})
}

func apiTimeout(d string) backendOption { return func(v map[string]string) { v["API_TIMEOUT"] = d } }

// TestTimeoutsAfterTheWriteWasDone: requests that time out on our side
// after the other end carried them out. amoCRM writes are checked before they
// are repeated, so the deal gets one update and one note. Telegram offers no
// such check, so a timed-out post can appear twice; the copy's buttons act on
// the same order (one winner) and the copy shows the outcome too.
func TestTimeoutsAfterTheWriteWasDone(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start(apiTimeout("1s"))
		tn := newTenant(t, e, b, 49100000, "timeouts", "ru", 9100)

		// sendMessage answers after 3 s, past the 1 s timeout, and is carried out.
		e.tg.HangNext("sendMessage", 1, 3*time.Second)
		lead := tn.newLead(t, e, "Пост с тайм-аутом")
		tn.toSearch(t, e, lead.ID)
		order := tn.postedOrder(t, b, lead.ID)
		eventually(t, "the timed-out post appears too", func() bool { return len(orderPosts(e, tn.group.ID)) == 2 })
		var copyPost, recorded faketelegram.Message
		for _, m := range orderPosts(e, tn.group.ID) {
			if m.MessageID == order.MessageID {
				recorded = m
			} else {
				copyPost = m
			}
		}
		if copyPost.MessageID == 0 || recorded.MessageID == 0 {
			t.Fatalf("posts %+v, recorded message %d", orderPosts(e, tn.group.ID), order.MessageID)
		}

		// amoCRM applies the deal update and the note but answers after the timeout.
		e.amo.InjectFault(fakeamocrm.Fault{Pattern: "PATCH /api/v4/leads/*", Delay: 3 * time.Second})
		e.amo.InjectFault(fakeamocrm.Fault{Pattern: "POST /api/v4/leads/notes", Delay: 3 * time.Second})

		// The executor takes the order on the copy; another presses the recorded post.
		winner := e.tg.AddUser("Копия", "", "copy_taker")
		late := e.tg.AddUser("Опоздавший", "", "late_one")
		qw, err := e.tg.PressButton(tn.group.ID, copyPost.MessageID, winner.ID, buttonsOf(t, copyPost)[1].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the winner answered", func() bool { return len(e.tg.CallbackAnswers(qw)) == 1 })
		if a := e.tg.CallbackAnswers(qw)[0]; !strings.Contains(a.Text, "Заказ ваш") {
			t.Fatalf("winner's answer: %q", a.Text)
		}
		both := func() bool {
			for _, id := range []int{copyPost.MessageID, recorded.MessageID} {
				m, _ := e.tg.Message(tn.group.ID, id)
				if !strings.Contains(m.Text, "@"+winner.Username) || len(buttonsOf(t, m)) != 0 {
					return false
				}
			}
			return true
		}
		eventually(t, "both posts name the executor and lost their buttons", both)
		if q, _ := e.tg.PressButton(tn.group.ID, recorded.MessageID, late.ID, buttonsOf(t, recorded)[1].CallbackData); q != "" {
			t.Fatal("the recorded post still has buttons")
		}

		wroteBackOnce(t, e, b, tn.acc.ID, lead.ID)
		patches := e.amo.Requests(fakeamocrm.RequestFilter{AccountID: tn.acc.ID, Method: "PATCH", Path: "/api/v4/leads/*"})
		notePosts := e.amo.Requests(fakeamocrm.RequestFilter{AccountID: tn.acc.ID, Method: "POST", Path: "/api/v4/leads/notes"})
		if len(patches) != 1 || len(notePosts) != 1 {
			t.Fatalf("%d PATCHes and %d note POSTs after timeouts, want 1 and 1", len(patches), len(notePosts))
		}
		if !strings.Contains(e.logs.String(), "Client.Timeout") && !strings.Contains(e.logs.String(), "deadline exceeded") {
			t.Fatal("no timeout was logged: the faults did not bite")
		}
		if n := len(orderPosts(e, tn.group.ID)); n != 2 {
			t.Fatalf("%d posts, want the post and its one copy", n)
		}
	})
}

// TestWorkResumesAfterReinstall: the account's tokens are revoked while an
// order is taken and another deal waits to be posted. The jobs stop (a
// revoked account is not retried), the account shows as revoked, and once
// the admin installs the widget again the reconciler finishes the work:
// one post, one deal update and one note.
func TestWorkResumesAfterReinstall(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		tn := newTenant(t, e, b, 49300000, "resume", "ru", 9300)

		l1 := tn.newLead(t, e, "Возьмут при отозванном доступе")
		tn.toSearch(t, e, l1.ID)
		o1 := tn.postedOrder(t, b, l1.ID)
		waitJobsIdle(t, b)

		e.amo.RevokeTokens(tn.acc.ID)
		post1, _ := e.tg.Message(tn.group.ID, o1.MessageID)
		taker := e.tg.AddUser("При отзыве", "", "revoked_taker")
		q, err := e.tg.PressButton(tn.group.ID, post1.MessageID, taker.ID, buttonsOf(t, post1)[1].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the take answered", func() bool { return len(e.tg.CallbackAnswers(q)) == 1 })
		// A deal moved meanwhile: its webhook is accepted, but the deal cannot be read.
		l2 := tn.newLead(t, e, "Ждёт переустановки")
		tn.toSearch(t, e, l2.ID)
		waitJobsIdle(t, b)
		if a, _ := b.Store().Account(ctx, tn.acc.ID); a.Status != dispatch.AccountRevoked {
			t.Fatalf("account status %s, want revoked", a.Status)
		}
		if n := len(backendLeadUpdates(e, tn.acc.ID, l1.ID)); n != 0 {
			t.Fatalf("%d deal updates with revoked tokens", n)
		}
		refreshes := e.amo.RefreshAttempts(tn.acc.ID)
		if err := b.Flow().Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		waitJobsIdle(t, b)
		if e.amo.RefreshAttempts(tn.acc.ID) != refreshes {
			t.Fatal("a revoked account's tokens were tried again")
		}

		install(t, e, b, tn.acc.ID)
		if err := b.Flow().Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		wroteBackOnce(t, e, b, tn.acc.ID, l1.ID)
		tn.postedOrder(t, b, l2.ID)
		// Another pass finds nothing left to do.
		if err := b.Flow().Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		wroteBackOnce(t, e, b, tn.acc.ID, l1.ID)
		if n := len(orderPosts(e, tn.group.ID)); n != 2 {
			t.Fatalf("%d posts, want 2", n)
		}
	})
}

// TestMinuteLongOutage: Telegram down for a minute, amoCRM for its first
// half, while deals arrive at the dispatcher binary. Webhooks are still accepted, retries back off
// instead of hammering the dead services, and everything is done once after
// they return. The two databases run in parallel: the test waits on real
// back-off.
func TestMinuteLongOutage(t *testing.T) {
	const outage = time.Minute
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		t.Parallel()
		ctx := context.Background()
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		proxy := e.newProxy(t)
		p := e.startProc(t, "dispatcher", nil)
		proxy.set(p)
		db := dbtest.OpenAt(t, e.dbURL, e.dir, nil)
		tn := setupProcTenant(t, e, db, 49400000, "longoutage", 1)
		pp := tn.pipes[0]
		var leads []fakeamocrm.Lead
		for i := 0; i < 3; i++ {
			leads = append(leads, tn.newLead(t, e, pp, fmt.Sprintf("Сбой на минуту %d", i)))
		}
		before := len(e.amo.Requests(fakeamocrm.RequestFilter{AccountID: tn.acc.ID}))

		e.tg.SetDown(true)
		e.amo.InjectFault(fakeamocrm.Fault{Pattern: "*", Times: -1, Status: 503})
		began := time.Now()
		for _, l := range leads {
			if err := e.amo.MoveLead(tn.acc.ID, l.ID, pp.search); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "webhooks accepted during the outage", func() bool {
			ok := 0
			for _, d := range e.amo.Deliveries(tn.acc.ID) {
				if d.StatusCode == 200 {
					ok++
				}
			}
			return ok >= len(leads)
		})
		// amoCRM returns halfway: the deals are read, and their posts meet
		// Telegram still down.
		time.Sleep(outage/2 - time.Since(began))
		amoCalls := len(e.amo.Requests(fakeamocrm.RequestFilter{AccountID: tn.acc.ID})) - before
		e.amo.ClearFaults()
		time.Sleep(outage - time.Since(began))
		sends := len(e.tg.Calls("sendMessage"))
		e.tg.SetDown(false)

		// Capped back-off: the last try before Telegram's return was at most
		// about half the outage ago, so all is done within that much more.
		deadline := time.Now().Add(outage/2 + 15*time.Second)
		for len(orderPosts(e, pp.group.ID)) < len(leads) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d deals posted %v after the outage", len(orderPosts(e, pp.group.ID)), len(leads), time.Since(began)-outage)
			}
			time.Sleep(100 * time.Millisecond)
		}
		eventually(t, "jobs idle", func() bool { return countJobs(t, db, pendingStates) == 0 })
		t.Logf("%s: %d amoCRM requests in its %v outage, %d sendMessage calls in Telegram's %v; all posted %v after it",
			kind, amoCalls, outage/2, sends, outage, time.Since(began)-outage)
		// Each deal's two webhook events (status and update) make two
		// dispatch jobs, each tried at 0, 1, 3, 7, 15 s (and a repeat inside
		// each try): about 60 requests. Retrying without back-off would be
		// hundreds; the bounds leave room for slow machines, not for that.
		if amoCalls > 100 {
			t.Fatalf("%d amoCRM requests in a %v outage: retries do not back off", amoCalls, outage/2)
		}
		if sends > 3*8 {
			t.Fatalf("%d sendMessage calls for 3 posts in a %v outage: retries do not back off", sends, outage)
		}
		if n := len(orderPosts(e, pp.group.ID)); n != len(leads) {
			t.Fatalf("%d posts, want %d", n, len(leads))
		}
		for _, l := range leads {
			if _, err := db.ActiveOrder(ctx, tn.acc.ID, l.ID); err != nil {
				t.Fatalf("deal %d: %v", l.ID, err)
			}
		}
	})
}
