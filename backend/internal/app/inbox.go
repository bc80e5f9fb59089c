package app

import (
	"context"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/tgbot"
)

// inbox keeps the update handler's updates in the store: the two packages
// share the shape of an update, and neither imports the other.
type inbox struct{ *store.DB }

var _ tgbot.Inbox = inbox{}

func (i inbox) SaveUpdates(ctx context.Context, ups []tgbot.Update) (int, error) {
	out := make([]store.StoredUpdate, len(ups))
	for n, u := range ups {
		out[n] = store.StoredUpdate(u)
	}
	return i.DB.SaveUpdates(ctx, out)
}

func (i inbox) ClaimUpdates(ctx context.Context, owner string, limit int, lease time.Duration) ([]tgbot.Update, error) {
	ups, err := i.DB.ClaimUpdates(ctx, owner, limit, lease)
	out := make([]tgbot.Update, len(ups))
	for n, u := range ups {
		out[n] = tgbot.Update(u)
	}
	return out, err
}
