package amocrm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testSecret = "client-secret-DO-NOT-LEAK"

// fakeClock drives both the limiter and the back-off without real waiting.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
	f.slept = append(f.slept, d)
	return nil
}

func (f *fakeClock) Slept() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.slept...)
}

func (f *fakeClock) Total() time.Duration {
	var sum time.Duration
	for _, d := range f.Slept() {
		sum += d
	}
	return sum
}

// fakeTS is a TokenSource whose Refresh hands out a fixed new token.
type fakeTS struct {
	mu         sync.Mutex
	token      string
	next       string
	refreshErr error
	failed     []string
}

func (f *fakeTS) AccessToken(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.token, nil
}

func (f *fakeTS) Refresh(_ context.Context, failed string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, failed)
	if f.refreshErr != nil {
		return "", f.refreshErr
	}
	f.token = f.next
	return f.next, nil
}

func (f *fakeTS) Failed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.failed...)
}

type testEnv struct {
	srv   *httptest.Server
	c     *Client
	clock *fakeClock
	hits  atomic.Int64
}

// newEnv starts an httptest server and a Client pointed at it with a fake
// clock and no rate limit unless mod changes that.
func newEnv(t *testing.T, h http.HandlerFunc, mod ...func(*Options)) *testEnv {
	t.Helper()
	env := &testEnv{clock: newFakeClock()}
	env.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(env.srv.Close)
	opts := Options{
		BaseURL:       env.srv.URL,
		ClientID:      "client-id-1",
		ClientSecret:  testSecret,
		RedirectURI:   "https://dispatch.example/oauth/callback",
		RatePerSecond: -1,
		Sleep:         env.clock.Sleep,
		Now:           env.clock.Now,
	}
	for _, m := range mod {
		m(&opts)
	}
	env.c = New(opts)
	return env
}

func (e *testEnv) api(ts TokenSource) *API {
	return e.c.Account("test.amocrm.ru", 1, ts)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	ct := "application/hal+json"
	if status >= 400 {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	switch b := v.(type) {
	case string:
		_, _ = io.WriteString(w, b)
	default:
		_ = json.NewEncoder(w).Encode(v)
	}
}

func problem(status int, title string) string {
	b, _ := json.Marshal(map[string]any{
		"title":  title,
		"type":   "https://httpstatus.es/" + http.StatusText(status),
		"status": status,
		"detail": title + " detail",
	})
	return string(b)
}
