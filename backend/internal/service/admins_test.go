package service_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/service"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// The admin status comes from amoCRM's users API and is trusted for the
// TTL on the widget's clock: a demotion shows once it passes, an inactive
// admin or a stranger is no admin, and a failed read is an error, not
// remembered.
func TestAdminStatusFromAmoCRM(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		const (
			accID            = int64(3100)
			admin, manager   = int64(11), int64(12)
			retired, unknown = int64(13), int64(999)
			ttl              = time.Minute
		)
		fake := fakeamocrm.New(fakeamocrm.Options{DisableRateLimit: true})
		t.Cleanup(fake.Close)
		acc := fake.AddAccount(fakeamocrm.AccountSpec{ID: accID, Subdomain: "acme", Users: []fakeamocrm.User{
			{ID: admin, Name: "Admin", IsAdmin: true}, {ID: manager, Name: "Manager"},
			{ID: retired, Name: "Former admin", IsAdmin: true, Inactive: true}}})
		pair := fake.IssueTokens(accID)
		clk := &clock{t: time.Now()}
		db := dbtest.Open(t, kind, clk.Now)
		a, _, err := db.SaveInstallation(ctx, store.Installation{ID: accID, Subdomain: "acme", Domain: acc.Domain,
			Tokens: dispatch.Tokens{Access: dispatch.Secret(pair.AccessToken), Refresh: dispatch.Secret(pair.RefreshToken), ExpiresAt: pair.ExpiresAt}})
		if err != nil {
			t.Fatal(err)
		}
		amo := amocrm.New(amocrm.Options{BaseURL: fake.URL(), ClientID: "fake-client-id", ClientSecret: "fake-client-secret",
			RatePerSecond: -1, MaxAttempts: 1})
		svc := service.New(service.Config{}, db, amo, slog.New(slog.DiscardHandler), clk.Now)
		w := service.NewWidget(svc, amocrm.WidgetTokenVerifier{}, nil, nil, ttl)
		reads := func(user int64) int {
			return len(fake.Requests(fakeamocrm.RequestFilter{AccountID: accID, Path: fmt.Sprintf("/api/v4/users/%d", user)}))
		}
		is := func(user int64) bool {
			t.Helper()
			ok, err := w.IsAdmin(ctx, a, user)
			if err != nil {
				t.Fatalf("IsAdmin(%d): %v", user, err)
			}
			return ok
		}

		for range 2 {
			if !is(admin) || is(manager) || is(retired) || is(unknown) || is(0) {
				t.Fatal("admin status: want only the active admin")
			}
		}
		for _, u := range []int64{admin, manager, retired, unknown} {
			if n := reads(u); n != 1 {
				t.Fatalf("user %d read %d times, want 1", u, n)
			}
		}
		if n := reads(0); n != 0 {
			t.Fatal("a token without a user was looked up")
		}
		if err := w.RequireAdmin(ctx, a, manager); !errors.Is(err, dispatch.ErrForbidden) {
			t.Fatalf("RequireAdmin(manager) = %v, want ErrForbidden", err)
		}
		if err := w.RequireAdmin(ctx, a, admin); err != nil {
			t.Fatalf("RequireAdmin(admin) = %v", err)
		}

		if err := fake.SetUserAdmin(accID, admin, false); err != nil {
			t.Fatal(err)
		}
		clk.Advance(ttl - time.Second)
		if !is(admin) {
			t.Fatal("the cached status ended before the TTL")
		}
		clk.Advance(time.Second)
		if is(admin) {
			t.Fatal("a demoted admin is still an admin after the TTL")
		}
		if n := reads(admin); n != 2 {
			t.Fatalf("admin read %d times, want 2", n)
		}

		// amoCRM failing: an error, and the next call asks again.
		clk.Advance(ttl)
		fake.FailNext(fmt.Sprintf("/api/v4/users/%d", manager), 1, 500)
		if _, err := w.IsAdmin(ctx, a, manager); err == nil {
			t.Fatal("a failed read gave an answer")
		}
		if err := w.RequireAdmin(ctx, a, manager); !errors.Is(err, dispatch.ErrForbidden) {
			t.Fatalf("after the failure: %v, want ErrForbidden", err)
		}
		if n := reads(manager); n != 3 {
			t.Fatalf("manager read %d times, want 3 (the failure not cached)", n)
		}
	})
}
