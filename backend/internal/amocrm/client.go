// Package amocrm is the amoCRM / Kommo API v4 and OAuth2 client used by amoDispatch.
//
// One *Client is shared by the whole process; (*Client).Account binds it to one
// installed account (domain, token source, rate limiter) and returns an *API.
package amocrm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	userAgent = "amoDispatch/1.0"

	defaultTimeout     = 15 * time.Second
	defaultRate        = 7 // amoCRM: at most 7 requests per second per integration
	defaultMaxAttempts = 4
	maxBurst           = 7

	backoffBase = 200 * time.Millisecond
	backoffCap  = 5 * time.Second
	// A Retry-After longer than this is not slept through inside a request:
	// the error (with Error.RetryAfter) goes back to the caller, whose job queue
	// can reschedule instead of pinning a worker for minutes.
	maxRetryAfter = 30 * time.Second

	maxBodySize  = 64 << 20
	maxErrorBody = 64 << 10
)

// Options configures a Client. Zero values select the defaults.
type Options struct {
	// HTTPClient is copied; redirects are disabled on the copy so a bearer
	// token is never forwarded to wherever a 3xx points. Default: 15s timeout.
	HTTPClient *http.Client
	// BaseURL (AMOCRM_API_URL), when set, receives every account's API and
	// OAuth calls instead of https://{domain}; meant for fakes and tests.
	BaseURL string

	ClientID     string
	ClientSecret string
	RedirectURI  string

	// RatePerSecond is the per-account request rate, default 7. A negative
	// value disables limiting (tests, fakes).
	RatePerSecond float64
	// Burst of the per-account token bucket, clamped to 1..7, default 1:
	// a smooth stream is least likely to trip amoCRM's own limiter.
	Burst int
	// MaxAttempts per call including the first one, for 429/5xx/network errors. Default 4.
	MaxAttempts int
	// Shared, when set, spaces each account's requests across every process
	// that uses it (replicas on one database), instead of per process only.
	Shared SharedLimiter

	Logger *slog.Logger

	// Sleep and Now are test hooks; both default to real time. Sleep must
	// return ctx.Err() promptly when ctx is done.
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time
}

// SharedLimiter books request slots of an account for all processes.
type SharedLimiter interface {
	// Reserve books the account's next slot, at least gap after the one
	// before, and returns how long to wait for it. With maxWait > 0 a slot
	// further away than that is not booked: booked is false and the wait
	// says when the next one comes.
	Reserve(ctx context.Context, accountID int64, gap, maxWait time.Duration) (wait time.Duration, booked bool, err error)
	// Hold moves the account's next slot to at least d from now (amoCRM's
	// Retry-After).
	Hold(ctx context.Context, accountID int64, d time.Duration) error
}

// accountLimit is an account's request budget in this process.
type accountLimit struct {
	id    int64
	local *rate.Limiter
}

// Client is safe for concurrent use.
type Client struct {
	http         *http.Client
	baseURL      string
	clientID     string
	clientSecret string
	redirectURI  string
	limit        rate.Limit
	burst        int
	maxAttempts  int
	log          *slog.Logger
	sleep        func(context.Context, time.Duration) error
	now          func() time.Time
	shared       SharedLimiter

	mu       sync.Mutex
	limiters map[int64]*accountLimit
	// paused holds, per account, the time before which amoCRM asked (429 +
	// Retry-After) that no request of the account be sent.
	paused map[*accountLimit]time.Time
}

