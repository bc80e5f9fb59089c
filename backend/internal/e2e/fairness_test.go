package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// bulkStatusHook is the one webhook amoCRM sends for a bulk edit that moved
// every lead from one stage to another.
func bulkStatusHook(accountID int64, sub string, leads []fakeamocrm.Lead, pipeline, from, to int64) string {
	form := url.Values{"account[id]": {fmt.Sprint(accountID)}, "account[subdomain]": {sub}}
	for i, l := range leads {
		p := fmt.Sprintf("leads[status][%d]", i)
		form.Set(p+"[id]", fmt.Sprint(l.ID))
		form.Set(p+"[status_id]", fmt.Sprint(to))
		form.Set(p+"[pipeline_id]", fmt.Sprint(pipeline))
		form.Set(p+"[old_status_id]", fmt.Sprint(from))
		form.Set(p+"[old_pipeline_id]", fmt.Sprint(pipeline))
	}
	return form.Encode()
}

// procWorld is an env with one dispatcher process behind the public URL, and
// the test's own handle on its database.
func procWorld(t *testing.T, kind dbtest.Kind) (*env, *store.DB, *rrProxy, *proc) {
	t.Helper()
	e := newEnv(t, kind)
	db := dbtest.OpenAt(t, e.dbURL, e.dir, nil)
	proxy := e.newProxy(t)
	p := e.startProc(t, "first", nil)
	proxy.set(p)
	return e, db, proxy, p
}

// sendBulk sends the bulk webhook moving leads of pipeline pp into its search stage.
func sendBulk(t *testing.T, e *env, tn *procTenant, pp procPipe, leads []fakeamocrm.Lead) {
	t.Helper()
	status, body := post(t, e.amo.Webhooks(tn.acc.ID)[0].Destination, "application/x-www-form-urlencoded",
		bulkStatusHook(tn.acc.ID, tn.acc.Subdomain, leads, pp.id, pp.first, pp.search))
	if status != http.StatusOK {
		t.Fatalf("bulk webhook: HTTP %d: %s", status, body)
	}
}

