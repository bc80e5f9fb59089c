package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=" // 32 bytes of 7

const tgToken = "7000000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaultsWithNothingSet(t *testing.T) {
	c, err := Load(getenv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":8080" || c.UsesPostgres() || c.AmoConfigured() || c.TelegramConfigured() || c.TelegramMode != ModePolling {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.APITimeout != 15*time.Second {
		t.Fatalf("API_TIMEOUT default = %v", c.APITimeout)
	}
	if c.AmoRedirectURI != "http://localhost:8080/oauth/amocrm/callback" {
		t.Fatalf("redirect default = %q", c.AmoRedirectURI)
	}
}

func TestInvalidVariablesAreNamed(t *testing.T) {
	cases := []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL"},
		{map[string]string{"DATABASE_URL": "postgres://u@h/db"}, "ENCRYPTION_KEY"},
		{map[string]string{"ENCRYPTION_KEY": "short"}, "ENCRYPTION_KEY"},
		{map[string]string{"ENCRYPTION_KEY": key + ",bad"}, "ENCRYPTION_KEY"},
		{map[string]string{"PUBLIC_URL": "example.com"}, "PUBLIC_URL"},
		{map[string]string{"AMOCRM_CLIENT_ID": "id"}, "AMOCRM_CLIENT_SECRET"},
		{map[string]string{"AMOCRM_API_URL": "ftp://x"}, "AMOCRM_API_URL"},
		{map[string]string{"TELEGRAM_BOT_TOKEN": "nope"}, "TELEGRAM_BOT_TOKEN"},
		{map[string]string{"TELEGRAM_MODE": "push"}, "TELEGRAM_MODE"},
		{map[string]string{"TELEGRAM_WEBHOOK_SECRET": "has space"}, "TELEGRAM_WEBHOOK_SECRET"},
		{map[string]string{"TELEGRAM_MODE": "webhook", "TELEGRAM_BOT_TOKEN": tgToken, "PUBLIC_URL": "http://dispatch.example.com"}, "PUBLIC_URL"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{map[string]string{"API_TIMEOUT": "0s"}, "API_TIMEOUT"},
		{map[string]string{"API_TIMEOUT": "10m"}, "API_TIMEOUT"},
	}
	for _, tc := range cases {
		_, err := Load(getenv(tc.env))
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != tc.wantVar {
			t.Errorf("%v: got %v, want an error naming %s", tc.env, err, tc.wantVar)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error must be one line: %q", tc.env, err)
		}
	}
}

func TestStringMasksSecrets(t *testing.T) {
	c, err := Load(getenv(map[string]string{
		"DATABASE_URL": "postgres://user:pgsecret@db:5432/x", "ENCRYPTION_KEY": key,
		"AMOCRM_CLIENT_ID": "client", "AMOCRM_CLIENT_SECRET": "amosecret",
		"TELEGRAM_BOT_TOKEN": "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	}))
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	for _, secret := range []string{"pgsecret", "amosecret", "AAAAAAAAAAAAAAAA", key} {
		if strings.Contains(s, secret) {
			t.Errorf("String() leaks %q: %s", secret, s)
		}
	}
	if len(c.EncryptionKeys) != 1 || !c.UsesPostgres() {
		t.Fatalf("parsed config: %+v", c)
	}
}

// The deploy files and the README must name every variable the backend reads:
// compose hands .env to the container whole, so a variable missing from the
// example is one an operator never learns to set.
func TestEveryVariableIsDocumented(t *testing.T) {
	for _, f := range []string{"../../../.env.example", "../../../README.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range Variables {
			if !strings.Contains(string(b), v) {
				t.Errorf("%s does not mention %s", f, v)
			}
		}
	}
}

// Webhook mode against a local Bot API server (or a fake) may use http; polling
// needs no public address at all.
func TestWebhookModeHTTPOnlyOffTelegram(t *testing.T) {
	for _, env := range []map[string]string{
		{"TELEGRAM_MODE": "webhook", "TELEGRAM_BOT_TOKEN": tgToken, "PUBLIC_URL": "https://dispatch.example.com"},
		{"TELEGRAM_MODE": "webhook", "TELEGRAM_BOT_TOKEN": tgToken, "PUBLIC_URL": "http://127.0.0.1:8080", "TELEGRAM_API_URL": "http://127.0.0.1:8081"},
		{"TELEGRAM_MODE": "polling", "TELEGRAM_BOT_TOKEN": tgToken, "PUBLIC_URL": "http://dispatch.example.com"},
	} {
		if _, err := Load(getenv(env)); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}
