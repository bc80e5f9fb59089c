package telegram

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Window allows at most N sends to Scope (a chat id; 0: every chat) in any
// span of Per. A sliding window, not a token bucket: a bucket with a burst
// of n grants n at once and n more while it refills, up to 2n in one window,
// which Telegram answers with 429.
type Window struct {
	Scope int64
	N     int
	Per   time.Duration
}

// PaceLedger keeps the bot's sends and Telegram's holds where every process,
// and the next start, sees them (the database).
type PaceLedger interface {
	// Book records a send to chatID now if no hold of the chat (or of every
	// chat) is on and every window allows one more, and returns 0; otherwise
	// it records nothing and returns how long until the first that might.
	Book(ctx context.Context, chatID int64, windows []Window) (time.Duration, error)
	// Hold stops sends to scope (a chat id; 0: every chat) for d.
	Hold(ctx context.Context, scope int64, d time.Duration) error
}

// Telegram's documented pace: about one message a second per chat (short
// bursts allowed), 20 a minute per group, about 30 a second overall. The
// margins cover the difference between leaving here and arriving there.
const (
	groupPerWindow = 20
	groupWindow    = time.Minute + time.Second
	chatBurst      = 3
	chatBurstSpan  = chatBurst*time.Second + 150*time.Millisecond
	privateWindow  = time.Second + 50*time.Millisecond
	overallPerSec  = 30
	overallWindow  = time.Second + 50*time.Millisecond
	// A caller waits here for at most maxPaceWait: a later turn is a
	// RetryAfterError, so a job gives its worker back and is snoozed until
	// then instead of sleeping on a worker another account's post needs.
	maxPaceWait = privateWindow + 150*time.Millisecond // a private chat's next second waits
)

// windowsFor is the pace of sends to chatID (groups have negative ids).
func windowsFor(chatID int64) []Window {
	overall := Window{Scope: 0, N: overallPerSec, Per: overallWindow}
	if chatID > 0 {
		return []Window{{Scope: chatID, N: 1, Per: privateWindow}, overall}
	}
	return []Window{{Scope: chatID, N: groupPerWindow, Per: groupWindow}, {Scope: chatID, N: chatBurst, Per: chatBurstSpan}, overall}
}

// pacer keeps the bot inside Telegram's pace. With a ledger (the database)
// the pace is shared by replicas and survives restarts; without one, or
// while it fails, this process paces itself.
type pacer struct {
	ledger PaceLedger // nil: this process only
	mem    *memLedger
	log    *slog.Logger
}

func newPacer(ledger PaceLedger, log *slog.Logger) *pacer {
	return &pacer{ledger: ledger, mem: newMemLedger(time.Now), log: log}
}

func (p *pacer) book(ctx context.Context, chatID int64) (time.Duration, error) {
	if p.ledger != nil {
		d, err := p.ledger.Book(ctx, chatID, windowsFor(chatID))
		if err == nil {
			return d, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		p.log.Warn("telegram pace: shared ledger unavailable, pacing this process only", "err", err)
	}
	return p.mem.Book(ctx, chatID, windowsFor(chatID))
}

// wait returns once a send to chatID is booked, or at once with a
// RetryAfterError when the turn is further than maxPaceWait (or ctx's
// deadline) away.
func (p *pacer) wait(ctx context.Context, chatID int64) error {
	return p.waitUpTo(ctx, chatID, maxPaceWait)
}

// waitUpTo is wait with another bound, for callers that are not jobs.
func (p *pacer) waitUpTo(ctx context.Context, chatID int64, bound time.Duration) error {
	for {
		d, err := p.book(ctx, chatID)
		if err != nil || d <= 0 {
			return err
		}
		if dl, ok := ctx.Deadline(); d > bound || ok && time.Until(dl) < d {
			return fmt.Errorf("telegram pace: %w", &RetryAfterError{After: d})
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// hold pauses every send to scope (a chat, or 0: every chat) for d, here and,
// through the ledger, in every process.
func (p *pacer) hold(ctx context.Context, scope int64, d time.Duration) {
	_ = p.mem.Hold(ctx, scope, d)
	if p.ledger != nil {
		if err := p.ledger.Hold(ctx, scope, d); err != nil {
			p.log.Warn("telegram pace: hold not shared", "scope", scope, "err", err)
		}
	}
}

// memLedger is a PaceLedger in memory: one process's sends and holds.
type memLedger struct {
	now   func() time.Time
	mu    sync.Mutex
	sends map[int64][]time.Time // per chat, and every send under 0; oldest first
	holds map[int64]time.Time
}

func newMemLedger(now func() time.Time) *memLedger {
	return &memLedger{now: now, sends: map[int64][]time.Time{}, holds: map[int64]time.Time{}}
}

// keepLast bounds what a scope keeps: no window looks further back.
const keepLast = 64

func (m *memLedger) Book(_ context.Context, chatID int64, windows []Window) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var wait time.Duration
	for _, s := range []int64{0, chatID} {
		wait = max(wait, m.holds[s].Sub(now))
	}
	for _, w := range windows {
		ts := m.sends[w.Scope]
		var in int
		for i := len(ts) - 1; i >= 0 && now.Sub(ts[i]) < w.Per; i-- {
			in++
		}
		if in >= w.N {
			wait = max(wait, ts[len(ts)-w.N].Add(w.Per).Sub(now))
		}
	}
	if wait > 0 {
		return wait, nil
	}
	for _, s := range []int64{0, chatID} {
		ts := append(m.sends[s], now)
		if len(ts) > keepLast {
			ts = ts[len(ts)-keepLast:]
		}
		m.sends[s] = ts
	}
	return 0, nil
}

func (m *memLedger) Hold(_ context.Context, scope int64, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if until := m.now().Add(d); until.After(m.holds[scope]) {
		m.holds[scope] = until
	}
	return nil
}
