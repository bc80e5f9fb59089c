package amocrm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRequestHeaders(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer tok-1" {
			t.Errorf("Authorization = %q", got)
		}
		if got := r.Header.Get("User-Agent"); got != "amoDispatch/1.0" {
			t.Errorf("User-Agent = %q", got)
		}
		if r.Method == http.MethodPatch && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
		}
		writeJSON(w, 200, `{"id":1}`)
	})
	api := env.api(&fakeTS{token: "tok-1"})
	if _, err := api.GetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := api.UpdateLead(context.Background(), LeadUpdate{ID: 1, StatusID: Ptr[int64](142)}); err != nil {
		t.Fatal(err)
	}
}

func TestUnauthorizedRefreshesOnce(t *testing.T) {
	tests := []struct {
		name      string
		okToken   string // token the server accepts; "" = none
		wantErr   error
		wantHits  int64
		wantFails []string
	}{
		{"refresh then success", "new", nil, 2, []string{"old"}},
		{"401 twice", "", ErrUnauthorized, 2, []string{"old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.okToken != "" && r.Header.Get("Authorization") == "Bearer "+tt.okToken {
					writeJSON(w, 200, `{"id":5,"name":"acc","subdomain":"test"}`)
					return
				}
				writeJSON(w, 401, `{"title":"Unauthorized","type":"https://httpstatus.es/401","status":401,"detail":"Invalid user name or password"}`)
			})
			ts := &fakeTS{token: "old", next: "new"}
			acc, err := env.api(ts).GetAccount(context.Background())
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && acc.ID != 5 {
				t.Errorf("account = %+v", acc)
			}
			if env.hits.Load() != tt.wantHits {
				t.Errorf("hits = %d, want %d", env.hits.Load(), tt.wantHits)
			}
			if got := ts.Failed(); strings.Join(got, ",") != strings.Join(tt.wantFails, ",") {
				t.Errorf("Refresh called with %v, want %v", got, tt.wantFails)
			}
			if err != nil && (strings.Contains(err.Error(), "old") || strings.Contains(err.Error(), "new")) {
				t.Errorf("token in error: %v", err)
			}
		})
	}
}

func TestRefreshFailurePropagates(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 401, problem(401, "Unauthorized")) })
	revoked := &Error{StatusCode: 401, Title: "revoked"}
	ts := &fakeTS{token: "old", refreshErr: revoked}
	_, err := env.api(ts).GetAccount(context.Background())
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, revoked) {
		t.Fatalf("err = %v", err)
	}
	if env.hits.Load() != 1 {
		t.Errorf("hits = %d, want 1", env.hits.Load())
	}
}

// A 401 is rejected before processing, so even a write is replayed after refresh.
func TestUnauthorizedRetriesWriteOnce(t *testing.T) {
	var bodies []string
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if r.Header.Get("Authorization") != "Bearer new" {
			writeJSON(w, 401, problem(401, "Unauthorized"))
			return
		}
		writeJSON(w, 200, `{"id":3}`)
	})
	err := env.api(&fakeTS{token: "old", next: "new"}).UpdateLead(context.Background(), LeadUpdate{ID: 3, StatusID: Ptr[int64](7)})
	if err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 2 || bodies[0] != bodies[1] || bodies[0] != `{"status_id":7}` {
		t.Fatalf("bodies = %q", bodies)
	}
}

