package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/testkit"
)

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
	out := &testkit.Buffer{}
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
	// The container healthcheck: the same environment, the binary asks /readyz.
	hc := &bytes.Buffer{}
	if err := Run(context.Background(), []string{"healthcheck"}, func(k string) string { return env[k] }, hc); err != nil || hc.String() != "ready\n" {
		t.Fatalf("healthcheck of a ready backend: %v %q", err, hc.String())
	}
	resp, _ := http.Get(fmt.Sprintf("http://%s/oauth/amocrm/callback?code=x&referer=a.amocrm.ru", addr))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("install without amoCRM credentials: %d", resp.StatusCode)
	}
	resp, _ = http.Get(fmt.Sprintf("http://%s/api/widget/state", addr))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "amoCRM is not configured") {
		t.Fatalf("widget API without amoCRM credentials: %d %s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := Run(context.Background(), []string{"healthcheck"}, func(k string) string { return env[k] }, &bytes.Buffer{}); err == nil {
		t.Fatal("healthcheck passed with the backend stopped")
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
	out := &testkit.Buffer{}
	env := map[string]string{"DATA_DIR": dir}
	if err := Run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "00001_foundation.sql") {
		t.Fatalf("migrate output: %s", out.String())
	}
	out2 := &testkit.Buffer{}
	if err := Run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, out2); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out2.String(), "count=0") {
		t.Fatalf("second migrate must apply nothing: %s", out2.String())
	}
}

func TestRotateKeysCommand(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		oldKey, newKey, strangerKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
		b64 := base64.StdEncoding.EncodeToString
		dbURL, dir := dbtest.NewURL(t, kind)
		if dir == "" {
			dir = t.TempDir() // PostgreSQL: keep DATA_DIR out of the source tree
		}
		install := func(db *store.DB, id int64) {
			t.Helper()
			_, _, err := db.SaveInstallation(ctx, store.Installation{ID: id, Subdomain: fmt.Sprint("acc", id), Domain: fmt.Sprintf("acc%d.amocrm.ru", id),
				Tokens: dispatch.Tokens{Access: "access-plain", Refresh: "refresh-plain", ExpiresAt: time.Now().Add(time.Hour)}})
			if err != nil {
				t.Fatal(err)
			}
		}
		install(dbtest.OpenWithKeys(t, dbURL, dir, nil, oldKey), 1)

		env := map[string]string{"DATABASE_URL": dbURL, "DATA_DIR": dir, "ENCRYPTION_KEY": b64(newKey) + "," + b64(oldKey)}
		rotate := func() (string, error) {
			out := &testkit.Buffer{}
			err := Run(ctx, []string{"rotate-keys"}, func(k string) string { return env[k] }, out)
			for _, leak := range []string{"access-plain", "refresh-plain", "v1:"} {
				if strings.Contains(out.String(), leak) || (err != nil && strings.Contains(err.Error(), leak)) {
					t.Fatalf("rotate-keys shows %q:\n%s\n%v", leak, out, err)
				}
			}
			return out.String(), err
		}
		if out, err := rotate(); err != nil || !strings.Contains(out, "1 accounts: 4 values re-sealed") {
			t.Fatalf("first run: %v\n%s", err, out)
		}
		if out, err := rotate(); err != nil || !strings.Contains(out, "0 values re-sealed, 4 already current") {
			t.Fatalf("second run: %v\n%s", err, out)
		}
		tok, err := dbtest.OpenWithKeys(t, dbURL, dir, nil, newKey).Tokens(ctx, 1)
		if err != nil || tok.Access.Reveal() != "access-plain" || tok.Refresh.Reveal() != "refresh-plain" {
			t.Fatalf("tokens under the new key alone: %v", err)
		}

		// A value no configured key opens fails the command, named, not shown.
		install(dbtest.OpenWithKeys(t, dbURL, dir, nil, strangerKey), 2)
		out, err := rotate()
		if err == nil || !strings.Contains(err.Error(), "account 2 access_token_enc") || !strings.Contains(out, "4 unreadable") {
			t.Fatalf("unreadable values: %v\n%s", err, out)
		}
	})
}

func TestRotateKeysRefusesUnmigratedDatabase(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir(), "ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))}
	err := Run(context.Background(), []string{"rotate-keys"}, func(k string) string { return env[k] }, &testkit.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "dispatcher migrate") {
		t.Fatalf("err = %v", err)
	}
}
