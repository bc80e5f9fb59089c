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

// AcceptWebhook authenticates an amoCRM webhook delivery by the account's
// secret and stores it durably. It returns only after the event is stored, so
// answering 2xx afterwards never loses an event.
//
// An unknown account is answered exactly like a wrong secret: a different
// answer would let anyone enumerate which account ids use the product.
func (s *Service) AcceptWebhook(ctx context.Context, accountIDParam, secretParam string, body []byte) error {
	id, err := strconv.ParseInt(accountIDParam, 10, 64)
	if err != nil || id <= 0 {
		return fmt.Errorf("webhook: malformed account id: %w", dispatch.ErrUnauthorized)
	}
	a, err := s.webhookAccount(ctx, id)
	if errors.Is(err, dispatch.ErrNotFound) {
		return fmt.Errorf("webhook for unknown account %d: %w", id, dispatch.ErrUnauthorized)
	}
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(secretParam), []byte(a.WebhookSecret.Reveal())) != 1 {
		return fmt.Errorf("webhook for account %d: wrong secret: %w", id, dispatch.ErrUnauthorized)
	}
	if a.Status != dispatch.AccountActive {
		return fmt.Errorf("webhook for account %d: %w", id, dispatch.ErrAccountOff)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || len(form) == 0 {
		return dispatch.Invalid("body is not an amoCRM form-urlencoded webhook")
	}
	if v := form.Get("account[id]"); v != "" && v != accountIDParam {
		return dispatch.Invalid("account[id] %q does not match the webhook URL", v)
	}
	if s.intake == nil {
		return fmt.Errorf("webhook intake: %w", dispatch.ErrNotConfigured)
	}
	return s.intake(ctx, id, body)
}

// SetIntake routes authenticated webhook deliveries to the dispatch flow,
// which stores each together with the job that processes it.
func (s *Service) SetIntake(fn func(ctx context.Context, accountID int64, body []byte) error) {
	s.intake = fn
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
