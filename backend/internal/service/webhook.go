package service

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// MaxWebhookBody bounds an amoCRM webhook delivery; real ones are a few KB.
const MaxWebhookBody = 1 << 20

// AuthenticateWebhook checks an amoCRM webhook delivery against the account's
// secret and quota and returns the account it is for; the caller then stores
// it. Over the quota it returns *dispatch.RetryLater (HTTP 429).
//
// An unknown account is answered exactly like a wrong secret: a different
// answer would let anyone enumerate which account ids use the product.
func (s *Service) AuthenticateWebhook(ctx context.Context, accountIDParam, secretParam string, body []byte) (int64, error) {
	id, err := strconv.ParseInt(accountIDParam, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("webhook: malformed account id: %w", dispatch.ErrUnauthorized)
	}
	a, err := s.webhookAccount(ctx, id)
	if errors.Is(err, dispatch.ErrNotFound) {
		return 0, fmt.Errorf("webhook for unknown account %d: %w", id, dispatch.ErrUnauthorized)
	}
	if err != nil {
		return 0, fmt.Errorf("webhook: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(secretParam), []byte(a.WebhookSecret.Reveal())) != 1 {
		return 0, fmt.Errorf("webhook for account %d: wrong secret: %w", id, dispatch.ErrUnauthorized)
	}
	if a.Status != dispatch.AccountActive {
		return 0, fmt.Errorf("webhook for account %d: %w", id, dispatch.ErrAccountOff)
	}
	// After the secret: a caller without it cannot spend the account's quota.
	if ok, after := s.quota.take(id, s.now()); !ok {
		if s.quota.shouldLog(id, s.now()) {
			s.log.Warn("amoCRM webhooks over the account's quota are refused with 429 (the reconciler catches their deals); logged once a minute",
				"account_id", id, "quota_per_second", s.cfg.WebhookQuota)
		}
		return 0, &dispatch.RetryLater{After: after, What: fmt.Sprintf("webhook for account %d over its quota", id)}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || len(form) == 0 {
		return 0, dispatch.Invalid("body is not an amoCRM form-urlencoded webhook")
	}
	if v := form.Get("account[id]"); v != "" && v != accountIDParam {
		return 0, dispatch.Invalid("account[id] %q does not match the webhook URL", v)
	}
	return id, nil
}

// webhookAccount reads an account for webhook authentication through a short
// cache: amoCRM may send bursts, and each lookup would otherwise cost a query
// and a decryption. Changes made by this process drop the entry at once;
// another replica's change is seen within the TTL, and a job for an account
// that was switched off meanwhile is cancelled when it runs.
func (s *Service) webhookAccount(ctx context.Context, id int64) (dispatch.Account, error) {
	if v, ok := s.accounts.Load(id); ok {
		c := v.(cachedAccount)
		if s.now().Before(c.until) {
			return c.account, nil
		}
	}
	a, err := s.db.Account(ctx, id)
	if err != nil {
		return a, err
	}
	s.accounts.Store(id, cachedAccount{account: a, until: s.now().Add(accountCacheTTL)})
	return a, nil
}

const accountCacheTTL = 5 * time.Second

type cachedAccount struct {
	account dispatch.Account
	until   time.Time
}

func (s *Service) forgetAccount(id int64) { s.accounts.Delete(id) }
