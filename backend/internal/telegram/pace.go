package telegram

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pacer keeps the bot inside Telegram's documented pace: about 30 messages a
// second overall, 20 a minute per group and one a second per private chat.
// It only spaces this process's calls; a 429 from Telegram is still honoured
// by the caller (several replicas share one bot).
//
// A caller waits here for at most maxPaceWait: a later turn is a
// RetryAfterError, so a job gives its worker back and is snoozed until then
// instead of sleeping on a worker that another account's post needs.
type pacer struct {
	global *rate.Limiter
	mu     sync.Mutex
	chats  map[int64]*window
}

// Telegram counts a group's messages over the last minute. The second is a
// margin for the difference between leaving here and arriving there.
const (
	groupPerWindow = 20
	groupWindow    = time.Minute + time.Second
	privateWindow  = time.Second + 50*time.Millisecond
	maxPaceWait    = privateWindow + 150*time.Millisecond // a private chat's next second waits
)

func newPacer() *pacer {
	return &pacer{global: rate.NewLimiter(30, 30), chats: map[int64]*window{}}
}

func (p *pacer) wait(ctx context.Context, chatID int64) error {
	p.mu.Lock()
	w, ok := p.chats[chatID]
	if !ok {
		if chatID < 0 {
			w = &window{n: groupPerWindow, per: groupWindow}
		} else {
			w = &window{n: 1, per: privateWindow}
		}
		p.chats[chatID] = w
	}
	p.mu.Unlock()
	if err := w.wait(ctx); err != nil {
		return err
	}
	r := p.global.Reserve()
	if d := r.Delay(); d > maxPaceWait {
		r.Cancel()
		return fmt.Errorf("telegram pace: %w", &RetryAfterError{After: d})
	} else if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			r.Cancel()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// window grants at most n calls in any span of per. A token bucket with a
// burst of n would grant n at once and n more while it refills: up to 2n in
// one window, which Telegram answers with 429.
type window struct {
	n   int
	per time.Duration

	mu    sync.Mutex
	times []time.Time // the last n grants, oldest first
}

func (w *window) wait(ctx context.Context) error {
	for {
		w.mu.Lock()
		now := time.Now()
		if len(w.times) < w.n || now.Sub(w.times[0]) >= w.per {
			if len(w.times) == w.n {
				w.times = w.times[1:]
			}
			w.times = append(w.times, now)
			w.mu.Unlock()
			return nil
		}
		wait := w.times[0].Add(w.per).Sub(now)
		w.mu.Unlock()
		dl, ok := ctx.Deadline()
		if wait > maxPaceWait || ok && time.Until(dl) < wait {
			// Fail now rather than sleep on a worker (or past the deadline),
			// saying when to come back: a job snoozes until then.
			return fmt.Errorf("telegram pace: %w", &RetryAfterError{After: wait})
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