// moveSilently moves deals in the fake without the per-deal webhooks, so the
// test can send amoCRM's single bulk webhook for them instead.
func moveSilently(t testing.TB, e *env, accountID int64, leads []fakeamocrm.Lead, to int64) {
	t.Helper()
	if err := e.amo.WaitDeliveries(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.amo.DropNextDeliveries(2 * len(leads)) // status_lead and update_lead of each move
	for _, l := range leads {
		if err := e.amo.MoveLead(accountID, l.ID, to); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.amo.WaitDeliveries(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// leadReads counts an account's deal reads, single or listed.
func leadReads(e *env, accountID int64) int {
	n := 0
	for _, r := range e.amo.Requests(fakeamocrm.RequestFilter{AccountID: accountID, Method: "GET"}) {
		if strings.HasPrefix(r.Path, "/api/v4/leads") && !strings.HasPrefix(r.Path, "/api/v4/leads/custom_fields") {
			n++
		}
	}
	return n
}

func floodAnswers(e *env) int {
	n := 0
	for _, c := range e.tg.AllCalls() {
		if c.Status == http.StatusTooManyRequests {
			n++
		}
	}
	return n
}

// One account's bulk edit of 60 deals (one webhook listing them all, posted
// into one group at 20 a minute) does not hold up another account: its order
// is posted within max(3 s, 3× its idle latency). The bulk is read in pages,
// not one request per deal, within amoCRM's 7 requests a second, and no send
// meets Telegram's flood control.
func TestBulkDoesNotStarveAnotherAccount(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		b := e.start()
		bulk := newTenant(t, e, b, 71000000, "bulk", "ru", 7100)
		other := newTenant(t, e, b, 72000000, "other", "ru", 7200)
		e.tg.EnableFloodControl(faketelegram.DefaultFloodLimits())
		ctx := context.Background()

		// The other account's idle latency: webhook → post.
		first := other.newLead(t, e, "Один")
		start := time.Now()
		other.toSearch(t, e, first.ID)
		other.postedOrder(t, b, first.ID)
		idle := time.Since(start)

		var leads []fakeamocrm.Lead
		for i := range 60 {
			leads = append(leads, bulk.newLead(t, e, fmt.Sprintf("Массовый %d", i)))
		}
		second := other.newLead(t, e, "Два")
		// The deals' add_lead hooks are worked off first: one arriving after
		// the bulk made its order would read its deal again (a possible close).
		if err := e.amo.WaitDeliveries(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		waitJobsIdle(t, b)
		moveSilently(t, e, bulk.acc.ID, leads, bulk.statusByIndex(1))
		reads := leadReads(e, bulk.acc.ID)
		hitsBefore := e.amo.RateLimitHits(bulk.acc.ID)

		hook := e.amo.Webhooks(bulk.acc.ID)[0].Destination
		status, body := post(t, hook, "application/x-www-form-urlencoded",
			bulkStatusHook(bulk.acc.ID, "bulk", leads, bulk.pipeline, bulk.statusByIndex(0), bulk.statusByIndex(1)))
		if status != http.StatusOK {
			t.Fatalf("bulk webhook: HTTP %d: %s", status, body)
		}
		// Let the bulk's jobs take the workers, as they would in production.
		eventually(t, "the bulk's first posts", func() bool { return len(orderPosts(e, bulk.group.ID)) >= 5 })

		start = time.Now()
		other.toSearch(t, e, second.ID)
		limit := max(3*time.Second, 3*idle)
		eventuallyFor(t, limit+5*time.Second, "the other account's post", func() bool {
			o, err := b.Store().ActiveOrder(ctx, other.acc.ID, second.ID)
			return err == nil && o.MessageID != 0
		})
		waited := time.Since(start)
		t.Logf("other account: idle %v, beside the bulk %v (limit %v)", idle.Round(time.Millisecond), waited.Round(time.Millisecond), limit)
		if waited > limit {
			t.Fatalf("another account's order waited %v beside a bulk of 60, want ≤ %v", waited, limit)
		}

		// The group's minute also holds the bot's link confirmation.
		// At about one a second (the chat's pace), with bursts of three.
		eventuallyFor(t, 45*time.Second, "19 of the bulk posted", func() bool { return len(orderPosts(e, bulk.group.ID)) >= 19 })
		eventually(t, "every deal of the bulk has an order", func() bool {
			for _, l := range leads {
				if _, err := b.Store().ActiveOrder(ctx, bulk.acc.ID, l.ID); err != nil {
					return false
				}
			}
			return true
		})
		if n := leadReads(e, bulk.acc.ID) - reads; n > 3 {
			t.Errorf("the bulk of 60 cost %d deal reads, want a page", n)
		}
		if hits := e.amo.RateLimitHits(bulk.acc.ID) - hitsBefore; hits > 0 {
			t.Errorf("amoCRM answered 429 %d times", hits)
		}
		if n := maxPerSecond(e, bulk.acc.ID); n > 7 {
			t.Errorf("%d amoCRM requests of the bulk's account within one second, want ≤ 7", n)
		}
		if n := floodAnswers(e); n > 0 {
			t.Errorf("Telegram answered 429 %d times", n)
		}
	})
}

// SIGTERM ends a backend with a backlog within 5 s; nothing is lost: after a
// restart every deal of the backlog has its order, and the posts the
// group's pace allows go out.
func TestSigtermWithABacklog(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, db, proxy, p := procWorld(t, kind)
		tns := []*procTenant{setupProcTenant(t, e, db, 73000000, "backlog", 1), setupProcTenant(t, e, db, 74000000, "beside", 1)}
		sizes := []int{60, 15}
		leads := make([][]fakeamocrm.Lead, len(tns))
		for k, tn := range tns {
			for i := range sizes[k] {
				leads[k] = append(leads[k], tn.newLead(t, e, tn.pipes[0], fmt.Sprintf("Очередь %d", i)))
			}
			moveSilently(t, e, tn.acc.ID, leads[k], tn.pipes[0].search)
		}
		for k, tn := range tns {
			sendBulk(t, e, tn, tn.pipes[0], leads[k])
		}
		time.Sleep(500 * time.Millisecond) // work under way
		began := time.Now()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatal("no exit 30 s after SIGTERM")
		}
		took := time.Since(began)
		t.Logf("exited %v after SIGTERM (%v)", took.Round(time.Millisecond), p.err)
		if took > 5*time.Second {
			t.Fatalf("SIGTERM with a backlog took %v, want ≤ 5 s", took)
		}
		if p.err != nil {
			t.Errorf("exit after SIGTERM: %v", p.err)
		}

		p2 := e.startProc(t, "second", nil)
		proxy.set(p2)
		ctx := context.Background()
		eventuallyFor(t, 60*time.Second, "every deal of the backlog has an order", func() bool {
			for k, tn := range tns {
				for _, l := range leads[k] {
					if _, err := db.ActiveOrder(ctx, tn.acc.ID, l.ID); err != nil {
						return false
					}
				}
			}
			return true
		})
		eventuallyFor(t, 60*time.Second, "the deals beside the bulk posted", func() bool {
			return postedCount(ctx, db, tns[1].acc.ID, leads[1]) == len(leads[1])
		})
		// The group's first minute: 20 sends less the bot's link confirmation.
		eventuallyFor(t, 60*time.Second, "the bulk's first minute posted", func() bool {
			return postedCount(ctx, db, tns[0].acc.ID, leads[0]) >= 19
		})
		p2.stop(t)
	})
}

