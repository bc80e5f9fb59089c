package app

import (
	"context"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// paceLedger gives the Telegram client the database's send ledger, so the
// pace survives restarts and replicas share it (neither adapter imports the
// other).
type paceLedger struct{ p *store.TelegramPace }

var _ telegram.PaceLedger = paceLedger{}

func (l paceLedger) Book(ctx context.Context, chatID int64, windows []telegram.Window) (time.Duration, error) {
	ws := make([]store.SendWindow, len(windows))
	for i, w := range windows {
		ws[i] = store.SendWindow{Scope: w.Scope, N: w.N, Per: w.Per}
	}
	return l.p.Book(ctx, chatID, ws)
}

func (l paceLedger) Hold(ctx context.Context, scope int64, d time.Duration) error {
	return l.p.Hold(ctx, scope, d)
}
