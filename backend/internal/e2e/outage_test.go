package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// TestOutagesRecover: Telegram answering 5xx and amoCRM answering 5xx and 429
// for a while delay the work but lose and duplicate nothing, and no amoCRM
// request goes out before the Retry-After it was given.
func TestOutagesRecover(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		tn := newTenant(t, e, b, 49000000, "outage", "ru", 9000)
		searching := tn.statusByIndex(1)

		// Telegram is down for the first two posting attempts.
		e.tg.FailNext("sendMessage", 2, 502, "Bad Gateway", 0)
		l1 := tn.newLead(t, e, "Во время сбоя Telegram")
		if err := e.amo.MoveLead(tn.acc.ID, l1.ID, searching); err != nil {
			t.Fatal(err)
		}
		eventually(t, "posted after the outage", func() bool { return len(orderPosts(e, tn.group.ID)) == 1 })

		// amoCRM answers 503 three times, then 429 with Retry-After: 1.
		e.amo.FailNext("GET /api/v4/leads/*", 3, 503)
		e.amo.FailNext("GET /api/v4/leads/*", 1, 429)
		l2 := tn.newLead(t, e, "Во время сбоя amoCRM")
		if err := e.amo.MoveLead(tn.acc.ID, l2.ID, searching); err != nil {
			t.Fatal(err)
		}
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
