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
		"METRICS_TOKEN":      "metricssecret-0123456789",
	}))
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	for _, secret := range []string{"pgsecret", "amosecret", "AAAAAAAAAAAAAAAA", key, "metricssecret"} {
		if strings.Contains(s, secret) {
			t.Errorf("String() leaks %q: %s", secret, s)
		}
	}
	if len(c.EncryptionKeys) != 1 || !c.UsesPostgres() {
		t.Fatalf("parsed config: %+v", c)
	}
}

// The metrics stay off the public address: not on LISTEN_ADDR itself, and a
// token short enough to guess is refused.
func TestMetricsConfig(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		problem string
	}{
		{map[string]string{"METRICS_ADDR": ":8080"}, "METRICS_ADDR"},
		{map[string]string{"METRICS_ADDR": "127.0.0.1:9090", "LISTEN_ADDR": "127.0.0.1:9090"}, "METRICS_ADDR"},
		{map[string]string{"METRICS_TOKEN": "short"}, "METRICS_TOKEN"},
		{map[string]string{"METRICS_ADDR": "127.0.0.1:9090"}, ""},
		{map[string]string{"METRICS_TOKEN": "0123456789abcdef"}, ""},
	} {
		_, err := Load(getenv(c.env))
		var ce *Error
		if c.problem == "" && err != nil || c.problem != "" && (!errors.As(err, &ce) || ce.Var != c.problem) {
			t.Errorf("%v: %v, want a problem with %q", c.env, err, c.problem)
		}
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

func TestEncryptionKeyAcceptsHexAndBase64(t *testing.T) {
	const hexKey = "0707070707070707070707070707070707070707070707070707070707070707" // the same 32 bytes of 7
	other := strings.Repeat("ab", 32)
	c, err := Load(getenv(map[string]string{"ENCRYPTION_KEY": hexKey + ", " + key + "," + strings.ToUpper(other)}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.EncryptionKeys) != 3 {
		t.Fatalf("parsed %d keys, want 3", len(c.EncryptionKeys))
	}
	if string(c.EncryptionKeys[0]) != string(c.EncryptionKeys[1]) || c.EncryptionKeys[0][0] != 7 || len(c.EncryptionKeys[0]) != 32 {
		t.Fatalf("hex and base64 of the same key differ: %x %x", c.EncryptionKeys[0], c.EncryptionKeys[1])
	}
	if c.EncryptionKeys[2][0] != 0xab {
		t.Fatalf("upper-case hex key parsed as %x", c.EncryptionKeys[2])
	}
	for _, bad := range []string{hexKey[:62], hexKey + "07", "zz" + hexKey[2:], hexKey + ",short"} {
		var ce *Error
		if _, err := Load(getenv(map[string]string{"ENCRYPTION_KEY": bad})); !errors.As(err, &ce) || ce.Var != "ENCRYPTION_KEY" {
			t.Errorf("ENCRYPTION_KEY=%q: got %v, want an ENCRYPTION_KEY error", bad, err)
		}
	}
}

func TestStringMasksDatabasePasswordEverywhere(t *testing.T) {
	cases := []struct{ url, secret string }{
		{"postgres://user:pgsecret@db:5432/x", "pgsecret"},
		{"postgres://user@db:5432/x?sslmode=disable&password=qsecret", "qsecret"},
		{"postgresql://user@db/x?sslpassword=keysecret", "keysecret"},
		{"postgres://user:p@ss/w0rdsecret@db:5432/x", "w0rdsecret"}, // unescaped '/' and '@' in the password
		{"postgres://user:pa#hashsecret@db/x", "hashsecret"},
	}
	for _, tc := range cases {
		c, err := Load(getenv(map[string]string{"DATABASE_URL": tc.url, "ENCRYPTION_KEY": key}))
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if s := c.String(); strings.Contains(s, tc.secret) {
			t.Errorf("String() leaks %q: %s", tc.secret, s)
		}
	}
	c, _ := Load(getenv(map[string]string{"DATABASE_URL": "postgres://user:pw@db:5432/x?sslmode=disable", "ENCRYPTION_KEY": key}))
	if s := c.String(); !strings.Contains(s, "db:5432/x") || !strings.Contains(s, "sslmode=disable") {
		t.Errorf("String() hides more than the password: %s", s)
	}
}
