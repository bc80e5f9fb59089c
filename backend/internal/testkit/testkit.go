// Package testkit holds the helpers that several test packages share: a log
// buffer safe under concurrent writes and a headless Chromium. It is for
// tests only; no production package may import it (app.TestDependencyRules).
package testkit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Buffer is a bytes.Buffer guarded by a mutex: a log sink the code under test
// writes while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ChromiumPath is where Debian's chromium package puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// Chromium starts a headless Chromium with a fresh profile and a window of
// width×height, and returns its context; listen receives the page's events
// (on chromedp's reader goroutine). The browser stops at the test's cleanup.
// Without Chromium the test is skipped loudly; REQUIRE_CHROMIUM=1 turns that
// into a failure.
func Chromium(t *testing.T, width, height int, listen func(ev any)) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		if os.Getenv("REQUIRE_CHROMIUM") == "1" {
			t.Fatalf("Chromium not found at %s and REQUIRE_CHROMIUM=1", ChromiumPath)
		}
		t.Logf("LEFT OUT: Chromium not found (%s); install it with apt-get install -y chromium", ChromiumPath)
		t.Skip("LEFT OUT: Chromium not found")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithListener(listen))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first call starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// browserDeadline bounds one browser step.
const browserDeadline = 30 * time.Second

// Do performs browser steps in ctx (from Chromium) with a deadline; an error
// fails the test.
func Do(t testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, browserDeadline)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// Eval runs JavaScript in ctx (from Chromium) and decodes its result.
func Eval[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, browserDeadline)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("browser: evaluate %s: %v", js, err)
	}
	return v
}

// Exception is an uncaught exception of the page as a line: message, script
// and line number.
func Exception(ev *runtime.EventExceptionThrown) string {
	d := ev.ExceptionDetails
	msg := d.Text
	if d.Exception != nil {
		msg += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1)
}