func TestRetryPolicy(t *testing.T) {
	type step struct {
		status     int
		retryAfter string
	}
	tests := []struct {
		name     string
		method   string
		steps    []step // served in order; the last one repeats
		wantHits int64
		wantErr  error // sentinel, nil = success
		wantCode int   // *Error status when failing
		check    func(t *testing.T, slept []time.Duration)
	}{
		{
			name: "429 then success honours Retry-After", method: http.MethodGet,
			steps: []step{{429, "2"}, {200, ""}}, wantHits: 2,
			check: func(t *testing.T, slept []time.Duration) {
				if len(slept) != 1 || slept[0] != 2*time.Second {
					t.Errorf("slept %v, want [2s]", slept)
				}
			},
		},
		{
			name: "429 with HTTP-date Retry-After", method: http.MethodGet,
			steps: []step{{429, newFakeClock().Now().Add(time.Hour).Format(http.TimeFormat)}}, wantHits: 1,
			wantErr: ErrRateLimited, wantCode: 429,
			check: func(t *testing.T, slept []time.Duration) {
				if len(slept) != 0 {
					t.Errorf("slept %v; an hour-long Retry-After must be returned, not slept", slept)
				}
			},
		},
		{
			name: "5xx exhausted on GET", method: http.MethodGet,
			steps: []step{{500, ""}}, wantHits: 4, wantCode: 500,
			check: func(t *testing.T, slept []time.Duration) {
				if len(slept) != 3 {
					t.Fatalf("slept %v, want 3 back-offs", slept)
				}
				for i, d := range slept {
					lo := (backoffBase << i) / 2
					hi := min(backoffBase<<i, backoffCap)
					if d < lo || d > hi {
						t.Errorf("back-off %d = %v, want in [%v, %v]", i, d, lo, hi)
					}
				}
			},
		},
		{
			name: "503 HTTP-date Retry-After within cap", method: http.MethodGet,
			steps: []step{{503, newFakeClock().Now().Add(3 * time.Second).Format(http.TimeFormat)}, {200, ""}}, wantHits: 2,
			check: func(t *testing.T, slept []time.Duration) {
				if len(slept) != 1 || slept[0] != 3*time.Second {
					t.Errorf("slept %v, want [3s]", slept)
				}
			},
		},
		{
			name: "429 outlives retries", method: http.MethodGet,
			steps: []step{{429, "1"}}, wantHits: 4, wantErr: ErrRateLimited, wantCode: 429,
		},
		{name: "500 on PATCH not retried", method: http.MethodPatch, steps: []step{{500, ""}}, wantHits: 1, wantCode: 500},
		{name: "502 on PATCH not retried", method: http.MethodPatch, steps: []step{{502, ""}}, wantHits: 1, wantCode: 502},
		{name: "503 on PATCH retried", method: http.MethodPatch, steps: []step{{503, ""}, {200, ""}}, wantHits: 2},
		{name: "429 on PATCH retried", method: http.MethodPatch, steps: []step{{429, ""}, {429, ""}, {200, ""}}, wantHits: 3},
		{name: "400 not retried", method: http.MethodGet, steps: []step{{400, ""}}, wantHits: 1, wantCode: 400},
		{name: "403 forbidden", method: http.MethodGet, steps: []step{{403, ""}}, wantHits: 1, wantErr: ErrForbidden, wantCode: 403},
		{name: "404 not found", method: http.MethodGet, steps: []step{{404, ""}}, wantHits: 1, wantErr: ErrNotFound, wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				i := min(int(n.Add(1))-1, len(tt.steps)-1)
				s := tt.steps[i]
				if s.retryAfter != "" {
					w.Header().Set("Retry-After", s.retryAfter)
				}
				if s.status == 200 {
					writeJSON(w, 200, `{"id":1}`)
					return
				}
				writeJSON(w, s.status, problem(s.status, http.StatusText(s.status)))
			})
			api := env.api(&fakeTS{token: "t"})
			var err error
			if tt.method == http.MethodGet {
				_, err = api.GetAccount(context.Background())
			} else {
				err = api.UpdateLead(context.Background(), LeadUpdate{ID: 1, StatusID: Ptr[int64](2)})
			}
			if env.hits.Load() != tt.wantHits {
				t.Errorf("hits = %d, want %d", env.hits.Load(), tt.wantHits)
			}
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) || e.StatusCode != tt.wantCode {
					t.Fatalf("err = %v, want status %d", err, tt.wantCode)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want Is %v", err, tt.wantErr)
				}
			}
			if tt.check != nil {
				tt.check(t, env.clock.Slept())
			}
		})
	}
}

func TestRetryAfterFromBodyIsReturned(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 429, `{"title":"Too Many Requests","type":"https://httpstatus.es/429","status":429,"detail":"slow down","retry_after":300}`)
	})
	_, err := env.api(&fakeTS{token: "t"}).GetAccount(context.Background())
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrRateLimited) || e.RetryAfter != 300*time.Second {
		t.Fatalf("err = %#v", err)
	}
	// Five minutes is too long to hold a worker: no sleeping, no retry.
	if env.hits.Load() != 1 || len(env.clock.Slept()) != 0 {
		t.Errorf("hits=%d slept=%v", env.hits.Load(), env.clock.Slept())
	}
}

