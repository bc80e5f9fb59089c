package telegram

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// book sends to chat as often as the pace allows, advancing the clock by
// each wait, and returns the send times relative to the start.
func book(t *testing.T, m *memLedger, c *clock, chat int64, n int) []time.Duration {
	t.Helper()
	start := c.t
	var at []time.Duration
	for len(at) < n {
		w, err := m.Book(context.Background(), chat, windowsFor(chat))
		if err != nil {
			t.Fatal(err)
		}
		if w > 0 {
			c.t = c.t.Add(w)
			continue
		}
		at = append(at, c.t.Sub(start))
	}
	return at
}

// A group gets a burst of three, then one a second, and never a 21st send
// within its window: a token bucket would have let one through sooner.
func TestGroupPace(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	m := newMemLedger(c.now)
	at := book(t, m, c, -100, 21)
	if at[2] != 0 || at[3] < 3*time.Second || at[3] > chatBurstSpan {
		t.Fatalf("sends at %v: want a burst of three, then the fourth after about 3 s", at[:5])
	}
	for i := 3; i < len(at); i++ {
		if span := i - 3; i+chatBurst < len(at) && at[i+chatBurst]-at[i] < chatBurst*time.Second {
			t.Fatalf("%d sends within %v after send %d", chatBurst+1, at[i+chatBurst]-at[i], span)
		}
	}
	if at[20]-at[0] < time.Minute {
		t.Fatalf("21st send %v after the first, want a minute at least", at[20]-at[0])
	}
	if w, _ := m.Book(context.Background(), -200, windowsFor(-200)); w != 0 {
		t.Fatalf("another group waits %v: groups have their own windows", w)
	}
	// A private chat: one a second, no burst.
	if at := book(t, m, c, 7, 3); at[1] < time.Second || at[2]-at[1] < time.Second {
		t.Fatalf("private sends at %v, want a second apart", at)
	}
}

// A hold (Telegram's retry_after) stops its chat, or every chat for scope 0.
func TestPaceHolds(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	m := newMemLedger(c.now)
	ctx := context.Background()
	_ = m.Hold(ctx, -100, 10*time.Second)
	if w, _ := m.Book(ctx, -100, windowsFor(-100)); w != 10*time.Second {
		t.Fatalf("held chat waits %v, want 10 s", w)
	}
	if w, _ := m.Book(ctx, -200, windowsFor(-200)); w != 0 {
		t.Fatalf("another chat waits %v", w)
	}
	_ = m.Hold(ctx, 0, 3*time.Second)
	if w, _ := m.Book(ctx, -300, windowsFor(-300)); w != 3*time.Second {
		t.Fatalf("every chat held: waits %v, want 3 s", w)
	}
}

// No caller sleeps in the pacer for more than about a second: a later turn
// comes back at once as a retry-after, so a job can give its worker back.
func TestPaceNeverHoldsACallerLong(t *testing.T) {
	p := newPacer(nil, slog.New(slog.DiscardHandler))
	ctx := context.Background() // no deadline: only the pacer's own bound
	_ = p.mem.Hold(ctx, -300, 30*time.Second)
	start := time.Now()
	err := p.wait(ctx, -300)
	var ra *RetryAfterError
	if !errors.As(err, &ra) || ra.After < 29*time.Second {
		t.Fatalf("send into a 30 s hold without a deadline: %v, want a retry after about 30 s", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("the refusal took %v, want at once", d)
	}
	if err := p.wait(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(ctx, 7); err != nil { // waits for the private chat's second
		t.Fatal(err)
	}
}

// A ledger that fails leaves the process pacing itself.
func TestPaceFallsBackToThisProcess(t *testing.T) {
	p := newPacer(failingLedger{}, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for range chatBurst {
		if err := p.wait(ctx, -100); err != nil {
			t.Fatal(err)
		}
	}
	var ra *RetryAfterError
	if err := p.wait(ctx, -100); !errors.As(err, &ra) || ra.After < 2*time.Second {
		t.Fatalf("4th send at once with a failing ledger: %v, want a retry after the burst's span", err)
	}
}

type failingLedger struct{}

func (failingLedger) Book(context.Context, int64, []Window) (time.Duration, error) {
	return 0, errors.New("database unavailable")
}
func (failingLedger) Hold(context.Context, int64, time.Duration) error {
	return errors.New("database unavailable")
}
