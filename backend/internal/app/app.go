// Package app wires the configuration, storage, clients and transports into a
// running dispatcher; cmd/dispatcher's main only calls Run.
package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/config"
	"github.com/amodispatch/amodispatch/backend/internal/flow"
	"github.com/amodispatch/amodispatch/backend/internal/httpapi"
	"github.com/amodispatch/amodispatch/backend/internal/metrics"
	"github.com/amodispatch/amodispatch/backend/internal/sandbox"
	"github.com/amodispatch/amodispatch/backend/internal/secret"
	"github.com/amodispatch/amodispatch/backend/internal/service"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
	"github.com/amodispatch/amodispatch/backend/internal/tgbot"
)

const usage = `usage: dispatcher [serve|demo|migrate|rotate-keys|healthcheck|version]
  serve        run the backend (default)
  demo         run the backend with a simulated amoCRM and Telegram and a page showing both (see -h)
  migrate      apply database migrations and exit
  rotate-keys  re-seal stored secrets with the first ENCRYPTION_KEY and exit
  healthcheck  exit 0 when this machine's backend answers /readyz (for container healthchecks)
  version      print the version`

// Version is set at build time with -ldflags "-X .../app.Version=...".
var Version = "dev"

// Run executes the command in args until ctx ends or SIGINT/SIGTERM arrives.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "dispatcher", Version)
		return nil
	case "demo":
		return sandbox.Run(ctx, args[1:], getenv, stdout, startBackend)
	case "serve", "migrate", "rotate-keys", "healthcheck":
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	if cmd == "healthcheck" {
		return healthcheck(ctx, cfg, stdout)
	}
	log := newLogger(cfg, stdout)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if cmd == "migrate" {
		db, err := openStore(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer db.Close()
		applied, err := db.Migrate(ctx)
		if err != nil {
			return err
		}
		if err := flow.Migrate(ctx, db); err != nil {
			return err
		}
		log.Info("migrations applied", "count", len(applied), "files", applied)
		return nil
	}
	if cmd == "rotate-keys" {
		return rotateKeys(ctx, cfg, log, stdout)
	}

	a, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return a.Shutdown(shutdownCtx)
}

