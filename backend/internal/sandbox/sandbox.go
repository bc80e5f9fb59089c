// Package sandbox is `dispatcher demo`: the real backend beside the simulated
// amoCRM and Telegram (fakeamocrm, faketelegram) in one process, a demo
// account installed through the backend's own doors, and a page that shows
// both sides: a pipeline board, the real widget's deal-card panel, the
// Telegram group and the executors' private chats.
//
// The backend is started exactly as `serve` starts it (app.Start with a
// config.Config); nothing in it knows about the sandbox. The sandbox only
// plays the people: the admin who installs the integration and saves the
// settings, the manager who moves deals, the executors who press buttons.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/config"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

// Backend is the running dispatcher, as the sandbox needs it.
type Backend interface {
	Addr() string
	Shutdown(ctx context.Context) error
}

// StartFunc starts the backend (app.Start). It is passed in because the app
// package runs the demo command and so cannot be imported from here.
type StartFunc func(ctx context.Context, cfg config.Config, log *slog.Logger) (Backend, error)

// Options configure a sandbox.
type Options struct {
	// Addr is where the sandbox page listens (default 127.0.0.1:8090;
	// "127.0.0.1:0" picks a free port).
	Addr string
	// DataDir keeps the backend's SQLite database after the run. Empty: a
	// temporary folder, removed by Close.
	DataDir string
	// WidgetDir is the widget's folder, served as it is (default: widget/
	// at the module root above the working directory).
	WidgetDir string
	// LogLevel of the backend's log (default "warn": the page is the show).
	LogLevel string
	// Log receives the backend's log lines (default: discarded).
	Log *slog.Logger
	// Start starts the backend.
	Start StartFunc
}

// The integration's and the bot's identities in the sandbox. The client
// secret is drawn per run: it signs the widget's tokens, and nobody outside
// this process needs it.
const (
	clientID = "d3m0c11e-0000-4000-8000-000000000001"
	botToken = "7000000042:AAdemoSandboxTokenNotForTelegram00"
	botName  = "AmoDispatchDemoBot"
)

// Sandbox is a running demo: fakes, backend and the page server.
type Sandbox struct {
	opts       Options
	secret     string
	amo        *fakeamocrm.Server
	tg         *faketelegram.Server
	backend    Backend
	backendURL string // where the sandbox reaches the backend
	publicURL  string // the backend's PUBLIC_URL (the widget token's audience)
	tmpDir     string
	ln         net.Listener
	srv        *http.Server
	url        string

	demo *world // what setup created
}

// Start starts the fakes and the backend, installs and configures the demo
// account through the backend's HTTP doors, and serves the page.
func Start(ctx context.Context, opts Options) (sb *Sandbox, err error) {
	if opts.Start == nil {
		return nil, errors.New("sandbox: no backend to start")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:8090"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.WidgetDir == "" {
		if opts.WidgetDir, err = findWidgetDir(); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(filepath.Join(opts.WidgetDir, "script.js")); err != nil {
		return nil, fmt.Errorf("sandbox: %s is not the widget folder (no script.js): run the demo from the repository", opts.WidgetDir)
	}
	s := &Sandbox{opts: opts, secret: randomHex(32)}
	defer func() {
		if err != nil {
			s.Close(context.Background())
		}
	}()
	dataDir := opts.DataDir
	if dataDir == "" {
		if s.tmpDir, err = os.MkdirTemp("", "amodispatch-demo-"); err != nil {
			return nil, err
		}
		dataDir = s.tmpDir
	} else if err := freshDataDir(dataDir); err != nil {
		return nil, err
	}

	// Listen first: a taken port should stop the demo before anything runs.
	if s.ln, err = net.Listen("tcp", opts.Addr); err != nil {
		return nil, fmt.Errorf("sandbox: listen on %s: %w", opts.Addr, err)
	}
	s.url = "http://" + s.ln.Addr().String()

	// The fake amoCRM checks redirect_uri against the backend's, so the
	// backend's address is fixed before either starts.
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.publicURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	s.amo = fakeamocrm.New(fakeamocrm.Options{ClientID: clientID, ClientSecret: s.secret,
		RedirectURI: s.publicURL + "/oauth/amocrm/callback"})
	s.tg = faketelegram.New(botToken, botName)

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	vars := map[string]string{
		"DATA_DIR":             dataDir,
		"LISTEN_ADDR":          fmt.Sprintf("127.0.0.1:%d", port),
		"PUBLIC_URL":           s.publicURL,
		"AMOCRM_CLIENT_ID":     clientID,
		"AMOCRM_CLIENT_SECRET": s.secret,
		"AMOCRM_API_URL":       s.amo.URL(),
		"TELEGRAM_BOT_TOKEN":   botToken,
		"TELEGRAM_API_URL":     s.tg.URL,
		"TELEGRAM_MODE":        config.ModePolling,
		// A key per run: the database outlives the run only for reading.
		"ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(key),
		"LOG_LEVEL":      opts.LogLevel,
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		return nil, err
	}
	if s.backend, err = opts.Start(ctx, cfg, opts.Log); err != nil {
		return nil, fmt.Errorf("sandbox: start the backend: %w", err)
	}
	s.backendURL = "http://" + s.backend.Addr()

	setupCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if s.demo, err = s.setup(setupCtx); err != nil {
		return nil, fmt.Errorf("sandbox: set up the demo account: %w", err)
	}
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(s.ln) }()
	return s, nil
}

// URL is the sandbox page.
func (s *Sandbox) URL() string { return s.url + "/" }

// Close stops the page server, the backend and the fakes, in that order, and
// removes the temporary data folder.
func (s *Sandbox) Close(ctx context.Context) error {
	var err error
	if s.srv != nil {
		err = s.srv.Shutdown(ctx)
	} else if s.ln != nil {
		err = s.ln.Close()
	}
	if s.backend != nil {
		err = errors.Join(err, s.backend.Shutdown(ctx))
	}
	if s.tg != nil {
		s.tg.Close()
	}
	if s.amo != nil {
		s.amo.Close()
	}
	if s.tmpDir != "" {
		err = errors.Join(err, os.RemoveAll(s.tmpDir))
	}
	return err
}

// findWidgetDir finds widget/ at the module root above the working
// directory: the demo serves the widget's files as they are in the
// repository, so a change to them shows on the next page load.
func findWidgetDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			w := filepath.Join(dir, "widget")
			if _, err := os.Stat(filepath.Join(w, "script.js")); err != nil {
				return "", fmt.Errorf("sandbox: the widget's files are not at %s: the demo serves them from the repository, run it from a checkout", w)
			}
			return w, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("sandbox: go.mod not found above the working directory: run `go run ./backend/cmd/dispatcher demo` from the repository, which holds the widget's files the demo serves")
		}
		dir = parent
	}
}

// freshDataDir refuses a folder with a database from an earlier run: the
// simulated amoCRM and Telegram start empty every time, and would disagree
// with what that database remembers.
func freshDataDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "dispatcher.db")); err == nil {
		return fmt.Errorf("sandbox: %s already holds a database from an earlier run; remove it or pick another folder (the simulated amoCRM and Telegram start empty each time)", dir)
	}
	return os.MkdirAll(dir, 0o700)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