// hangUp accepts the request and drops the connection without answering: an
// ambiguous failure where the server may have applied a write.
func hangUp(w http.ResponseWriter, r *http.Request) {
	_, _ = io.ReadAll(r.Body)
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func TestNetworkErrorRetries(t *testing.T) {
	t.Run("GET retried after dropped connection", func(t *testing.T) {
		env := newEnv(t, hangUp)
		_, err := env.api(&fakeTS{token: "t"}).GetAccount(context.Background())
		if err == nil || env.hits.Load() < 4 {
			t.Fatalf("err=%v hits=%d, want error after >=4 hits", err, env.hits.Load())
		}
	})
	t.Run("POST not retried after dropped connection", func(t *testing.T) {
		env := newEnv(t, hangUp)
		_, err := env.api(&fakeTS{token: "t"}).AddLeadNote(context.Background(), 1, "hi")
		if err == nil || env.hits.Load() != 1 || len(env.clock.Slept()) != 0 {
			t.Fatalf("err=%v hits=%d slept=%v, want one attempt", err, env.hits.Load(), env.clock.Slept())
		}
	})
	t.Run("POST retried on connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		clock := newFakeClock()
		c := New(Options{BaseURL: "http://" + addr, RatePerSecond: -1, Sleep: clock.Sleep, Now: clock.Now})
		_, err = c.Account("a.amocrm.ru", 1, &fakeTS{token: "t"}).AddLeadNote(context.Background(), 1, "hi")
		if err == nil || !notSent(err) {
			t.Fatalf("err = %v, want a dial error", err)
		}
		if len(clock.Slept()) != 3 {
			t.Errorf("slept %v, want 3 back-offs (4 attempts)", clock.Slept())
		}
	})
}

func TestContextCancelAbortsBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 500, problem(500, "boom"))
	}))
	defer srv.Close()
	c := New(Options{BaseURL: srv.URL, RatePerSecond: -1, MaxAttempts: 10, Sleep: func(ctx context.Context, d time.Duration) error {
		cancel() // the caller gives up while we are backing off
		return sleepCtx(ctx, d)
	}})
	_, err := c.Account("a.amocrm.ru", 1, &fakeTS{token: "t"}).GetAccount(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestValidationErrorParsing(t *testing.T) {
	const body = `{"validation-errors":[{"request_id":"0","errors":[{"code":"NotSupportedChoice","path":"custom_fields_values.0.field_id","detail":"The value you selected is not a valid choice."}]}],"title":"Bad Request","type":"https://httpstatus.es/400","status":400,"detail":"Request validation failed"}`
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 400, body) })
	err := env.api(&fakeTS{token: "t"}).UpdateLead(context.Background(), LeadUpdate{
		ID: 9, CustomFieldsValues: []CustomFieldValue{{FieldID: 1, Values: []CustomFieldItem{{Value: "x"}}}},
	})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v", err)
	}
	if e.StatusCode != 400 || e.Title != "Bad Request" || e.Detail != "Request validation failed" ||
		e.Method != http.MethodPatch || e.Path != "/api/v4/leads/9" {
		t.Errorf("error = %+v", e)
	}
	if len(e.ValidationErrors) != 1 || len(e.ValidationErrors[0].Errors) != 1 {
		t.Fatalf("validation errors = %+v", e.ValidationErrors)
	}
	it := e.ValidationErrors[0].Errors[0]
	if e.ValidationErrors[0].RequestID != "0" || it.Code != "NotSupportedChoice" || it.Path != "custom_fields_values.0.field_id" {
		t.Errorf("item = %+v", it)
	}
	if s := err.Error(); !strings.Contains(s, "custom_fields_values.0.field_id") || !strings.Contains(s, "NotSupportedChoice") {
		t.Errorf("Error() = %s", s)
	}
}

func TestNonJSONErrorBody(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(502)
		_, _ = io.WriteString(w, "<html><body>502 Bad Gateway\n nginx</body></html>")
	}, func(o *Options) { o.MaxAttempts = 1 })
	_, err := env.api(&fakeTS{token: "t"}).GetAccount(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 502 || !strings.Contains(e.Detail, "502 Bad Gateway nginx") {
		t.Fatalf("err = %#v", err)
	}
}