// startBackend is Start as the sandbox calls it (it cannot import this package).
func startBackend(ctx context.Context, cfg config.Config, log *slog.Logger) (sandbox.Backend, error) {
	a, err := Start(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// healthcheck asks the backend listening on this machine whether it is ready.
// The image has no shell or curl, so compose's healthcheck runs the binary.
func healthcheck(ctx context.Context, cfg config.Config, stdout io.Writer) error {
	_, port, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("healthcheck: LISTEN_ADDR %q: %w", cfg.ListenAddr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort("127.0.0.1", port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %s", resp.Status)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func encryptionKeys(cfg config.Config, log *slog.Logger) ([][]byte, error) {
	if len(cfg.EncryptionKeys) > 0 {
		return cfg.EncryptionKeys, nil
	}
	key, created, err := secret.LoadOrCreateKeyFile(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("ENCRYPTION_KEY not set: generated a key file for the embedded database; back it up with the data directory",
			"path", filepath.Join(cfg.DataDir, "encryption.key"))
	}
	return [][]byte{key}, nil
}

// rotateKeys re-seals every stored secret that an older key sealed, so the
// operator can then drop that key from ENCRYPTION_KEY.
func rotateKeys(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	db, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	// Only the schema this binary knows: a column it does not know of might
	// hold sealed values it would leave under the old key.
	if err := db.CheckSchema(ctx); err != nil {
		return err
	}
	rep, err := db.RotateKeys(ctx)
	log.Info("rotate keys done", "accounts", rep.Accounts, "rotated", rep.Rotated, "current", rep.Current,
		"raced", rep.Raced, "unreadable", len(rep.Unreadable))
	summary := fmt.Sprintf("rotate-keys: %d accounts: %d values re-sealed, %d already current, %d changed meanwhile, %d unreadable",
		rep.Accounts, rep.Rotated, rep.Current, rep.Raced, len(rep.Unreadable))
	if rep.Rotated > 0 || rep.Raced > 0 {
		// A replica still sealing with the old key shows up only on a rerun.
		summary += "; run it again until nothing is re-sealed before dropping the old key"
	}
	fmt.Fprintln(stdout, summary)
	return err
}

func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (*store.DB, error) {
	keys, err := encryptionKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	box, err := secret.New(keys)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, store.Options{URL: cfg.DatabaseURL, SQLitePath: filepath.Join(cfg.DataDir, "dispatcher.db"), Box: box, Logger: log})
}

// App is a running dispatcher.
// Option adjusts what Start builds beyond the configuration.
type Option func(*options)

type options struct{ now func() time.Time }

// WithClock runs the backend on a controllable clock: timers (River's
// scheduled jobs) and time checks use now instead of the wall clock. Tests
// use it to cross minutes and hours without waiting.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

type App struct {
	cfg     config.Config
	log     *slog.Logger
	db      *store.DB
	http    *fiber.App
	ln      net.Listener
	svc     *service.Service
	client  *telegram.Client // nil: Telegram not configured
	updates *tgbot.Handler   // nil with client
	flow    *flow.Flow
	metrics *metrics.Metrics
	// metricsSrv serves /metrics on METRICS_ADDR (nil without it).
	metricsSrv *http.Server
	metricsLn  net.Listener
	cancel     context.CancelFunc
	workers    sync.WaitGroup
}

// Start migrates the database, starts the HTTP server and the background
// workers, and returns once the server is listening. It builds the parts
// bottom-up, each from the ones before it: store, clients, service, flow,
// the Telegram update handler, HTTP.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (*App, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	log.Info("starting dispatcher", "version", Version, "config", cfg.String())
	db, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if len(applied) > 0 {
		log.Info("migrations applied", "files", applied)
	}
	if err := flow.Migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	keys, _ := encryptionKeys(cfg, log)
	a := &App{cfg: cfg, log: log, db: db, metrics: metrics.New()}
	a.metrics.WatchDatabase(db)

	var amo *amocrm.Client
	if cfg.AmoConfigured() {
		opts := amocrm.Options{BaseURL: cfg.AmoAPIURL, ClientID: cfg.AmoClientID, ClientSecret: cfg.AmoClientSecret,
			RedirectURI: cfg.AmoRedirectURI, Logger: log,
			HTTPClient: &http.Client{Timeout: cfg.APITimeout, Transport: a.metrics.Transport("amocrm", nil)},
			// One quick repeat absorbs a blip; longer trouble is the jobs'
			// to wait out with their back-off, not multiplied inside each try.
			MaxAttempts: 2}
		if shared := db.AmoRateLimiter(); shared != nil {
			opts.Shared = shared // replicas on PostgreSQL keep to one budget per account
		}
		amo = amocrm.New(opts)
	} else {
		log.Warn("amoCRM is not configured (AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET): installs are refused until it is")
	}
	if cfg.TelegramConfigured() {
		a.client, err = telegram.New(telegram.Options{Token: cfg.TelegramBotToken, APIURL: cfg.TelegramAPIURL, Logger: log,
			CallTimeout: cfg.APITimeout, Ledger: paceLedger{db.TelegramPace()},
			// The library's own bound on a call (polls included) stays; only the
			// counting transport is added.
			HTTPClient: &http.Client{Timeout: 60 * time.Second, Transport: a.metrics.Transport("telegram", nil)}})
		if err != nil {
			db.Close()
			return nil, err
		}
	} else {
		log.Warn("Telegram is not configured (TELEGRAM_BOT_TOKEN): the bot is off")
	}
	a.svc = service.New(service.Config{PublicURL: cfg.PublicURL, ClientID: cfg.AmoClientID, ClientSecret: cfg.AmoClientSecret,
		StateKeys: deriveAll(keys, "oauth-state"), WebhookQuota: float64(cfg.WebhookQuota)}, db, amo, log, o.now)

	pgURL := ""
	if cfg.UsesPostgres() {
		pgURL = cfg.DatabaseURL
	}
	fo := flow.Options{DB: db, CRM: a.svc, Log: log, Now: o.now, Metrics: a.metrics, PostgresURL: pgURL, Workers: cfg.JobWorkers, ReconcileInterval: cfg.ReconcileInterval,
		Chores: []flow.Chore{
			{Name: "refresh_tokens", Interval: 10 * time.Minute, Run: a.svc.RefreshDue},
			{Name: "retry_setups", Interval: 5 * time.Minute, Run: a.svc.RetrySetups},
		}}
	if a.client != nil {
		fo.Sender = a.client // a nil *Client in the interface would not read as "not configured"
	}
	if a.flow, err = flow.New(ctx, fo); err != nil {
		db.Close()
		return nil, err
	}

	deps := httpapi.Deps{Ready: a.ready, AmoClientID: cfg.AmoClientID, Log: log, Metrics: a.metrics,
		SecureCookies: strings.HasPrefix(cfg.PublicURL, "https://")}
	if cfg.MetricsAddr == "" && cfg.MetricsToken != "" {
		deps.MetricsHandler = a.metrics.Handler(cfg.MetricsToken)
	}
	if amo != nil {
		deps.Installer, deps.Intake = a.svc, a.flow
		var links service.BotLinks
		if a.client != nil {
			links = a.client
		}
		deps.Widget = service.NewWidget(a.svc, amocrm.WidgetTokenVerifier{Secret: []byte(cfg.AmoClientSecret), ClientID: cfg.AmoClientID,
			Audience: amocrm.AudienceOf(cfg.AmoRedirectURI), Leeway: time.Minute}, a.flow, links, cfg.WidgetAdminTTL)
	}
	if a.client != nil {
		a.updates = tgbot.New(tgbot.Options{Client: a.client, Inbox: inbox{db}, Chats: a.svc, Orders: a.flow, Owner: a.svc.Owner(), Logger: log,
			Metrics: a.metrics})
		deps.Updates, deps.Bot = a.updates, a.client
		if cfg.TelegramMode == config.ModeWebhook {
			deps.TelegramSecrets = telegramSecrets(cfg, keys)
		}
	}
	a.http = httpapi.New(deps)

	a.ln, err = net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	go func() {
		if err := a.http.Listener(a.ln); err != nil {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("listening", "addr", a.ln.Addr().String())
	if cfg.MetricsAddr != "" {
		if a.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			_ = a.http.Shutdown()
			db.Close()
			return nil, fmt.Errorf("listen on %s (METRICS_ADDR): %w", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metrics.Handler(cfg.MetricsToken))
		a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := a.metricsSrv.Serve(a.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		log.Info("metrics listening", "addr", a.metricsLn.Addr().String())
	}

	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	if err := a.flow.Start(wctx); err != nil {
		cancel()
		_ = a.http.Shutdown()
		db.Close()
		return nil, err
	}
	secret := ""
	if len(deps.TelegramSecrets) > 0 {
		secret = deps.TelegramSecrets[0]
	}
	a.startTelegram(wctx, secret)
	return a, nil
}

// telegramSecrets are the webhook secret tokens accepted: the first is set
// with setWebhook; the others are what replicas not yet rotated may have set.
func telegramSecrets(cfg config.Config, keys [][]byte) []string {
	if cfg.TelegramWebhookSecret != "" {
		return []string{cfg.TelegramWebhookSecret}
	}
	var out []string
	for _, k := range deriveAll(keys, "telegram-webhook:"+cfg.TelegramBotToken) {
		out = append(out, hex.EncodeToString(k)[:48])
	}
	return out
}

// startTelegram runs the update handler, and either the poller or the
// webhook's registration.
func (a *App) startTelegram(ctx context.Context, telegramSecret string) {
	if a.updates == nil {
		return
	}
	a.go_(func() { a.updates.Process(ctx, time.Second, 8) })
	if a.cfg.TelegramMode == config.ModePolling {
		a.go_(func() { _ = a.updates.Poll(ctx) })
		return
	}
	a.go_(func() {
		url := a.cfg.PublicURL + "/telegram/webhook"
		for delay := time.Second; ; delay = min(2*delay, 5*time.Minute) {
			err := a.client.SetWebhook(ctx, url, telegramSecret)
			if err == nil {
				a.log.Info("telegram webhook set", "url", url)
				return
			}
			a.log.Warn("telegram setWebhook failed, retrying", "err", err, "in", delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
	})
}

func (a *App) go_(fn func()) {
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		fn()
	}()
}

func (a *App) ready(ctx context.Context) error {
	if err := a.db.Ping(ctx); err != nil {
		return err
	}
	return a.db.CheckSchema(ctx)
}

// Addr is the address the HTTP server listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// MetricsAddr is the address /metrics listens on ("" without METRICS_ADDR).
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// Service exposes the use cases (tests drive some directly).
func (a *App) Service() *service.Service { return a.svc }

// Flow exposes the dispatch flow (tests drive some of it directly).
func (a *App) Flow() *flow.Flow { return a.flow }

// Store exposes the database (tests inspect it).
func (a *App) Store() *store.DB { return a.db }

// Shutdown stops accepting requests, stops the workers and closes the
// database last.
func (a *App) Shutdown(ctx context.Context) error {
	err := a.http.ShutdownWithContext(ctx)
	if a.metricsSrv != nil {
		err = errors.Join(err, a.metricsSrv.Shutdown(ctx))
	}
	err = errors.Join(err, a.flow.Stop(ctx))
	a.cancel()
	done := make(chan struct{})
	go func() { a.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, errors.New("workers did not stop in time"))
	}
	return errors.Join(err, a.db.Close())
}

func derive(key []byte, purpose string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(purpose))
	return mac.Sum(nil)
}

// deriveAll derives purpose's key from each encryption key, the current first.
func deriveAll(keys [][]byte, purpose string) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = derive(k, purpose)
	}
	return out
}

// Routes lists the HTTP routes the server answers, middleware excluded; tests
// walk them so that no door escapes a security check.
func (a *App) Routes() []fiber.Route { return a.http.GetRoutes(true) }
