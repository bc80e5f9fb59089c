// Package httpapi is the HTTP edge: the fiber app, its routes and the one
// place where domain errors become HTTP statuses.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

// Installer is the part of the service the OAuth and webhook routes use.
type Installer interface {
	Install(ctx context.Context, req service.InstallRequest) (dispatch.Account, error)
	Disconnect(ctx context.Context, clientUUID, accountID, signature string) error
	AuthenticateWebhook(ctx context.Context, accountID, secret string, body []byte) (int64, error)
	State() string
	PageProof(accountID int64) string
}

// Intake stores an authenticated amoCRM webhook delivery durably; it returns
// only after the delivery is stored, so a 2xx afterwards never loses one.
type Intake interface {
	Intake(ctx context.Context, accountID int64, body []byte) error
}

// Updates stores what Telegram sends to the webhook before it is acknowledged.
type Updates interface {
	Accept(ctx context.Context, raws []json.RawMessage) error
}

// BotLinks gives the install page the link that adds the bot to a group.
type BotLinks interface {
	StartGroupLink(ctx context.Context, code string) (string, error)
}

// Deps are the app's collaborators; Installer, Intake, Updates and Bot are
// nil when what they need is not configured.
type Deps struct {
	Installer Installer
	Intake    Intake
	Updates   Updates
	Bot       BotLinks
	// TelegramSecrets are the X-Telegram-Bot-Api-Secret-Token values
	// accepted in webhook mode (during a key rotation, replicas set different ones).
	TelegramSecrets []string
	Widget          WidgetAPI // nil when amoCRM is not configured
	Ready           func(ctx context.Context) error
	AmoClientID     string
	// SecureCookies marks cookies Secure: PUBLIC_URL is https, even when TLS
	// ends at a proxy in front of us.
	SecureCookies bool
	Log           *slog.Logger
	// Metrics counts webhook deliveries (nil: none).
	Metrics Metrics
	// MetricsHandler, when set, serves /metrics on this app; app sets it only
	// with METRICS_TOKEN, which the handler demands (without it the metrics
	// have a listener of their own, METRICS_ADDR, or none).
	MetricsHandler http.Handler
}

// Metrics is what the HTTP edge reports to the operator's metrics.
type Metrics interface {
	Webhook(result, reason string)
}

type noMetrics struct{}

func (noMetrics) Webhook(string, string) {}

// New builds the fiber app that main serves and tests drive.
func New(d Deps) *fiber.App {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = noMetrics{}
	}
	app := fiber.New(fiber.Config{
		AppName:               "amoDispatch",
		BodyLimit:             service.MaxWebhookBody,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           60 * time.Second,
		DisableStartupMessage: true,
		ErrorHandler:          errorHandler(d.Log),
	})
	h := &handlers{d: d}
	// First, so that every refusal of a delivery is counted, the compressed
	// one's included.
	app.Use("/amocrm/webhook", h.countWebhooks)
	app.Use(identityBodiesOnly)
	if d.MetricsHandler != nil {
		app.Get("/metrics", adaptor.HTTPHandler(d.MetricsHandler))
	}
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/readyz", h.ready)
	app.Get("/oauth/amocrm/install", h.installStart)
	app.Get("/oauth/amocrm/callback", h.oauthCallback)
	app.Get("/oauth/amocrm/disconnect", h.disconnect)
	app.Post("/amocrm/webhook/:account/:secret", h.amoWebhook)
	app.Post("/telegram/webhook", h.telegramWebhook)
	if d.Widget != nil {
		h.widgetRoutes(app)
	} else {
		// Say why instead of a 404 that reads like a wrong backend URL.
		app.All("/api/widget/*", func(*fiber.Ctx) error {
			return fiber.NewError(fiber.StatusServiceUnavailable, "amoCRM is not configured on this server (AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET)")
		})
	}
	return app
}

type handlers struct{ d Deps }

// identityBodiesOnly refuses compressed request bodies. fiber's c.Body()
// inflates a Content-Encoding body with no limit, so a 1 MiB gzip (BodyLimit
// counts the wire bytes) would become a gigabyte in memory; amoCRM, Telegram
// and the widget never compress what they send.
func identityBodiesOnly(c *fiber.Ctx) error {
	var coded bool
	c.Request().Header.VisitAll(func(k, v []byte) {
		if strings.EqualFold(string(k), fiber.HeaderContentEncoding) {
			if enc := strings.TrimSpace(string(v)); enc != "" && !strings.EqualFold(enc, "identity") {
				coded = true
			}
		}
	})
	if coded {
		return fiber.NewError(fiber.StatusUnsupportedMediaType, "compressed request bodies are not accepted")
	}
	return c.Next()
}

func (h *handlers) ready(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := h.d.Ready(ctx); err != nil {
		// The database's error names hosts, users and schema: it goes to the
		// log, and the unauthenticated probe learns only that we are not ready.
		h.d.Log.Warn("not ready", "err", err)
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "not ready"})
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

