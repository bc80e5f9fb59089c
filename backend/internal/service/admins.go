package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// DefaultAdminTTL is how long amoCRM's answer to "is this user an account
// admin" is trusted. amoCRM's widget token does not say it, and asking on
// every call would spend the account's 7 requests a second on page loads; a
// demoted admin keeps their rights this long at most.
const DefaultAdminTTL = 5 * time.Minute

type adminKey struct{ account, user int64 }

type adminEntry struct {
	admin   bool
	expires time.Time
}

// admins caches users' admin status per account, in this process.
type admins struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[adminKey]adminEntry
}

func (c *admins) get(k adminKey) (bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !c.now().Before(e.expires) {
		return false, false
	}
	return e.admin, true
}

func (c *admins) put(k adminKey, admin bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	// Expired entries go when the map grows, so users who stopped opening
	// the widget do not accumulate.
	if len(c.m) >= 1024 {
		for key, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, key)
			}
		}
	}
	c.m[k] = adminEntry{admin: admin, expires: now.Add(c.ttl)}
}

// IsAdmin reports whether the token's user is an admin of the account, as
// amoCRM's users API says (rights.is_admin of an active user). A user the
// account does not have is no admin; an amoCRM failure is an error, not a
// "no", and is not remembered.
func (w *Widget) IsAdmin(ctx context.Context, a dispatch.Account, userID int64) (bool, error) {
	if userID <= 0 {
		return false, nil
	}
	k := adminKey{a.ID, userID}
	if admin, ok := w.admins.get(k); ok {
		return admin, nil
	}
	api, err := w.svc.API(ctx, a.ID)
	if err != nil {
		return false, err
	}
	u, err := api.GetUser(ctx, userID)
	switch {
	case errors.Is(err, amocrm.ErrNotFound):
		u = amocrm.User{}
	case err != nil:
		return false, fmt.Errorf("read user %d's rights from amoCRM: %w", userID, err)
	}
	admin := u.ID == userID && u.Rights.IsAdmin && u.Rights.IsActive
	w.admins.put(k, admin)
	return admin, nil
}

// RequireAdmin fails with ErrForbidden unless the user is an account admin.
func (w *Widget) RequireAdmin(ctx context.Context, a dispatch.Account, userID int64) error {
	admin, err := w.IsAdmin(ctx, a, userID)
	if err != nil {
		return err
	}
	if !admin {
		return fmt.Errorf("user %d of account %d is not an admin: %w", userID, a.ID, dispatch.ErrForbidden)
	}
	return nil
}