func postedCount(ctx context.Context, db *store.DB, accountID int64, leads []fakeamocrm.Lead) int {
	n := 0
	for _, l := range leads {
		if o, err := db.ActiveOrder(ctx, accountID, l.ID); err == nil && o.MessageID != 0 {
			n++
		}
	}
	return n
}

// With default settings (the real binary, no RECONCILE_INTERVAL), a deal
// whose webhook amoCRM lost is posted within 90 s, and an idle account's
// reconciler passes cost one filtered list request a minute.
func TestLostWebhookCaughtWithDefaults(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		t.Parallel()
		e, db, _, p := procWorld(t, kind)
		tn := setupProcTenant(t, e, db, 75000000+int64(len(kind))*1000000, "lost"+string(kind), 1)
		pp := tn.pipes[0]
		l := tn.newLead(t, e, pp, "Потерянный вебхук")
		// After a reconciler pass has listed the account (the one at
		// start-up, once River elected its leader): the next is the
		// periodic one.
		eventuallyFor(t, 90*time.Second, "a reconciler pass over the account", func() bool {
			for _, r := range e.amo.Requests(fakeamocrm.RequestFilter{AccountID: tn.acc.ID, Method: "GET", Path: "/api/v4/leads"}) {
				if r.Query.Get("filter[statuses][0][status_id]") != "" {
					return true
				}
			}
			return false
		})
		moveSilently(t, e, tn.acc.ID, []fakeamocrm.Lead{l}, pp.search)
		lost := time.Now()
		eventuallyFor(t, 90*time.Second, "the lost deal posted", func() bool {
			o, err := db.ActiveOrder(context.Background(), tn.acc.ID, l.ID)
			return err == nil && o.MessageID != 0
		})
		t.Logf("lost webhook's deal posted %v after the move", time.Since(lost).Round(time.Second))
		if !strings.Contains(p.out.String(), fmt.Sprintf("lead_id=%d", l.ID)) || !strings.Contains(p.out.String(), "reconciler found a deal without an order") {
			t.Fatal("the lost deal was not posted by the reconciler")
		}
		lists := e.amo.Requests(fakeamocrm.RequestFilter{AccountID: tn.acc.ID, Method: "GET", Path: "/api/v4/leads"})
		for _, r := range lists {
			if r.Query.Get("filter[updated_at][from]") == "" && r.Query.Get("filter[id][0]") == "" {
				t.Logf("unfiltered list at %v (a full pass)", r.At.Format(time.TimeOnly))
			}
		}
		p.stop(t)
	})
}

// A backend restarted in the middle of a posting burst keeps Telegram's
// pace: the new process sees in the database what the old one sent, so the fake (enforcing Telegram's limits and scoped retry_after)
// answers no 429.
func TestNoFloodAcrossARestart(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, db, proxy, p := procWorld(t, kind)
		tn := setupProcTenant(t, e, db, 76000000, "flood", 2)
		e.tg.EnableFloodControl(faketelegram.DefaultFloodLimits())
		sizes := []int{30, 10}
		leads := make([][]fakeamocrm.Lead, len(tn.pipes))
		for k, pp := range tn.pipes {
			for i := range sizes[k] {
				leads[k] = append(leads[k], tn.newLead(t, e, pp, fmt.Sprintf("Поток %d-%d", k, i)))
			}
			moveSilently(t, e, tn.acc.ID, leads[k], pp.search)
		}
		for k, pp := range tn.pipes {
			sendBulk(t, e, tn, pp, leads[k])
		}
		ctx := context.Background()
		eventuallyFor(t, 30*time.Second, "the burst under way", func() bool {
			return postedCount(ctx, db, tn.acc.ID, leads[0]) >= 6
		})
		// Stopped, not killed: a killed process's running jobs wait for
		// River's rescuer (70 s); TestCrashExactlyOnce covers kills.
		p.stop(t)
		p2 := e.startProc(t, "second", nil)
		proxy.set(p2)
		// The group's first minute: 20 sends less the bot's link confirmation.
		eventuallyFor(t, 60*time.Second, "the first group's minute posted", func() bool {
			return postedCount(ctx, db, tn.acc.ID, leads[0]) >= 19
		})
		eventuallyFor(t, 60*time.Second, "the second group posted", func() bool {
			return postedCount(ctx, db, tn.acc.ID, leads[1]) == len(leads[1])
		})
		time.Sleep(2 * time.Second) // what the new process would still send
		if n, m := floodAnswers(e), e.tg.SentDuringRetryAfter(); n > 0 || m > 0 {
			t.Fatalf("Telegram answered 429 %d times (%d sends inside a retry_after)", n, m)
		}
		p2.stop(t)
	})
}