func (h *handlers) disconnect(c *fiber.Ctx) error {
	if h.d.Installer == nil {
		return dispatch.ErrNotConfigured
	}
	if err := h.d.Installer.Disconnect(c.UserContext(), c.Query("client_uuid"), c.Query("account_id"), c.Query("signature")); err != nil {
		return err
	}
	return c.SendString("ok")
}

func (h *handlers) amoWebhook(c *fiber.Ctx) error {
	if h.d.Installer == nil || h.d.Intake == nil {
		return dispatch.ErrNotConfigured
	}
	// The body is stored before we answer; fasthttp's buffer is reused after
	// the handler returns, so it is copied.
	body := append([]byte(nil), c.Body()...)
	accountID, err := h.d.Installer.AuthenticateWebhook(c.UserContext(), c.Params("account"), c.Params("secret"), body)
	if err != nil {
		return err
	}
	if err := h.d.Intake.Intake(c.UserContext(), accountID, body); err != nil {
		return err
	}
	return c.SendString("ok")
}

func (h *handlers) telegramWebhook(c *fiber.Ctx) error {
	if h.d.Updates == nil || len(h.d.TelegramSecrets) == 0 {
		return dispatch.ErrNotConfigured
	}
	got := c.Get("X-Telegram-Bot-Api-Secret-Token")
	match := 0
	for _, want := range h.d.TelegramSecrets {
		match |= subtle.ConstantTimeCompare([]byte(got), []byte(want))
	}
	if got == "" || match != 1 {
		return dispatch.ErrUnauthorized
	}
	body := append([]byte(nil), c.Body()...)
	if !json.Valid(body) {
		return dispatch.Invalid("body is not JSON")
	}
	if err := h.d.Updates.Accept(c.UserContext(), []json.RawMessage{body}); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusOK)
}

// webhookReasons name a delivery's refusal by its status.
var webhookReasons = map[int]string{
	fiber.StatusBadRequest: "malformed", fiber.StatusUnauthorized: "unauthorized", fiber.StatusGone: "account_off",
	fiber.StatusRequestEntityTooLarge: "too_large", fiber.StatusUnsupportedMediaType: "compressed",
	fiber.StatusServiceUnavailable: "not_configured", fiber.StatusInternalServerError: "not_stored",
}

// countWebhooks counts each amoCRM delivery as accepted or refused, by the
// status it is answered with.
func (h *handlers) countWebhooks(c *fiber.Ctx) error {
	err := c.Next()
	status := c.Response().StatusCode()
	if err != nil {
		status, _ = statusOf(err)
	}
	if status < 300 {
		h.d.Metrics.Webhook("accepted", "ok")
		return err
	}
	reason, ok := webhookReasons[status]
	if !ok {
		reason = "other"
	}
	h.d.Metrics.Webhook("refused", reason)
	return err
}

// statusOf maps an error to its status and the message the client reads.
func statusOf(err error) (int, string) {
	status, msg := fiber.StatusInternalServerError, "internal error"
	var fe *fiber.Error
	switch {
	case errors.As(err, &fe):
		status, msg = fe.Code, fe.Message
	case errors.Is(err, dispatch.ErrInvalid):
		status, msg = fiber.StatusBadRequest, err.Error()
	case errors.Is(err, dispatch.ErrUnauthorized):
		status, msg = fiber.StatusUnauthorized, "unauthorized"
	case errors.Is(err, dispatch.ErrForbidden):
		status, msg = fiber.StatusForbidden, "only an account admin may do this"
	case errors.Is(err, dispatch.ErrNotFound):
		status, msg = fiber.StatusNotFound, "not found"
	case errors.Is(err, dispatch.ErrRateLimited):
		status, msg = fiber.StatusTooManyRequests, "too many requests"
	case errors.Is(err, dispatch.ErrAccountOff):
		status, msg = fiber.StatusGone, "the integration is disabled for this account"
	case errors.Is(err, dispatch.ErrConflict), errors.Is(err, dispatch.ErrChatTaken):
		status, msg = fiber.StatusConflict, err.Error()
	case errors.Is(err, dispatch.ErrNotConfigured):
		status, msg = fiber.StatusServiceUnavailable, "not configured on this server"
	}
	return status, msg
}

// errorHandler maps domain errors to statuses; only unexpected errors are
// logged, and their text never reaches the client.
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		status, msg := statusOf(err)
		var later *dispatch.RetryLater
		if errors.As(err, &later) {
			c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(max(time.Second, later.After).Seconds())))
		}
		if status >= 500 && status != fiber.StatusServiceUnavailable {
			log.Error("request failed", "method", c.Method(), "route", c.Route().Path, "err", err)
		}
		return c.Status(status).JSON(fiber.Map{"error": msg})
	}
}
