package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// A flood on one account's webhook URL is refused above the account's quota
// with 429 and Retry-After (the quota here is 5 a second, bursts of 50: under
// -race on SQLite this machine stores only a few dozen webhooks a second, not
// enough to exhaust the default 20 a second; service.TestWebhookQuota checks
// the default). Another account's webhook sent during the flood is stored at
// once (200) and its deal posted; a deal whose only webhook was refused is
// still posted, by the reconciler.
func TestWebhookFloodRefusedAndCaught(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		b := e.start(func(v map[string]string) { v["RECONCILE_INTERVAL"] = "10s"; v["WEBHOOK_QUOTA"] = "5" })
		flooded := newTenant(t, e, b, 75000000, "flooded", "ru", 7500)
		calm := newTenant(t, e, b, 76000000, "calm", "ru", 7600)

		// Deals moved into the search whose webhooks the test sends itself.
		var refusedCandidates []fakeamocrm.Lead
		for i := range 5 {
			refusedCandidates = append(refusedCandidates, flooded.newLead(t, e, fmt.Sprintf("Отказ %d", i)))
		}
		calmLead := calm.newLead(t, e, "Спокойный")
		moveSilently(t, e, flooded.acc.ID, refusedCandidates, flooded.statusByIndex(1))
		moveSilently(t, e, calm.acc.ID, []fakeamocrm.Lead{calmLead}, calm.statusByIndex(1))
		waitJobsIdle(t, b)

		// The flood: stage changes outside the search (cheap to work off),
		// from 8 clients, each at most 100 a second: far above the quota,
		// without the load generator itself taking this machine's 2 cores
		// from the backend under test.
		hook := e.amo.Webhooks(flooded.acc.ID)[0].Destination
		filler := func(i int) string {
			return url.Values{
				"leads[status][0][id]":            {fmt.Sprint(990000 + i)},
				"leads[status][0][status_id]":     {fmt.Sprint(flooded.statusByIndex(3))},
				"leads[status][0][pipeline_id]":   {fmt.Sprint(flooded.pipeline)},
				"leads[status][0][old_status_id]": {fmt.Sprint(flooded.statusByIndex(0))},
				"account[id]":                     {fmt.Sprint(flooded.acc.ID)},
			}.Encode()
		}
		var stored, refused, badRetry atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var next atomic.Int64
		floodBegan := time.Now()
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					resp, err := http.Post(hook, "application/x-www-form-urlencoded", strings.NewReader(filler(int(next.Add(1)))))
					if err != nil {
						t.Errorf("flood: %v", err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch status, h := resp.StatusCode, resp.Header; status {
					case http.StatusOK:
						stored.Add(1)
					case http.StatusTooManyRequests:
						refused.Add(1)
						if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 {
							badRetry.Add(1)
						}
					default:
						t.Errorf("flood: HTTP %d", status)
						return
					}
				}
			}()
		}
		stopFlood := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer stopFlood()
		eventuallyFor(t, 60*time.Second, "the flood refused", func() bool { return refused.Load() >= 100 })

		// Another account is not held up.
		began := time.Now()
		status, body := post(t, e.amo.Webhooks(calm.acc.ID)[0].Destination, "application/x-www-form-urlencoded",
			bulkStatusHook(calm.acc.ID, "calm", []fakeamocrm.Lead{calmLead}, calm.pipeline, calm.statusByIndex(0), calm.statusByIndex(1)))
		if status != http.StatusOK {
			t.Fatalf("another account's webhook during the flood: HTTP %d: %s", status, body)
		}
		eventuallyFor(t, 30*time.Second, "another account's deal posted during the flood", func() bool {
			o, err := b.Store().ActiveOrder(t.Context(), calm.acc.ID, calmLead.ID)
			return err == nil && o.MessageID != 0
		})
		t.Logf("another account's deal posted %v after its webhook, during the flood", time.Since(began).Round(time.Millisecond))

		// A real deal's webhook in the middle of the flood is refused too.
		var lost []fakeamocrm.Lead
		for _, l := range refusedCandidates {
			status, _ := post(t, hook, "application/x-www-form-urlencoded",
				bulkStatusHook(flooded.acc.ID, "flooded", []fakeamocrm.Lead{l}, flooded.pipeline, flooded.statusByIndex(0), flooded.statusByIndex(1)))
			if status == http.StatusTooManyRequests {
				lost = append(lost, l)
				break
			}
		}
		stopFlood()
		t.Logf("flood: %d stored, %d refused", stored.Load(), refused.Load())
		if len(lost) == 0 {
			t.Fatal("no deal's webhook was refused during the flood")
		}
		if n := badRetry.Load(); n > 0 {
			t.Errorf("%d refusals without a Retry-After of at least a second", n)
		}
		// The burst, the refill over the flood's length, and nothing near what was sent.
		if s := stored.Load(); s > 50+5*int64(time.Since(floodBegan).Seconds()+1) {
			t.Errorf("the flood stored %d webhooks, beyond the quota", s)
		}

		// The reconciler catches every deal, the refused one included.
		eventuallyFor(t, 45*time.Second, "the refused deals posted by the reconciler", func() bool {
			for _, l := range refusedCandidates {
				o, err := b.Store().ActiveOrder(t.Context(), flooded.acc.ID, l.ID)
				if err != nil || o.MessageID == 0 {
					return false
				}
			}
			return true
		})
	})
}
