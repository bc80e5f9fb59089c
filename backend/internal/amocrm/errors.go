package amocrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors, matched with errors.Is against *Error.
var (
	// ErrUnauthorized: 401 that survived one token refresh (API) or a rejected
	// code/refresh token (OAuth). The account must be re-authorised.
	ErrUnauthorized = errors.New("amocrm: unauthorized")
	// ErrForbidden: 403, e.g. the integration lacks rights or the account is blocked.
	ErrForbidden = errors.New("amocrm: forbidden")
	// ErrNotFound: 204 or 404 for a single-entity request.
	ErrNotFound = errors.New("amocrm: not found")
	// ErrRateLimited: a 429 that outlived the retries.
	ErrRateLimited = errors.New("amocrm: rate limited")
)

// Error is a non-2xx answer from amoCRM, parsed from its problem+json or
// OAuthProblemJson body. It never contains tokens, codes or the client secret:
// they are redacted before the Error is built.
type Error struct {
	StatusCode       int
	Title            string
	Detail           string
	Type             string
	Hint             string
	ValidationErrors []ValidationError
	// RetryAfter is the server-requested pause (Retry-After header or the
	// `retry_after` body field), useful for rescheduling a job after ErrRateLimited.
	RetryAfter time.Duration
	Method     string
	Path       string
}

// ValidationError is one entry of the 400 `validation-errors` array; RequestID
// is the index of the offending element in a batch request.
type ValidationError struct {
	RequestID string                `json:"request_id"`
	Errors    []ValidationErrorItem `json:"errors"`
}

// ValidationErrorItem points at one invalid field, e.g.
// Path "custom_fields_values.0.field_id", Code "NotSupportedChoice".
type ValidationErrorItem struct {
	Code   string `json:"code"`
	Path   string `json:"path"`
	Detail string `json:"detail"`
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "amocrm: %s %s: %d", e.Method, e.Path, e.StatusCode)
	if e.Title != "" {
		b.WriteString(" " + e.Title)
	} else if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteString(" " + t)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Hint != "" {
		b.WriteString(" (hint: " + e.Hint + ")")
	}
	for _, ve := range e.ValidationErrors {
		for _, it := range ve.Errors {
			fmt.Fprintf(&b, "; [%s] %s: %s %s", ve.RequestID, it.Path, it.Code, it.Detail)
		}
	}
	return b.String()
}

// Is maps status codes onto the sentinels so callers need not inspect codes.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusNoContent
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

// problemBody covers both the API's problem+json and the OAuth endpoint's
// OAuthProblemJson (which adds `hint`).
type problemBody struct {
	Title            string            `json:"title"`
	Type             string            `json:"type"`
	Status           json.Number       `json:"status"`
	Detail           string            `json:"detail"`
	Hint             string            `json:"hint"`
	RetryAfter       json.Number       `json:"retry_after"`
	ValidationErrors []ValidationError `json:"validation-errors"`
}

// newError builds an *Error; secrets are scrubbed from every server-provided
// string because amoCRM (or a proxy in front of it) may echo request data.
func newError(status int, method, path string, h http.Header, body []byte, secrets []string, now time.Time) *Error {
	e := &Error{StatusCode: status, Method: method, Path: path}
	var p problemBody
	if len(body) > 0 && json.Unmarshal(body, &p) == nil {
		e.Title, e.Type, e.Detail, e.Hint = p.Title, p.Type, p.Detail, p.Hint
		e.ValidationErrors = p.ValidationErrors
		if n, err := p.RetryAfter.Int64(); err == nil && n > 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	} else if len(body) > 0 {
		// HTML error pages from balancers etc.: keep a short printable snippet.
		// Redact before truncating so a secret cut in half cannot slip through.
		e.Detail = snippet([]byte(redact(string(body), secrets)), 200)
	}
	if ra, ok := parseRetryAfter(h.Get("Retry-After"), now); ok {
		e.RetryAfter = ra
	}
	e.Title = redact(e.Title, secrets)
	e.Type = redact(e.Type, secrets)
	e.Detail = redact(e.Detail, secrets)
	e.Hint = redact(e.Hint, secrets)
	for i := range e.ValidationErrors {
		ve := &e.ValidationErrors[i]
		ve.RequestID = redact(ve.RequestID, secrets)
		for j := range ve.Errors {
			it := &ve.Errors[j]
			it.Code = redact(it.Code, secrets)
			it.Path = redact(it.Path, secrets)
			it.Detail = redact(it.Detail, secrets)
		}
	}
	return e
}

func snippet(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Join(strings.Fields(s), " ")
	if !utf8.ValidString(s) {
		return ""
	}
	return s
}

// redact replaces every occurrence of a secret. Very short "secrets" are
// ignored: replacing them would mangle ordinary text without protecting anything.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 && strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// parseRetryAfter accepts both forms allowed by RFC 9110: delta-seconds and an HTTP-date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// BusyError: the account's next request slot (its rate or a Retry-After) is
// After away, further than the caller's context allows to wait (WithMaxWait).
// Nothing was sent.
type BusyError struct{ After time.Duration }

func (e *BusyError) Error() string {
	return fmt.Sprintf("amocrm: the account's next request slot is %v away", e.After.Round(time.Millisecond))
}

type maxWaitKey struct{}

// WithMaxWait bounds how long calls made with ctx wait for the account's
// rate limit: a later slot fails at once with a *BusyError, so a job can give
// its worker back instead of sleeping on it. Other callers (an install, the
// widget's requests) wait for their slot as before.
func WithMaxWait(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, maxWaitKey{}, d)
}

func maxWaitOf(ctx context.Context) time.Duration {
	d, _ := ctx.Value(maxWaitKey{}).(time.Duration)
	return d
}
