// Package e2e drives the real backend (app.Start: HTTP server, workers,
// database) over HTTP against the amoCRM and Telegram fakes, once per database.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/app"
	"github.com/amodispatch/amodispatch/backend/internal/config"
	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
	"github.com/amodispatch/amodispatch/backend/internal/testkit"
)

const (
	clientID     = "5f3c1c7e-8a0e-4d5c-9c55-2b6f0e3b1a10"
	clientSecret = "test-client-secret-0123456789abcdef0123456789abcdef"
	botToken     = "7000000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
	botName      = "AmoDispatchTestBot"
	encKey       = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
)

// env is one test world: fakes plus the database they share with every
// backend process started in it.
type env struct {
	t     testing.TB
	kind  dbtest.Kind
	amo   *fakeamocrm.Server
	tg    *faketelegram.Server
	dbURL string
	dir   string
	logs  *testkit.Buffer

	firstPort int
	started   bool
	adminTTL  time.Duration // config.WidgetAdminTTL of every backend started; 0: the default
	clock     *testClock    // nil: the wall clock
}

type envOption func(*envConfig)

type envConfig struct {
	amoOpts  fakeamocrm.Options
	dbURL    string
	adminTTL time.Duration
	clock    *testClock
}

// testClock is a world clock a test moves by hand: backends (their timers
// included) and both fakes read it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

// newTestClock starts at the wall clock's millisecond. Whole: PostgreSQL
// rounds a timestamp's nanoseconds to microseconds when River stores a job's
// scheduled_at, while the "now" River fetches with is sent truncated, so a
// job inserted at a frozen clock's fractional microsecond was due half a
// microsecond after "now" and never ran until the clock moved (about every
// second start of TestDispatchOnAControlledClock on PostgreSQL).
func newTestClock() *testClock { return &testClock{now: time.Now().Truncate(time.Millisecond)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// withClock runs the env's backends and fakes on c instead of the wall clock.
func withClock(c *testClock) envOption {
	return func(cfg *envConfig) {
		cfg.clock = c
		cfg.amoOpts.Now = c.Now
	}
}

// withAdminTTL shortens how long backends trust a widget user's admin status,
// so a test sees a demotion take effect without waiting minutes.
func withAdminTTL(d time.Duration) envOption { return func(c *envConfig) { c.adminTTL = d } }

// withDatabaseURL puts the env on a PostgreSQL database of the test's own
// instead of a fresh one on the shared server.
func withDatabaseURL(u string) envOption { return func(c *envConfig) { c.dbURL = u } }

func withAmoOptions(fn func(*fakeamocrm.Options)) envOption {
	return func(c *envConfig) { fn(&c.amoOpts) }
}

func newEnv(t testing.TB, kind dbtest.Kind, opts ...envOption) *env {
	t.Helper()
	var c envConfig
	for _, o := range opts {
		o(&c)
	}
	c.amoOpts.ClientID, c.amoOpts.ClientSecret = clientID, clientSecret
	e := &env{t: t, kind: kind, logs: &testkit.Buffer{}, adminTTL: c.adminTTL, clock: c.clock}
	if c.dbURL != "" {
		e.dbURL = c.dbURL
	} else {
		e.dbURL, e.dir = dbtest.NewURL(t, kind)
	}
	var tgOpts []faketelegram.Option
	if c.clock != nil {
		tgOpts = append(tgOpts, faketelegram.WithClock(c.clock.Now))
	}
	e.tg = faketelegram.New(botToken, botName, tgOpts...)
	t.Cleanup(e.tg.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("backend logs:\n%s", e.logs.String())
		}
	})
	// The fake checks redirect_uri against the backend's; every backend of
	// an env shares one public URL, fixed before any starts.
	e.amoOpts(&c)
	return e
}

func (e *env) amoOpts(c *envConfig) {
	port := freePort(e.t)
	c.amoOpts.RedirectURI = fmt.Sprintf("http://127.0.0.1:%d/oauth/amocrm/callback", port)
	e.amo = fakeamocrm.New(c.amoOpts)
	e.t.Cleanup(e.amo.Close)
	e.firstPort = port
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// backend is one running dispatcher process (in this test process).
type backend struct {
	*app.App
	URL       string
	publicURL string // what amoCRM puts in the widget token's aud
	once      sync.Once
}

// stop shuts the backend down gracefully (once).
func (b *backend) stop(t testing.TB) {
	b.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Logf("shutdown: %v", err)
		}
	})
}

func shutdown(t testing.TB, b *backend) { b.stop(t) }

type backendOption func(map[string]string)

func telegramWebhookMode(vars map[string]string) { vars["TELEGRAM_MODE"] = "webhook" }

// backendVars is the environment of a backend on the env's database and
// fakes listening on port, in process or as a subprocess.
func (e *env) backendVars(port int) map[string]string {
	return map[string]string{
		"DATABASE_URL":         e.dbURL,
		"DATA_DIR":             e.dir,
		"LISTEN_ADDR":          fmt.Sprintf("127.0.0.1:%d", port),
		"PUBLIC_URL":           fmt.Sprintf("http://127.0.0.1:%d", e.firstPort),
		"AMOCRM_CLIENT_ID":     clientID,
		"AMOCRM_CLIENT_SECRET": clientSecret,
		"AMOCRM_API_URL":       e.amo.URL(),
		"TELEGRAM_BOT_TOKEN":   botToken,
		"TELEGRAM_API_URL":     e.tg.URL,
		"ENCRYPTION_KEY":       encKey,
		"LOG_LEVEL":            "debug",
	}
}

// start runs a backend on the env's database and fakes; the first one listens
// on the public URL the fakes know.
func (e *env) start(opts ...backendOption) *backend {
	e.t.Helper()
	port := e.firstPort
	if e.started {
		port = freePort(e.t)
	}
	e.started = true
	vars := e.backendVars(port)
	for _, o := range opts {
		o(vars)
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.WidgetAdminTTL = e.adminTTL
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: level}))
	var appOpts []app.Option
	if e.clock != nil {
		appOpts = append(appOpts, app.WithClock(e.clock.Now))
	}
	a, err := app.Start(context.Background(), cfg, log, appOpts...)
	if err != nil {
		e.t.Fatal(err)
	}
	b := &backend{App: a, URL: "http://" + a.Addr(), publicURL: vars["PUBLIC_URL"]}
	e.t.Cleanup(func() { b.stop(e.t) })
	return b
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func post(t testing.TB, url, contentType, body string, headers ...string) (int, string) {
	t.Helper()
	return send(t, http.MethodPost, url, []byte(body), append([]string{"Content-Type", contentType}, headers...)...)
}

// send makes one request with Go's client.
func send(t testing.TB, method, rawURL string, body []byte, headers ...string) (int, string) {
	t.Helper()
	status, raw, _ := exchange(t, method, rawURL, body, headers...)
	return status, string(raw)
}

// exchange makes one request (headers as name, value pairs) and returns the
// whole answer.
func exchange(t testing.TB, method, rawURL string, body []byte, headers ...string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, rawURL, bytes.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header
}
