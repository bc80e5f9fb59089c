package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

// runRuntimeLoad prints the runtime rows of docs/speed.md, each with the
// baseline it is compared to measured in the same run: fairness beside a
// bulk, 200 orders into 10 groups under Telegram's flood control, a stop
// with a backlog.
func runRuntimeLoad(b *testing.B, kind dbtest.Kind) {
	e := newEnv(b, kind)
	be := e.start(quietLogs)
	ctx := context.Background()
	bulk := newTenant(b, e, be, 81000000, "rtbulk", "ru", 8100)
	other := newTenant(b, e, be, 82000000, "rtother", "ru", 8200)
	e.tg.EnableFloodControl(faketelegram.DefaultFloodLimits())

	// 1. Another account's post beside one account's bulk of 60.
	postOf := func(name string) time.Duration {
		l := other.newLead(b, e, name)
		start := time.Now()
		other.toSearch(b, e, l.ID)
		other.postedOrder(b, be, l.ID)
		return time.Since(start)
	}
	var idle []time.Duration
	for i := range 3 {
		idle = append(idle, postOf(fmt.Sprintf("Idle %d", i)))
		time.Sleep(1100 * time.Millisecond) // the group's one a second
	}
	var leads []fakeamocrm.Lead
	for i := range 60 {
		leads = append(leads, bulk.newLead(b, e, fmt.Sprintf("Bulk %d", i)))
	}
	if err := e.amo.WaitDeliveries(10 * time.Second); err != nil {
		b.Fatal(err)
	}
	waitJobsIdle(b, be)
	moveSilently(b, e, bulk.acc.ID, leads, bulk.statusByIndex(1))
	status, body := post(b, e.amo.Webhooks(bulk.acc.ID)[0].Destination, "application/x-www-form-urlencoded",
		bulkStatusHook(bulk.acc.ID, "rtbulk", leads, bulk.pipeline, bulk.statusByIndex(0), bulk.statusByIndex(1)))
	if status != http.StatusOK {
		b.Fatalf("bulk webhook: HTTP %d: %s", status, body)
	}
	eventually(b, "the bulk's first posts", func() bool { return len(orderPosts(e, bulk.group.ID)) >= 5 })
	beside := postOf("Beside the bulk")
	fmt.Printf("another account's post beside a bulk of 60: %s (idle p50 %s; target ≤ max(3 s, 3× idle) = %s)\n",
		beside.Round(time.Millisecond), pct(idle, 50), max(3*time.Second, 3*pct(idle, 50)))

	// 2. 200 orders into 10 groups, 20 each, under Telegram's limits. The
	// fastest the fake allows a group's 20: bursts of 3 every 3 s, the last
	// at 18 s.
	const groups, perGroup = 10, 20
	var many []fakeamocrm.Lead
	var chats []int64
	for g := range groups {
		group := e.tg.NewGroup(fmt.Sprintf("Bench burst %d", g))
		e.tg.AddBotToGroup(group.ID, bulk.boss, bulk.linkCode(b, be))
		eventually(b, "group linked", func() bool { c, err := be.Store().Chat(ctx, group.ID); return err == nil && c.Active })
		chats = append(chats, group.ID)
		for i := range perGroup {
			l := bulk.newLead(b, e, fmt.Sprintf("Burst %d-%d", g, i))
			if err := be.Store().SetDealTarget(ctx, bulk.acc.ID, l.ID, group.ID); err != nil {
				b.Fatal(err)
			}
			many = append(many, l)
		}
	}
	// Each group's link confirmation is one of its minute's 20: start the
	// burst after that minute, as a fresh group would see it.
	time.Sleep(62 * time.Second)
	floodBefore := floodAnswers(e)
	moveSilently(b, e, bulk.acc.ID, many, bulk.statusByIndex(1))
	began := time.Now()
	status, body = post(b, e.amo.Webhooks(bulk.acc.ID)[0].Destination, "application/x-www-form-urlencoded",
		bulkStatusHook(bulk.acc.ID, "rtbulk", many, bulk.pipeline, bulk.statusByIndex(0), bulk.statusByIndex(1)))
	if status != http.StatusOK {
		b.Fatalf("burst webhook: HTTP %d: %s", status, body)
	}
	var last time.Time
	eventuallyFor(b, 3*time.Minute, "200 orders posted", func() bool {
		n := 0
		for _, c := range chats {
			posts := orderPosts(e, c)
			n += len(posts)
		}
		return n >= groups*perGroup
	})
	for _, c := range e.tg.Calls("sendMessage") {
		if id, _ := c.Int("chat_id"); c.OK && slices.Contains(chats, id) && c.Time.After(last) {
			last = c.Time
		}
	}
	minimum := 18 * time.Second
	took := last.Sub(began)
	fmt.Printf("200 orders into 10 groups: last post %s after the webhook (%.2f× the %s the limits allow), %d × 429\n",
		took.Round(time.Millisecond), took.Seconds()/minimum.Seconds(), minimum, floodAnswers(e)-floodBefore)

	// 3. Stop with a backlog: what is left of the bulk (40 posts waiting for
	// the group's next minute) and a fresh bulk of 60 being dispatched.
	var backlog []fakeamocrm.Lead
	for i := range 60 {
		backlog = append(backlog, other.newLead(b, e, fmt.Sprintf("Backlog %d", i)))
	}
	moveSilently(b, e, other.acc.ID, backlog, other.statusByIndex(1))
	status, body = post(b, e.amo.Webhooks(other.acc.ID)[0].Destination, "application/x-www-form-urlencoded",
		bulkStatusHook(other.acc.ID, "rtother", backlog, other.pipeline, other.statusByIndex(0), other.statusByIndex(1)))
	if status != http.StatusOK {
		b.Fatalf("backlog webhook: HTTP %d: %s", status, body)
	}
	time.Sleep(300 * time.Millisecond)
	pending, _ := be.Flow().PendingJobs(ctx)
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	began = time.Now()
	err := be.Shutdown(stopCtx)
	cancel()
	stopped := time.Since(began)
	be2 := e.start(quietLogs)
	eventuallyFor(b, time.Minute, "the backlog's orders after the restart", func() bool {
		for _, l := range backlog {
			if _, err := be2.Store().ActiveOrder(ctx, other.acc.ID, l.ID); err != nil {
				return false
			}
		}
		return true
	})
	fmt.Printf("stop with a backlog (%d jobs pending): %s (err %v; target ≤ 5 s); every deal of the backlog has its order after the restart\n",
		pending, stopped.Round(time.Millisecond), err)
}

// baselineInserts is the speed of a bare Go program storing each webhook
// with one durable INSERT (its own commit) from clients concurrent clients,
// on the same database: the yardstick of the intake row.
func baselineInserts(b *testing.B, e *env, clients, total int) float64 {
	db := dbtest.OpenAt(b, e.dbURL, e.dir, nil).SQL()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS bench_baseline (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("x", 600) // about a stage-change webhook's size
	insert := `INSERT INTO bench_baseline (id, body) VALUES (?, ?)`
	if e.kind == dbtest.Postgres {
		insert = `INSERT INTO bench_baseline (id, body) VALUES ($1, $2)`
	}
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	begin := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := db.ExecContext(ctx, insert, i, body); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(begin).Seconds()
}
