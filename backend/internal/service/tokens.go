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

const (
	// refreshMargin: a token closer than this to expiry is refreshed before use.
	refreshMargin = 5 * time.Minute
	// refreshLease bounds how long a crashed refresher blocks the others.
	refreshLease = 30 * time.Second
	// proactiveWindow: the background refresher renews tokens expiring within it.
	proactiveWindow = 2 * time.Hour
)

// API returns an amoCRM client for an active account whose tokens come from
// the store and are refreshed under the cross-process lock.
func (s *Service) API(ctx context.Context, accountID int64) (*amocrm.API, error) {
	if s.amo == nil {
		return nil, fmt.Errorf("amoCRM integration: %w", dispatch.ErrNotConfigured)
	}
	a, err := s.db.Account(ctx, accountID)
	if err != nil {
		return nil, err
	}
	if a.Status != dispatch.AccountActive {
		return nil, fmt.Errorf("account %d: %w", accountID, dispatch.ErrAccountOff)
	}
	return s.amo.Account(a.Domain, a.ID, &tokenSource{s: s, accountID: a.ID, domain: a.Domain}), nil
}

type tokenSource struct {
	s         *Service
	accountID int64
	domain    string
}

func (t *tokenSource) AccessToken(ctx context.Context) (string, error) {
	tok, err := t.s.db.Tokens(ctx, t.accountID)
	if err != nil {
		return "", err
	}
	if t.s.now().Add(refreshMargin).Before(tok.ExpiresAt) {
		return tok.Access.Reveal(), nil
	}
	return t.Refresh(ctx, tok.Access.Reveal())
}

func (t *tokenSource) Refresh(ctx context.Context, failed string) (string, error) {
	return t.s.refresh(ctx, t.accountID, t.domain, failed)
}

func (s *Service) accountMutex(id int64) *sync.Mutex {
	m, _ := s.refreshMu.LoadOrStore(id, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// refresh spends the account's single-use refresh token at most once across
// all processes: the holder of the database lease refreshes, everyone else
// waits for the new access token to appear. failed is the access token that
// was rejected or is about to expire; a different, fresh token means someone
// else already refreshed.
func (s *Service) refresh(ctx context.Context, accountID int64, domain, failed string) (string, error) {
	mu := s.accountMutex(accountID)
	mu.Lock()
	defer mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 2*refreshLease)
	defer cancel()
	for {
		tok, err := s.db.Tokens(ctx, accountID)
		if err != nil {
			return "", err
		}
		if tok.Access.Reveal() != failed && s.now().Add(refreshMargin).Before(tok.ExpiresAt) {
			return tok.Access.Reveal(), nil
		}
		ok, err := s.db.AcquireRefreshLock(ctx, accountID, s.owner, refreshLease)
		if err != nil {
			return "", err
		}
		if ok {
			return s.refreshHolding(ctx, accountID, domain, failed)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("account %d: waiting for another process's token refresh: %w", accountID, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Service) refreshHolding(ctx context.Context, accountID int64, domain, failed string) (string, error) {
	defer func() {
		if err := s.db.ReleaseRefreshLock(context.WithoutCancel(ctx), accountID, s.owner); err != nil {
			s.log.Error("release refresh lock", "account_id", accountID, "err", err)
		}
	}()
	// Re-read under the lease: the previous holder may have finished between
	// our check and our acquisition.
	tok, err := s.db.Tokens(ctx, accountID)
	if err != nil {
		return "", err
	}
	if tok.Access.Reveal() != failed && s.now().Add(refreshMargin).Before(tok.ExpiresAt) {
		return tok.Access.Reveal(), nil
	}
	fresh, err := s.amo.RefreshToken(ctx, domain, tok.Refresh.Reveal())
	if err != nil {
		var ae *amocrm.Error
		if errors.Is(err, amocrm.ErrUnauthorized) || (errors.As(err, &ae) && (ae.StatusCode == 400 || ae.StatusCode == 401)) {
			// amoCRM refused the refresh token: only a reinstall helps. Stop
			// using the account instead of retrying forever.
			if serr := s.db.SetAccountStatus(context.WithoutCancel(ctx), accountID, dispatch.AccountRevoked); serr != nil {
				s.log.Error("mark account revoked", "account_id", accountID, "err", serr)
			}
			s.forgetAccount(accountID)
			s.log.Error("amoCRM revoked the account's tokens; the admin must reinstall the integration", "account_id", accountID)
			return "", fmt.Errorf("account %d refresh: %w: %w", accountID, dispatch.ErrAccountOff, err)
		}
		return "", fmt.Errorf("account %d refresh: %w", accountID, err)
	}
	err = s.db.SaveRefreshedTokens(ctx, accountID, s.owner, dispatch.Tokens{
		Access: dispatch.Secret(fresh.AccessToken), Refresh: dispatch.Secret(fresh.RefreshToken), ExpiresAt: fresh.ExpiresAt,
	})
	if err != nil {
		return "", err
	}
	s.log.Info("amoCRM token refreshed", "account_id", accountID, "expires_at", fresh.ExpiresAt.UTC().Format(time.RFC3339))
	return fresh.AccessToken, nil
}

// RefreshDue renews, ahead of time, the tokens of active accounts that expire
// soon. Run periodically; it also keeps idle accounts' refresh tokens alive.
func (s *Service) RefreshDue(ctx context.Context) {
	if s.amo == nil {
		return
	}
	accounts, err := s.db.ActiveAccounts(ctx)
	if err != nil {
		s.log.Error("list accounts for token refresh", "err", err)
		return
	}
	for _, a := range accounts {
		tok, err := s.db.Tokens(ctx, a.ID)
		if err != nil {
			continue
		}
		if s.now().Add(proactiveWindow).Before(tok.ExpiresAt) {
			continue
		}
		if _, err := s.refresh(ctx, a.ID, a.Domain, tok.Access.Reveal()); err != nil {
			s.log.Warn("proactive token refresh failed", "account_id", a.ID, "err", err)
		}
	}
}