// Secrets may be echoed by the server or a proxy; none may reach an error or a log line.
func TestSecretsAbsentFromErrorsAndLogs(t *testing.T) {
	const (
		code    = "def50200-secret-auth-code"
		refresh = "def50200-secret-refresh-token"
		access  = "eyJ0eXAi-secret-access-token"
	)
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reflected := string(b) + " " + r.Header.Get("Authorization")
		if strings.HasPrefix(r.URL.Path, "/api/") {
			// non-JSON echo on API calls, JSON echo on OAuth
			w.WriteHeader(500)
			_, _ = io.WriteString(w, strings.Repeat("x", 150)+reflected)
			return
		}
		writeJSON(w, 400, map[string]any{"title": "Bad " + reflected, "detail": reflected, "hint": reflected, "status": 400,
			"validation-errors": []any{map[string]any{"request_id": "0", "errors": []any{map[string]any{"code": "c", "path": "p", "detail": reflected}}}}})
	}
	var logs bytes.Buffer
	env := newEnv(t, echo, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	var errs []error
	_, err := env.c.ExchangeCode(context.Background(), "a.amocrm.ru", code)
	errs = append(errs, err)
	_, err = env.c.RefreshToken(context.Background(), "a.amocrm.ru", refresh)
	errs = append(errs, err)
	_, err = env.api(&fakeTS{token: access}).GetAccount(context.Background())
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("want error")
		}
		s := err.Error()
		for _, secret := range []string{testSecret, code, refresh, access, access[:10]} {
			if strings.Contains(s, secret) {
				t.Errorf("error leaks %q: %s", secret, s)
			}
		}
		if !strings.Contains(s, "[REDACTED]") {
			t.Errorf("expected redaction marker in %s", s)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("expected retry logs")
	}
	for _, secret := range []string{testSecret, code, refresh, access} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log leaks %q", secret)
		}
	}
}

// 20 calls at 7 rps with burst 1 need 19/7 ≈ 2.7s of limiter waiting; the fake
// clock measures it without real sleeping.
func TestRateLimiter(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{"id":1}`) },
		func(o *Options) { o.RatePerSecond = 0 }) // default 7/s
	api := env.api(&fakeTS{token: "t"})
	for range 20 {
		if _, err := api.GetAccount(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := env.clock.Total(); got < 2500*time.Millisecond || got > 3*time.Second {
		t.Errorf("limiter waited %v for 20 calls, want ≈2.7s", got)
	}

	// Another account has its own bucket; the same account shares one.
	before := env.clock.Total()
	if _, err := env.c.Account("other.amocrm.ru", 2, &fakeTS{token: "t"}).GetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	if env.clock.Total() != before {
		t.Errorf("account 2 waited on account 1's bucket")
	}
	if _, err := env.c.Account("test.amocrm.ru", 1, &fakeTS{token: "t"}).GetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	if env.clock.Total() == before {
		t.Errorf("a new API for account 1 did not share its bucket")
	}
}

func TestRateLimiterHonoursContext(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{"id":1}`) },
		func(o *Options) { o.RatePerSecond = 0.01; o.Sleep = nil; o.Now = nil })
	api := env.api(&fakeTS{token: "t"})
	if _, err := api.GetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := api.GetAccount(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	if env.hits.Load() != 1 {
		t.Errorf("hits = %d", env.hits.Load())
	}
	// The abandoned reservation was handed back: the next token is ~100s
	// away, not ~200s, so the failed call did not cost later callers.
	now := time.Now()
	r := env.c.limiter(1).local.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 101*time.Second {
		t.Errorf("next token in %v, want <=100s", d)
	}
	r.CancelAt(now)
}

func TestBackoffBounds(t *testing.T) {
	for n := 1; n <= 40; n++ {
		d := backoff(n)
		nominal := backoffCap
		if n < 16 {
			nominal = min(backoffBase<<(n-1), backoffCap)
		}
		if d < nominal/2 || d > nominal {
			t.Errorf("backoff(%d) = %v, want in [%v, %v]", n, d, nominal/2, nominal)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRedirectsNotFollowed(t *testing.T) {
	var foreignHits atomic.Int64
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignHits.Add(1)
	}))
	defer foreign.Close()
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, foreign.URL+"/steal", http.StatusFound)
	})
	if _, err := env.api(&fakeTS{token: "t"}).GetAccount(context.Background()); err == nil {
		t.Fatal("want error for a 302")
	}
	if foreignHits.Load() != 0 {
		t.Fatal("redirect was followed")
	}
}

// sharedStub is a SharedLimiter that hands out fixed waits and records calls.
type sharedStub struct {
	mu    sync.Mutex
	waits []time.Duration // returned by successive Reserve calls
	err   error
	gaps  []time.Duration
	holds []time.Duration
}

func (s *sharedStub) Reserve(_ context.Context, accountID int64, gap, maxWait time.Duration) (time.Duration, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gaps = append(s.gaps, gap)
	if s.err != nil {
		return 0, false, s.err
	}
	w := s.waits[0]
	if maxWait > 0 && w > maxWait {
		return w, false, nil // not booked: the slot stays for the next caller
	}
	s.waits = s.waits[1:]
	return w, true, nil
}