// New builds a Client from opts.
func New(opts Options) *Client {
	hc := &http.Client{Timeout: defaultTimeout}
	if opts.HTTPClient != nil {
		cp := *opts.HTTPClient
		hc = &cp
	}
	if hc.CheckRedirect == nil {
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	c := &Client{
		http:         hc,
		baseURL:      strings.TrimRight(opts.BaseURL, "/"),
		clientID:     opts.ClientID,
		clientSecret: opts.ClientSecret,
		redirectURI:  opts.RedirectURI,
		limit:        rate.Limit(opts.RatePerSecond),
		burst:        min(max(opts.Burst, 1), maxBurst),
		maxAttempts:  opts.MaxAttempts,
		log:          opts.Logger,
		sleep:        opts.Sleep,
		now:          opts.Now,
		shared:       opts.Shared,
		limiters:     make(map[int64]*accountLimit),
	}
	switch {
	case opts.RatePerSecond == 0:
		// 5% under the exact rate, as the shared limiter spaces slots:
		// requests reach amoCRM with different delays, and slots exactly
		// 1/7 s apart put an eighth request into some second.
		c.limit = defaultRate / 1.05
	case opts.RatePerSecond < 0:
		c.limit = rate.Inf
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = defaultMaxAttempts
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *Client) limiter(key int64) *accountLimit {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.limiters[key]
	if !ok {
		l = &accountLimit{id: key, local: rate.NewLimiter(c.limit, c.burst)}
		c.limiters[key] = l
	}
	return l
}

// pause holds every request of the account until `until`.
func (c *Client) pause(ctx context.Context, l *accountLimit, until time.Time) {
	if l == nil {
		return
	}
	c.mu.Lock()
	if c.paused == nil {
		c.paused = map[*accountLimit]time.Time{}
	}
	if until.After(c.paused[l]) {
		c.paused[l] = until
	}
	c.mu.Unlock()
	if c.shared != nil {
		if err := c.shared.Hold(ctx, l.id, until.Sub(c.now())); err != nil {
			c.log.Warn("amocrm: shared rate limit: hold failed", "limit_key", l.id, "err", err)
		}
	}
}

// wait is rate.Limiter.Wait built on Reserve so that the clock and the sleep
// are injectable. It first honours a Retry-After amoCRM gave the account.
// With a shared limiter the slot is booked there, so that replicas together
// keep to the account's rate; if it fails, this process's own limiter serves.
func (c *Client) wait(ctx context.Context, l *accountLimit) error {
	if l == nil {
		return nil
	}
	maxWait := maxWaitOf(ctx)
	c.mu.Lock()
	until := c.paused[l]
	c.mu.Unlock()
	if d := until.Sub(c.now()); d > 0 {
		if maxWait > 0 && d > maxWait {
			return &BusyError{After: d}
		}
		if err := c.sleep(ctx, d); err != nil {
			return err
		}
	}
	if l.local.Limit() == rate.Inf {
		return nil
	}
	if c.shared != nil {
		// 5% over the exact spacing: requests from several hosts reach
		// amoCRM with different delays, and slots exactly 1/7 s apart then
		// put an eighth request into some second.
		gap := time.Duration(1.05 * float64(time.Second) / float64(l.local.Limit()))
		d, booked, err := c.shared.Reserve(ctx, l.id, gap, maxWait)
		if err == nil {
			if !booked {
				return &BusyError{After: d}
			}
			if d <= 0 {
				return nil
			}
			if dl, ok := ctx.Deadline(); ok && c.now().Add(d).After(dl) {
				return fmt.Errorf("amocrm: rate limiter wait %v exceeds context deadline: %w", d, context.DeadlineExceeded)
			}
			return c.sleep(ctx, d)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn("amocrm: shared rate limit unavailable, limiting this process only", "limit_key", l.id, "err", err)
	}
	now := c.now()
	r := l.local.ReserveN(now, 1)
	if !r.OK() {
		return fmt.Errorf("amocrm: rate limiter: burst too small")
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	if maxWait > 0 && d > maxWait {
		r.CancelAt(now)
		return &BusyError{After: d}
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
		// Give the token back: we will not use it, and a later call might.
		r.CancelAt(now)
		return fmt.Errorf("amocrm: rate limiter wait %v exceeds context deadline: %w", d, context.DeadlineExceeded)
	}
	if err := c.sleep(ctx, d); err != nil {
		r.CancelAt(c.now())
		return err
	}
	return nil
}

func (c *Client) origin(domain string) string {
	if c.baseURL != "" {
		return c.baseURL
	}
	return "https://" + domain
}

// request is one logical call; send may transmit it several times.
type request struct {
	method string
	path   string // absolute path, no query
	query  url.Values
	body   []byte // JSON, nil for none
	token  string // bearer; "" for the OAuth endpoint
	// secrets are scrubbed from any error built from the response.
	secrets []string
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send performs req with rate limiting and retries and returns the 2xx response
// or an error (an *Error for non-2xx statuses).
func (c *Client) send(ctx context.Context, origin string, lim *accountLimit, req request) (*response, error) {
	u := origin + req.path
	if len(req.query) > 0 {
		u += "?" + req.query.Encode()
	}
	idempotent := req.method == http.MethodGet || req.method == http.MethodHead ||
		req.method == http.MethodDelete || req.method == http.MethodPut

	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := c.wait(ctx, lim); err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(ctx, u, req)
		var (
			retry      bool
			retryAfter time.Duration
			hasAfter   bool
		)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// Writes are repeated only when the request provably never left
			// this host; after a timeout or reset amoCRM may already have applied it.
			retry = idempotent || notSent(err)
			err = fmt.Errorf("amocrm: %s %s: %w", req.method, req.path, err)
		case resp.status >= 200 && resp.status < 300:
			return resp, nil
		default:
			now := c.now()
			e := newError(resp.status, req.method, req.path, resp.header, resp.body, req.secrets, now)
			err = e
			switch {
			case resp.status == http.StatusTooManyRequests, resp.status == http.StatusServiceUnavailable:
				// amoCRM rejects these before doing any work, so even writes are safe to repeat.
				retry = true
			case resp.status >= 500:
				retry = idempotent
			}
			if _, ok := parseRetryAfter(resp.header.Get("Retry-After"), now); ok || e.RetryAfter > 0 {
				retryAfter, hasAfter = e.RetryAfter, true
				if resp.status == http.StatusTooManyRequests {
					c.pause(ctx, lim, now.Add(retryAfter))
				}
			}
		}
		if !retry || attempt >= c.maxAttempts {
			return nil, err
		}
		delay := backoff(attempt)
		if hasAfter {
			if maxWait := maxWaitOf(ctx); retryAfter > maxRetryAfter || maxWait > 0 && retryAfter > maxWait {
				return nil, err // the caller comes back after e.RetryAfter
			}
			delay = retryAfter
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "amocrm: retrying request",
			slog.String("method", req.method), slog.String("path", req.path),
			slog.Int("attempt", attempt), slog.Duration("delay", delay), slog.String("error", err.Error()))
		if err := c.sleep(ctx, delay); err != nil {
			return nil, err
		}
	}
}

func (c *Client) roundTrip(ctx context.Context, u string, req request) (*response, error) {
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
	if err != nil {
		return nil, err
	}
	hr.Header.Set("User-Agent", userAgent)
	hr.Header.Set("Accept", "application/json")
	if req.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if req.token != "" {
		hr.Header.Set("Authorization", "Bearer "+req.token)
	}
	res, err := c.http.Do(hr)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	limit := int64(maxBodySize)
	if res.StatusCode >= 300 {
		limit = maxErrorBody
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("reading response body: %w", err)
	}
	return &response{status: res.StatusCode, header: res.Header, body: b}, nil
}

// notSent reports whether err happened before any request byte could reach
// the server: a failed DNS lookup or dial (e.g. connection refused).
func notSent(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// backoff returns the pause before retry number n (1-based): exponential with
// "equal jitter", so concurrent workers hitting the same 429 spread out while
// still backing off at least half the nominal delay.
func backoff(n int) time.Duration {
	d := backoffCap
	if n < 16 {
		d = min(backoffBase<<(n-1), backoffCap)
	}
	half := d / 2
	return half + rand.N(half+1)
}

func decodeJSON(b []byte, out any, method, path string) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("amocrm: %s %s: decoding response: %w", method, path, err)
	}
	return nil
}
