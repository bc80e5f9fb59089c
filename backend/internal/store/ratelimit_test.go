package store_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
)

// Slots booked at once by many callers (processes, in production) come out
// one gap apart; a hold pushes the next slot past it; accounts do not share.
func TestAmoRateLimiter(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		db := dbtest.Open(t, kind, nil)
		l := db.AmoRateLimiter()
		if kind == dbtest.SQLite {
			if l != nil {
				t.Fatal("SQLite serves one process; it needs no shared limiter")
			}
			return
		}
		ctx := context.Background()
		// Reserve only says how long to wait, so a long gap costs the test
		// nothing and leaves room for the calls' own timing under load.
		const gap = time.Second
		waits := make([]time.Duration, 10)
		var wg sync.WaitGroup
		for i := range waits {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w, _, err := l.Reserve(ctx, 7, gap, 0)
				if err != nil {
					t.Error(err)
				}
				waits[i] = w
			}()
		}
		wg.Wait()
		slices.Sort(waits)
		if waits[0] > gap/2 {
			t.Errorf("the first slot is %v away, want about now", waits[0])
		}
		for i := 1; i < len(waits); i++ {
			// Each booking is a gap after the one before; the time between
			// the calls themselves shortens the difference of their waits.
			if d := waits[i] - waits[i-1]; d < gap/2 || d > gap+50*time.Millisecond {
				t.Fatalf("slots %v apart, want %v: %v", d, gap, waits)
			}
		}
		if w, _, err := l.Reserve(ctx, 8, gap, 0); err != nil || w > gap/2 {
			t.Fatalf("another account waits %v (%v)", w, err)
		}

		if err := l.Hold(ctx, 9, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if w, _, err := l.Reserve(ctx, 9, gap, 0); err != nil || w < 19*time.Second || w > 20*time.Second {
			t.Fatalf("after a 20 s hold the next slot is %v away (%v)", w, err)
		}
		// A shorter hold does not pull an existing slot nearer.
		if err := l.Hold(ctx, 9, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if w, _, _ := l.Reserve(ctx, 9, gap, 0); w < 20*time.Second {
			t.Fatalf("a short hold pulled the next slot in to %v", w)
		}
		// A bounded caller is told when the next slot comes and books none:
		// the next unbounded booking is one gap after the last, not two.
		w, booked, err := l.Reserve(ctx, 9, gap, time.Second)
		if err != nil || booked || w < 20*time.Second {
			t.Fatalf("bounded reserve of a slot 21 s away: %v booked=%v (%v), want refused", w, booked, err)
		}
		if w2, _, _ := l.Reserve(ctx, 9, gap, 0); w2 > w+gap+time.Second {
			t.Fatalf("after a refused reserve the next slot is %v away, want about %v", w2, w+gap)
		}
		if _, booked, err := l.Reserve(ctx, 10, gap, time.Second); err != nil || !booked {
			t.Fatalf("bounded reserve of a free slot: booked=%v (%v)", booked, err)
		}
	})
}