func (s *sharedStub) Hold(_ context.Context, accountID int64, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds = append(s.holds, d)
	return nil
}

// With a shared limiter every request books its slot there and waits what
// it is told; a 429's Retry-After is passed on to the other processes.
func TestSharedLimiter(t *testing.T) {
	var calls atomic.Int32
	shared := &sharedStub{waits: []time.Duration{0, 300 * time.Millisecond, 0}}
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 2 {
			w.Header().Set("Retry-After", "2")
			writeJSON(w, 429, `{"title":"Too Many Requests","status":429}`)
			return
		}
		writeJSON(w, 200, `{"id":1}`)
	}, func(o *Options) { o.RatePerSecond = 7; o.Shared = shared })
	api := env.api(&fakeTS{token: "t"})
	if _, err := api.GetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(1.05 * float64(time.Second) / 7); len(shared.gaps) != 3 || shared.gaps[0] != want {
		t.Fatalf("Reserve gaps %v, want three of %v", shared.gaps, want)
	}
	if len(shared.holds) != 1 || shared.holds[0] != 2*time.Second {
		t.Fatalf("holds %v, want [2s]", shared.holds)
	}
	// Slept: the booked 300 ms, then the Retry-After (the third slot was free).
	if got := env.clock.slept; len(got) != 2 || got[0] != 300*time.Millisecond || got[1] != 2*time.Second {
		t.Fatalf("slept %v, want [300ms 2s]", got)
	}

	// The shared limiter failing leaves this process's own limiter in charge.
	shared.err = errors.New("database unavailable")
	for range 3 {
		if _, err := api.GetAccount(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(env.clock.slept); n != 4 {
		t.Fatalf("slept %v: the local limiter did not space the requests", env.clock.slept)
	}
}

// A caller that may wait at most a second (a job) is told at once when the
// account's next slot is later, locally or shared, and nothing is sent or
// booked; a caller without that bound (an install) waits for its slot.
func TestMaxWaitRefusesLaterSlots(t *testing.T) {
	var calls atomic.Int32
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeJSON(w, 200, `{"id":1}`)
	}, func(o *Options) { o.RatePerSecond = 0.5 })
	api := env.api(&fakeTS{token: "t"})
	job := WithMaxWait(context.Background(), time.Second)
	if _, err := api.GetAccount(job); err != nil {
		t.Fatal(err)
	}
	_, err := api.GetAccount(job)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.After < time.Second || busy.After > 2*time.Second {
		t.Fatalf("second request at 0.5/s with a 1 s bound: %v, want a BusyError of about 2 s", err)
	}
	if calls.Load() != 1 || len(env.clock.slept) != 0 {
		t.Fatalf("%d requests sent, slept %v; want 1 and no sleep", calls.Load(), env.clock.slept)
	}
	if _, err := api.GetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(env.clock.slept) != 1 {
		t.Fatalf("slept %v: an unbounded caller waits for its slot", env.clock.slept)
	}

	shared := &sharedStub{waits: []time.Duration{3 * time.Second, 0}}
	env2 := newEnv(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{"id":1}`) },
		func(o *Options) { o.RatePerSecond = 7; o.Shared = shared })
	api2 := env2.api(&fakeTS{token: "t"})
	if _, err := api2.GetAccount(job); !errors.As(err, &busy) || busy.After != 3*time.Second {
		t.Fatalf("shared slot 3 s away with a 1 s bound: %v, want a BusyError of 3 s", err)
	}
	if len(shared.waits) != 2 {
		t.Fatal("the refused slot was booked")
	}
}

// An install's requests (the code exchange, the account read before its id
// is known, the setup after) share the account's one budget.
func TestInstallRequestsShareTheAccountsLimit(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == tokenPath {
			writeJSON(w, 200, `{"token_type":"Bearer","expires_in":86400,"access_token":"a","refresh_token":"r"}`)
			return
		}
		writeJSON(w, 200, `{"id":1}`)
	}, func(o *Options) { o.RatePerSecond = 0 })
	ctx := context.Background()
	if _, err := env.c.ExchangeCode(ctx, "test.amocrm.ru", "def502"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.Account("test.amocrm.ru", 0, &fakeTS{token: "t"}).GetAccount(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.Account("test.amocrm.ru", 1, &fakeTS{token: "t"}).GetAccount(ctx); err != nil {
		t.Fatal(err)
	}
	if got := env.clock.Total(); got < 2*time.Second/7 {
		t.Fatalf("three requests of one account waited %v in all, want two slots (≈0.3 s)", got)
	}
}
