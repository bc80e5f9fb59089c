// Package dispatch is the domain of amoDispatch: amoCRM accounts that installed
// the integration, the Telegram chats linked to them and the executors who work
// there. It imports no other package of the project; storage and transports
// depend on it.
package dispatch

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Sentinel errors. Storage translates driver errors into these and the HTTP
// layer maps them to statuses in one place.
var (
	ErrNotFound       = errors.New("not found")
	ErrConflict       = errors.New("conflict")
	ErrInvalid        = errors.New("invalid input")
	ErrUnauthorized   = errors.New("unauthorized")
	ErrForbidden      = errors.New("forbidden") // a known user, not allowed this
	ErrAccountOff     = errors.New("account is not active")
	ErrChatTaken      = errors.New("chat is linked to another account")
	ErrNotConfigured  = errors.New("not configured")
	ErrSchemaOutdated = errors.New("database schema is out of date")
	ErrRateLimited    = errors.New("too many requests")
)

// RetryLater is ErrRateLimited with the time after which the caller may try
// again (an HTTP 429's Retry-After).
type RetryLater struct {
	After time.Duration
	What  string
}

func (e *RetryLater) Error() string {
	return fmt.Sprintf("%s: too many requests, retry after %v", e.What, e.After)
}

func (e *RetryLater) Unwrap() error { return ErrRateLimited }

// Invalid wraps ErrInvalid with a message meant for the caller.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// AccountStatus is the lifecycle of an installation.
type AccountStatus string

const (
	AccountActive   AccountStatus = "active"
	AccountDisabled AccountStatus = "disabled" // the admin switched the integration off
	AccountRevoked  AccountStatus = "revoked"  // amoCRM refused the refresh token
)

// Account is one amoCRM account that installed the integration.
type Account struct {
	ID              int64
	Subdomain       string
	Domain          string
	Name            string
	Language        string
	Currency        string
	Status          AccountStatus
	LinkCode        string
	WebhookSecret   Secret
	ExecutorFieldID int64
	SetupDoneAt     *time.Time
	SetupError      string
	InstalledAt     time.Time
	UpdatedAt       time.Time
}

// Tokens are an account's OAuth credentials.
type Tokens struct {
	Access    Secret
	Refresh   Secret
	ExpiresAt time.Time
}

// Pipeline and Stage mirror the account's amoCRM funnels.
type Pipeline struct {
	ID     int64
	Name   string
	Sort   int
	IsMain bool
	Stages []Stage
}

type Stage struct {
	ID   int64
	Name string
	Sort int
}

// HasStage reports whether the stage belongs to the pipeline.
func (p Pipeline) HasStage(id int64) bool {
	for _, s := range p.Stages {
		if s.ID == id {
			return true
		}
	}
	return false
}

// ChatType follows Telegram's chat types.
type ChatType string

// Chat is a Telegram group linked to one account.
type Chat struct {
	ID        int64
	AccountID int64
	Title     string
	Type      ChatType
	Active    bool
	LinkedBy  int64
	LinkedAt  time.Time
	UpdatedAt time.Time
}

// ActiveFor reports whether the bot may post to this chat for the account:
// linked to it and not left, removed or migrated away since.
func (c Chat) ActiveFor(accountID int64) bool { return c.Active && c.AccountID == accountID }

// Executor is a Telegram user known to the bot.
type Executor struct {
	TelegramID   int64
	FirstName    string
	LastName     string
	Username     string
	LanguageCode string
	Started      bool
	Blocked      bool
}

// DisplayName is "First Last (@login)" as executors are shown to managers.
func (e Executor) DisplayName() string {
	name := e.FirstName
	if e.LastName != "" {
		name += " " + e.LastName
	}
	if e.Username != "" {
		name += " (@" + e.Username + ")"
	}
	return name
}

// Secret is a string that never prints itself, so tokens cannot leak into
// logs through %v, slog or error wrapping.
type Secret string

func (Secret) String() string   { return "[REDACTED]" }
func (Secret) GoString() string { return "[REDACTED]" }

// LogValue keeps slog from printing the value.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// Reveal returns the secret value for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }
