package service

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// webhookQuota bounds the webhook deliveries one account may have stored per
// second in this process, with bursts of webhookQuotaBurst seconds' worth.
// amoCRM sends one delivery per change batch (a bulk edit of 250 deals is one
// delivery), so an account stays far below it; a flood (a retry storm, a
// leaked URL replayed) is refused with 429 instead of filling the queue ahead
// of everyone else's work. Nothing refused is lost: the reconciler lists the
// deals changed in its last intervals and dispatches those the webhooks
// missed.
//
// The quota is per process: with n replicas behind a balancer an account
// gets up to n times it. Intake is cheap, so the bound only needs to stop a
// flood, not to be exact, and it costs no database round trip.
type webhookQuota struct {
	perSecond float64 // 0: no quota
	mu        sync.Mutex
	accounts  map[int64]*rate.Limiter
	warned    map[int64]time.Time // when a refusal was last logged, per account
}

// webhookQuotaBurst is the burst, in seconds of the quota.
const webhookQuotaBurst = 10

func newWebhookQuota(perSecond float64) *webhookQuota {
	return &webhookQuota{perSecond: perSecond, accounts: map[int64]*rate.Limiter{}, warned: map[int64]time.Time{}}
}

// take spends one delivery of the account's quota; when none is left it
// returns how long until one is (at least a second, as Retry-After counts).
func (q *webhookQuota) take(account int64, now time.Time) (ok bool, retryAfter time.Duration) {
	if q.perSecond <= 0 {
		return true, 0
	}
	q.mu.Lock()
	lim := q.accounts[account]
	if lim == nil {
		// One limiter per authenticated account: the map is bounded by the
		// accounts installed.
		lim = rate.NewLimiter(rate.Limit(q.perSecond), max(1, int(q.perSecond*webhookQuotaBurst)))
		q.accounts[account] = lim
	}
	q.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, max(time.Second, d.Round(time.Second))
	}
	return true, 0
}

// shouldLog reports whether a refusal for the account is worth a log line:
// one a minute, so a flood does not flood the log too.
func (q *webhookQuota) shouldLog(account int64, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if now.Sub(q.warned[account]) < time.Minute {
		return false
	}
	q.warned[account] = now
	return true
}