// maxPerSecond is the most requests an account's amoCRM saw in any one second.
func maxPerSecond(e *env, accountID int64) int {
	reqs := e.amo.Requests(fakeamocrm.RequestFilter{AccountID: accountID})
	most := 0
	for i := range reqs {
		n := 0
		for j := i; j < len(reqs) && reqs[j].At.Sub(reqs[i].At) < time.Second; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

// An install (code exchange, account read, webhook subscription, pipelines,
// deal fields) keeps to the account's 7 requests a second, counted at the
// fake, also when the admin's first settings read comes right after.
func TestInstallKeepsTheAccountsRate(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		b := e.start()
		for i := range 3 {
			tn := newTenant(t, e, b, 77000000+int64(i)*1000000, fmt.Sprintf("rate%d", i), "ru", 7700+int64(i)*100)
			if n := maxPerSecond(e, tn.acc.ID); n > 7 {
				t.Errorf("account %d: %d amoCRM requests within one second of its install, want ≤ 7", tn.acc.ID, n)
			}
			if hits := e.amo.RateLimitHits(tn.acc.ID); hits > 0 {
				t.Errorf("account %d: amoCRM answered 429 %d times", tn.acc.ID, hits)
			}
		}
	})
}

// Two replicas on one PostgreSQL database post one burst into the same
// groups at the same time: both send, and Telegram's flood control (per
// chat, per group, overall) never answers 429, because every send is booked
// in the shared ledger.
func TestTwoReplicasPostWithoutFlood(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		if kind != dbtest.Postgres {
			t.Logf("LEFT OUT on %s: replicas share one PostgreSQL database", kind)
			t.Skip("replicas need PostgreSQL")
		}
		e := newEnv(t, kind)
		db := dbtest.OpenAt(t, e.dbURL, e.dir, nil)
		proxy := e.newProxy(t)
		webhook := map[string]string{"TELEGRAM_MODE": "webhook"}
		procs := []*proc{e.startProc(t, "replica#0", webhook), e.startProc(t, "replica#1", webhook)}
		proxy.set(procs...)
		tn := setupProcTenant(t, e, db, 78000000, "replicas", 3)
		e.tg.EnableFloodControl(faketelegram.DefaultFloodLimits())
		// Each group's minute holds its link confirmation: 15 posts fit.
		leads := make([][]fakeamocrm.Lead, len(tn.pipes))
		for k, pp := range tn.pipes {
			for i := range 15 {
				leads[k] = append(leads[k], tn.newLead(t, e, pp, fmt.Sprintf("Реплики %d-%d", k, i)))
			}
			moveSilently(t, e, tn.acc.ID, leads[k], pp.search)
		}
		// One bulk webhook per group, through the balancer: each replica
		// reads some, and the post jobs are fetched by both.
		for k, pp := range tn.pipes {
			sendBulk(t, e, tn, pp, leads[k])
		}
		ctx := context.Background()
		eventuallyFor(t, 60*time.Second, "every deal posted", func() bool {
			n := 0
			for k := range leads {
				n += postedCount(ctx, db, tn.acc.ID, leads[k])
			}
			return n == 45
		})
		time.Sleep(2 * time.Second) // anything either replica would still send
		var senders int
		if err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(DISTINCT attempted_by[array_length(attempted_by, 1)])
			FROM river_job WHERE kind = 'post_order' AND state = 'completed'`).Scan(&senders); err != nil {
			t.Fatal(err)
		}
		if senders < 2 {
			t.Fatalf("posts sent by %d replica(s), want both at once", senders)
		}
		if n, m := floodAnswers(e), e.tg.SentDuringRetryAfter(); n > 0 || m > 0 {
			t.Fatalf("Telegram answered 429 %d times (%d sends inside a retry_after) to two replicas posting at once", n, m)
		}
		for _, p := range procs {
			p.stop(t)
		}
	})
}
