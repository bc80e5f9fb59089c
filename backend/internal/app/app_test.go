package app

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestRunRefusesBadConfigWithOneLine(t *testing.T) {
	env := map[string]string{"TELEGRAM_MODE": "push", "DATA_DIR": t.TempDir()}
	err := Run(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "TELEGRAM_MODE") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v", err)
	}
	if err := Run(context.Background(), []string{"bogus"}, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
}

func TestServeWithoutCredentials(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{"DATA_DIR": t.TempDir(), "LISTEN_ADDR": addr}
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"serve"}, func(k string) string { return env[k] }, out) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://%s/readyz", addr))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("/readyz = %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, err := http.Get(fmt.Sprintf("http://%s/healthz", addr)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v", err)
	}
	resp, _ := http.Get(fmt.Sprintf("http://%s/oauth/amocrm/callback?code=x&referer=a.amocrm.ru", addr))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("install without amoCRM credentials: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	logs := out.String()
	for _, want := range []string{"amoCRM is not configured", "Telegram is not configured", "migrations applied"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	out := &lockedBuffer{}
	env := map[string]string{"DATA_DIR": dir}
	if err := Run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "00001_foundation.sql") {
		t.Fatalf("migrate output: %s", out.String())
	}
	out2 := &lockedBuffer{}
	if err := Run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, out2); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out2.String(), "count=0") {
		t.Fatalf("second migrate must apply nothing: %s", out2.String())
	}
}
