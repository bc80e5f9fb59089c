package telegram

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A group gets 20 sends at once, then none until the window has passed: a
// token bucket would have let a 21st through three seconds later.
func TestGroupWindowNeverCrossesTwentyAMinute(t *testing.T) {
	p := newPacer()
	ctx := context.Background()
	for i := range 20 {
		if err := p.wait(ctx, -100); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := p.wait(short, -100)
	var ra *RetryAfterError
	if !errors.As(err, &ra) || ra.After < time.Minute-5*time.Second || ra.After > time.Minute+time.Second {
		t.Fatalf("21st send in a minute: %v, want a retry after about a minute", err)
	}
	if err := p.wait(short, -200); err != nil {
		t.Fatalf("another group has its own window: %v", err)
	}
	if err := p.wait(short, 7); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(short, 7); err != nil { // waits for the private chat's second
		t.Fatal(err)
	}
}

// No caller sleeps in the pacer for more than about a second: a later turn
// comes back at once as a retry-after, so a job can give its worker back.
func TestPaceNeverHoldsACallerLong(t *testing.T) {
	p := newPacer()
	ctx := context.Background() // no deadline: only the pacer's own bound
	for range 20 {
		if err := p.wait(ctx, -300); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err := p.wait(ctx, -300)
	var ra *RetryAfterError
	if !errors.As(err, &ra) || ra.After < 30*time.Second {
		t.Fatalf("21st send in a minute without a deadline: %v, want a retry after most of a minute", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("the refusal took %v, want at once", d)
	}
}
