// Package config reads the process environment into a typed, validated Config
// once at start-up; everything else receives the values it needs from it.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/amodispatch/amodispatch/backend/internal/secret"
)

// DefaultTelegramAPIURL is Telegram's own Bot API server.
const DefaultTelegramAPIURL = "https://api.telegram.org"

// TelegramMode selects how updates reach the bot.
const (
	ModePolling = "polling"
	ModeWebhook = "webhook"
)

type Config struct {
	DatabaseURL string `env:"DATABASE_URL"`
	DataDir     string `env:"DATA_DIR" envDefault:"./data"`
	ListenAddr  string `env:"LISTEN_ADDR" envDefault:":8080"`
	PublicURL   string `env:"PUBLIC_URL" envDefault:"http://localhost:8080"`
	LogLevel    string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat   string `env:"LOG_FORMAT" envDefault:"text"`

	AmoClientID     string `env:"AMOCRM_CLIENT_ID"`
	AmoClientSecret string `env:"AMOCRM_CLIENT_SECRET"`
	AmoRedirectURI  string `env:"AMOCRM_REDIRECT_URI"`
	AmoAPIURL       string `env:"AMOCRM_API_URL"`

	TelegramBotToken      string `env:"TELEGRAM_BOT_TOKEN"`
	TelegramAPIURL        string `env:"TELEGRAM_API_URL" envDefault:"https://api.telegram.org"`
	TelegramMode          string `env:"TELEGRAM_MODE" envDefault:"polling"`
	TelegramWebhookSecret string `env:"TELEGRAM_WEBHOOK_SECRET"`

	// ReconcileInterval: how often deals in the trigger stages are re-listed
	// from amoCRM to catch webhooks amoCRM lost.
	ReconcileInterval time.Duration `env:"RECONCILE_INTERVAL" envDefault:"1m"`
	// JobWorkers bounds the durable jobs this process runs at once.
	JobWorkers int `env:"JOB_WORKERS" envDefault:"20"`
	// WebhookQuota: amoCRM webhook deliveries an account may have stored per
	// second in this process, in bursts of ten seconds' worth; more get 429
	// and the reconciler catches their deals. 0 turns the quota off.
	WebhookQuota int `env:"WEBHOOK_QUOTA" envDefault:"20"`
	// APITimeout bounds one request to amoCRM or Telegram. A request that
	// times out is retried by its job, which first checks what the earlier
	// attempt may already have done.
	APITimeout time.Duration `env:"API_TIMEOUT" envDefault:"15s"`

	// MetricsAddr is a listen address of its own for /metrics, kept off the
	// public one (e.g. 127.0.0.1:9090 or an internal interface).
	MetricsAddr string `env:"METRICS_ADDR"`
	// MetricsToken, when set, is the bearer token a scrape must carry; set
	// without METRICS_ADDR it serves /metrics on LISTEN_ADDR behind it.
	MetricsToken string `env:"METRICS_TOKEN"`

	// WidgetAdminTTL: how long a widget user's admin status, read from
	// amoCRM, is trusted (0: service.DefaultAdminTTL). Not read from the
	// environment; tests shorten it to see a demotion take effect.
	WidgetAdminTTL time.Duration `env:"-"`

	// EncryptionKeys come from ENCRYPTION_KEY: comma-separated keys of 32
	// bytes, each hex or base64; the first encrypts, all decrypt (key rotation).
	EncryptionKeys [][]byte `env:"-"`
	encryptionRaw  string
}

// Error names the variable at fault so start-up can stop with one clear line.
type Error struct {
	Var    string
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("config: %s: %s", e.Var, e.Reason) }

