package telegram

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pacer keeps the bot inside Telegram's documented pace: about 30 messages a
// second overall, 20 a minute per group and one a second per private chat.
// It only spaces this process's calls; a 429 from Telegram is still honoured
// by the caller (several replicas share one bot).
type pacer struct {
	global *rate.Limiter
	mu     sync.Mutex
	chats  map[int64]*rate.Limiter
}

func newPacer() *pacer {
	return &pacer{global: rate.NewLimiter(30, 30), chats: map[int64]*rate.Limiter{}}
}

func (p *pacer) wait(ctx context.Context, chatID int64) error {
	p.mu.Lock()
	l, ok := p.chats[chatID]
	if !ok {
		if chatID < 0 {
			l = rate.NewLimiter(rate.Every(time.Minute/20), 20)
		} else {
			l = rate.NewLimiter(rate.Every(time.Second), 3)
		}
		p.chats[chatID] = l
	}
	p.mu.Unlock()
	if err := l.Wait(ctx); err != nil {
		return err
	}
	return p.global.Wait(ctx)
}
