package e2e

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

func unauthorizedRequests(e *env, accountID int64) int {
	return len(e.amo.Requests(fakeamocrm.RequestFilter{AccountID: accountID, Status: 401}))
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		// Tokens that live one hour are inside the background refresher's
		// two-hour window but outside the per-call five-minute margin.
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.AccessTokenTTL = time.Hour }))
		acc, _ := addAccounts(e)
		b := e.start()
		install(t, e, b, acc.ID)
		ctx := context.Background()
		if n := e.amo.RefreshCount(acc.ID); n != 0 {
			t.Fatalf("install refreshed %d times", n)
		}
		b.Service().RefreshDue(ctx)
		if n := e.amo.RefreshCount(acc.ID); n != 1 {
			t.Fatalf("refresh grants = %d, want 1", n)
		}
		pairs := e.amo.Tokens(acc.ID)
		last := pairs[len(pairs)-1]
		tok, err := b.Store().Tokens(ctx, acc.ID)
		if err != nil || tok.Access.Reveal() != last.AccessToken || tok.Refresh.Reveal() != last.RefreshToken {
			t.Fatal("the stored pair is not the newest one")
		}
		api, _ := b.Service().API(ctx, acc.ID)
		if _, err := api.GetAccount(ctx); err != nil {
			t.Fatal(err)
		}
		if n := unauthorizedRequests(e, acc.ID); n != 0 {
			t.Fatalf("%d requests were sent with an expired token", n)
		}
		if n := e.amo.RefreshCount(acc.ID); n != 1 {
			t.Fatalf("a fresh token was refreshed again (%d grants)", n)
		}
	})
}

func TestTokenRefreshOn401AcrossTwoProcesses(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		acc, _ := addAccounts(e)
		b1 := e.start()
		b2 := e.start() // a second process on the same database
		install(t, e, b1, acc.ID)
		if n := e.amo.RefreshCount(acc.ID); n != 0 {
			t.Fatalf("fresh install refreshed %d times", n)
		}

		// amoCRM invalidates the access token early; both processes notice at
		// once. The single-use refresh token must be spent exactly once.
		e.amo.ExpireAccessTokens(acc.ID)
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := 0; i < 10; i++ {
			for _, b := range []*backend{b1, b2} {
				wg.Add(1)
				go func(b *backend) {
					defer wg.Done()
					api, err := b.Service().API(ctx, acc.ID)
					if err == nil {
						_, err = api.GetAccount(ctx)
					}
					errs <- err
				}(b)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("API call after expiry: %v", err)
			}
		}
		if n := e.amo.RefreshCount(acc.ID); n != 1 {
			t.Fatalf("refresh grants = %d, want exactly 1", n)
		}
		if n := e.amo.RefreshAttempts(acc.ID); n != 1 {
			t.Fatalf("refresh attempts = %d: a process spent a used refresh token", n)
		}
	})
}

func TestRevokedTokensStopTheAccount(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		acc, _ := addAccounts(e)
		b := e.start()
		install(t, e, b, acc.ID)
		e.amo.RevokeTokens(acc.ID)
		ctx := context.Background()
		api, err := b.Service().API(ctx, acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := api.GetAccount(ctx); err == nil {
			t.Fatal("a revoked account's call succeeded")
		}
		a, _ := b.Store().Account(ctx, acc.ID)
		if a.Status != dispatch.AccountRevoked {
			t.Fatalf("status after revocation = %s", a.Status)
		}
		if _, err := b.Service().API(ctx, acc.ID); !errors.Is(err, dispatch.ErrAccountOff) {
			t.Fatalf("revoked account still usable: %v", err)
		}
		attempts := e.amo.RefreshAttempts(acc.ID)
		b.Service().RefreshDue(ctx)
		if e.amo.RefreshAttempts(acc.ID) != attempts {
			t.Fatal("a revoked account is retried")
		}
		// Reinstalling brings it back.
		install(t, e, b, acc.ID)
		if a, _ := b.Store().Account(ctx, acc.ID); a.Status != dispatch.AccountActive {
			t.Fatalf("after reinstall: %s", a.Status)
		}
	})
}