var telegramTokenRe = regexp.MustCompile(`^[0-9]+:[A-Za-z0-9_-]{20,}$`)
var webhookSecretRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// Variables are the environment variables Load reads.
var Variables = []string{"DATABASE_URL", "DATA_DIR", "LISTEN_ADDR", "PUBLIC_URL", "LOG_LEVEL", "LOG_FORMAT",
	"AMOCRM_CLIENT_ID", "AMOCRM_CLIENT_SECRET", "AMOCRM_REDIRECT_URI", "AMOCRM_API_URL",
	"TELEGRAM_BOT_TOKEN", "TELEGRAM_API_URL", "TELEGRAM_MODE", "TELEGRAM_WEBHOOK_SECRET", "ENCRYPTION_KEY",
	"RECONCILE_INTERVAL", "JOB_WORKERS", "API_TIMEOUT", "WEBHOOK_QUOTA", "METRICS_ADDR", "METRICS_TOKEN"}

// Load parses and validates the environment given by getenv.
func Load(getenv func(string) string) (Config, error) {
	environ := map[string]string{}
	for _, name := range Variables {
		if v := getenv(name); v != "" {
			environ[name] = v
		}
	}
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c.encryptionRaw = environ["ENCRYPTION_KEY"]
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) validate() error {
	if c.DatabaseURL != "" && !c.UsesPostgres() {
		return &Error{"DATABASE_URL", "must be a postgres:// or postgresql:// URL (leave it unset for the embedded SQLite database)"}
	}
	if err := checkURL(c.PublicURL); err != nil {
		return &Error{"PUBLIC_URL", err.Error()}
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")

	if (c.AmoClientID == "") != (c.AmoClientSecret == "") {
		return &Error{"AMOCRM_CLIENT_SECRET", "AMOCRM_CLIENT_ID and AMOCRM_CLIENT_SECRET must be set together"}
	}
	if c.AmoRedirectURI == "" {
		c.AmoRedirectURI = c.PublicURL + "/oauth/amocrm/callback"
	} else if err := checkURL(c.AmoRedirectURI); err != nil {
		return &Error{"AMOCRM_REDIRECT_URI", err.Error()}
	}
	if c.AmoAPIURL != "" {
		if err := checkURL(c.AmoAPIURL); err != nil {
			return &Error{"AMOCRM_API_URL", err.Error()}
		}
		c.AmoAPIURL = strings.TrimRight(c.AmoAPIURL, "/")
	}

	if c.TelegramBotToken != "" && !telegramTokenRe.MatchString(c.TelegramBotToken) {
		return &Error{"TELEGRAM_BOT_TOKEN", "does not look like a bot token (123456:ABC...)"}
	}
	if err := checkURL(c.TelegramAPIURL); err != nil {
		return &Error{"TELEGRAM_API_URL", err.Error()}
	}
	c.TelegramAPIURL = strings.TrimRight(c.TelegramAPIURL, "/")
	switch c.TelegramMode {
	case ModePolling, ModeWebhook:
	default:
		return &Error{"TELEGRAM_MODE", fmt.Sprintf("must be %q or %q, got %q", ModePolling, ModeWebhook, c.TelegramMode)}
	}
	// Telegram's own servers call webhooks over https only; a local Bot API
	// server (or a test fake) at another TELEGRAM_API_URL may call http.
	if c.TelegramMode == ModeWebhook && c.TelegramConfigured() && c.TelegramAPIURL == DefaultTelegramAPIURL &&
		!strings.HasPrefix(c.PublicURL, "https://") {
		return &Error{"PUBLIC_URL", "must be an https:// URL in webhook mode (Telegram calls webhooks over https only); use TELEGRAM_MODE=polling without one"}
	}
	if c.TelegramWebhookSecret != "" && !webhookSecretRe.MatchString(c.TelegramWebhookSecret) {
		return &Error{"TELEGRAM_WEBHOOK_SECRET", "1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)"}
	}

	if c.ReconcileInterval < 10*time.Second {
		return &Error{"RECONCILE_INTERVAL", "must be a duration of at least 10s, e.g. 5m"}
	}
	if c.JobWorkers < 1 || c.JobWorkers > 1000 {
		return &Error{"JOB_WORKERS", "must be between 1 and 1000"}
	}
	if c.WebhookQuota < 0 || c.WebhookQuota > 100000 {
		return &Error{"WEBHOOK_QUOTA", "must be between 0 (no quota) and 100000 webhooks a second"}
	}
	if c.APITimeout < time.Second || c.APITimeout > 2*time.Minute {
		return &Error{"API_TIMEOUT", "must be a duration between 1s and 2m, e.g. 15s"}
	}
	if c.MetricsAddr != "" && c.MetricsAddr == c.ListenAddr {
		return &Error{"METRICS_ADDR", "must differ from LISTEN_ADDR (the metrics stay off the public address; use METRICS_TOKEN to serve them there)"}
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		return &Error{"METRICS_TOKEN", "must be at least 16 characters (openssl rand -hex 16)"}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return &Error{"LOG_LEVEL", "must be debug, info, warn or error"}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return &Error{"LOG_FORMAT", "must be text or json"}
	}

	if c.encryptionRaw != "" {
		for i, part := range strings.Split(c.encryptionRaw, ",") {
			key, err := secret.ParseKey(part)
			if err != nil {
				return &Error{"ENCRYPTION_KEY", fmt.Sprintf("key %d must be 32 bytes as 64 hex characters (openssl rand -hex 32) or base64 (openssl rand -base64 32)", i+1)}
			}
			c.EncryptionKeys = append(c.EncryptionKeys, key)
		}
	} else if c.UsesPostgres() {
		// A shared database is a production install: a key generated on one
		// replica's disk would leave the others unable to read the tokens.
		return &Error{"ENCRYPTION_KEY", "required when DATABASE_URL is set (openssl rand -base64 32)"}
	}
	return nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	return nil
}

// UsesPostgres reports whether DATABASE_URL selects PostgreSQL.
func (c Config) UsesPostgres() bool {
	return strings.HasPrefix(c.DatabaseURL, "postgres://") || strings.HasPrefix(c.DatabaseURL, "postgresql://")
}

// AmoConfigured reports whether the amoCRM integration credentials are present.
func (c Config) AmoConfigured() bool { return c.AmoClientID != "" }

// TelegramConfigured reports whether a bot token is present.
func (c Config) TelegramConfigured() bool { return c.TelegramBotToken != "" }

// String prints the configuration with every secret masked.
func (c Config) String() string {
	db := "sqlite (" + c.DataDir + ")"
	if c.UsesPostgres() {
		db = maskURL(c.DatabaseURL)
	}
	return fmt.Sprintf("database=%s listen=%s public_url=%s amocrm_client_id=%s amocrm_client_secret=%s amocrm_redirect_uri=%s amocrm_api_url=%s telegram_token=%s telegram_api_url=%s telegram_mode=%s encryption_keys=%d metrics_addr=%s metrics_token=%s",
		db, c.ListenAddr, c.PublicURL, c.AmoClientID, mask(c.AmoClientSecret), c.AmoRedirectURI, c.AmoAPIURL,
		mask(c.TelegramBotToken), c.TelegramAPIURL, c.TelegramMode, len(c.EncryptionKeys), c.MetricsAddr, mask(c.MetricsToken))
}

func mask(s string) string {
	if s == "" {
		return "(unset)"
	}
	return "[REDACTED]"
}

// maskURL hides a password wherever libpq takes one: in the userinfo and in
// the password/sslpassword query parameters. A URL that does not parse
// cleanly (e.g. an unescaped '@' or '/' in the password leaves part of it
// in the path) is hidden whole: guessing where its password ends could leak it.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || strings.Contains(u.Path, "@") || strings.Contains(u.Path, ":") || u.Fragment != "" || u.Opaque != "" {
		return "[REDACTED]"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	if q := u.Query(); len(q) > 0 {
		for k := range q {
			if lk := strings.ToLower(k); lk == "password" || lk == "sslpassword" {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
