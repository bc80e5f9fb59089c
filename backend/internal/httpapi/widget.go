package httpapi

import (
	"context"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

// WidgetAPI is what the widget routes need; the account always comes from
// the verified token, never from the request's parameters.
type WidgetAPI interface {
	Authenticate(ctx context.Context, token string) (dispatch.Account, int64, error)
	AllowedOrigin(ctx context.Context, origin string) (dispatch.Account, bool)
	RequireAdmin(ctx context.Context, a dispatch.Account, userID int64) error
	State(ctx context.Context, a dispatch.Account, userID int64) (service.State, error)
	RotateLinkCode(ctx context.Context, a dispatch.Account, userID int64) (*service.BotLink, error)
	SaveSettings(ctx context.Context, a dispatch.Account, s dispatch.Settings) (dispatch.Settings, error)
	Deal(ctx context.Context, a dispatch.Account, leadID int64) (service.Deal, error)
	SetDealChat(ctx context.Context, a dispatch.Account, leadID, chatID int64) error
	Post(ctx context.Context, a dispatch.Account, leadID int64) error
	Withdraw(ctx context.Context, a dispatch.Account, leadID int64) error
	Repost(ctx context.Context, a dispatch.Account, leadID int64) error
	Unassign(ctx context.Context, a dispatch.Account, leadID int64) error
	Stats(ctx context.Context, a dispatch.Account, r service.StatsRequest) (dispatch.Stats, error)
}

const (
	localAccount = "account"
	localUser    = "user_id"
)

// MaxWidgetBody bounds the widget's request bodies. The largest is a whole
// account's settings, a few KiB even with hundreds of executors mapped; the
// server-wide limit is sized for amoCRM webhooks, and settings are read back
// on every order, so a 1 MiB blob must not get stored.
const MaxWidgetBody = 64 << 10

func (h *handlers) widgetRoutes(app *fiber.App) {
	// CORS first, so a browser can read the 413; the limit before the token
	// check, so an oversized body costs no database lookup.
	g := app.Group("/api/widget", h.widgetCORS, limitBody(MaxWidgetBody), h.widgetAuth)
	g.Get("/state", func(c *fiber.Ctx) error {
		st, err := h.d.Widget.State(c.UserContext(), account(c), user(c))
		if err != nil {
			return err
		}
		return c.JSON(stateView(st))
	})
	// Settings, the executor map and the link code are the account admin's:
	// a manager who could link a group of their own would receive every
	// client's phone. The deal card's routes below stay open to every user.
	g.Put("/settings", h.adminOnly, func(c *fiber.Ctx) error {
		var in SettingsView
		if err := c.BodyParser(&in); err != nil {
			return dispatch.Invalid("body is not a settings object: %v", err)
		}
		s, err := settingsFrom(in)
		if err != nil {
			return err
		}
		out, err := h.d.Widget.SaveSettings(c.UserContext(), account(c), s)
		if err != nil {
			return err
		}
		return c.JSON(settingsView(out))
	})
	g.Post("/link-code/rotate", h.adminOnly, func(c *fiber.Ctx) error {
		b, err := h.d.Widget.RotateLinkCode(c.UserContext(), account(c), user(c))
		if err != nil {
			return err
		}
		return c.JSON(LinkView{Bot: botView(b)})
	})
	h.statsRoutes(g)
	g.Get("/deals/:lead", h.deal)
	g.Put("/deals/:lead/chat", func(c *fiber.Ctx) error {
		var in struct {
			ChatID int64 `json:"chat_id"`
		}
		if err := c.BodyParser(&in); err != nil {
			return dispatch.Invalid("body must be {\"chat_id\": id}")
		}
		lead, err := leadParam(c)
		if err != nil {
			return err
		}
		if err := h.d.Widget.SetDealChat(c.UserContext(), account(c), lead, in.ChatID); err != nil {
			return err
		}
		return h.deal(c)
	})
	for path, action := range map[string]func(context.Context, dispatch.Account, int64) error{
		"/deals/:lead/post": h.d.Widget.Post, "/deals/:lead/withdraw": h.d.Widget.Withdraw, "/deals/:lead/repost": h.d.Widget.Repost,
		"/deals/:lead/unassign": h.d.Widget.Unassign,
	} {
		g.Post(path, func(c *fiber.Ctx) error {
			lead, err := leadParam(c)
			if err != nil {
				return err
			}
			if err := action(c.UserContext(), account(c), lead); err != nil {
				return err
			}
			return h.deal(c)
		})
	}
}

func (h *handlers) deal(c *fiber.Ctx) error {
	lead, err := leadParam(c)
	if err != nil {
		return err
	}
	d, err := h.d.Widget.Deal(c.UserContext(), account(c), lead)
	if err != nil {
		return err
	}
	return c.JSON(dealView(d))
}

func leadParam(c *fiber.Ctx) (int64, error) {
	id, err := strconv.ParseInt(c.Params("lead"), 10, 64)
	if err != nil || id <= 0 {
		return 0, dispatch.Invalid("deal id must be a positive integer")
	}
	return id, nil
}

// limitBody refuses bodies over n bytes (fasthttp has read them, up to the
// server-wide BodyLimit, before any handler runs).
func limitBody(n int) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if len(c.Request().Body()) > n {
			return fiber.ErrRequestEntityTooLarge
		}
		return c.Next()
	}
}

func account(c *fiber.Ctx) dispatch.Account { return c.Locals(localAccount).(dispatch.Account) }

func user(c *fiber.Ctx) int64 { return c.Locals(localUser).(int64) }

// adminOnly lets only the account's admins through (403 for anyone else,
// before the body is parsed, so a refused call changes nothing).
func (h *handlers) adminOnly(c *fiber.Ctx) error {
	if err := h.d.Widget.RequireAdmin(c.UserContext(), account(c), user(c)); err != nil {
		return err
	}
	return c.Next()
}

// widgetCORS lets only installed accounts' own amoCRM/Kommo pages call the
// API from the browser, preflights included; any other origin gets no CORS
// headers (and a 403 on a preflight).
func (h *handlers) widgetCORS(c *fiber.Ctx) error {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" {
		return c.Next() // not a browser cross-origin call (e.g. a same-origin proxy)
	}
	acc, ok := h.d.Widget.AllowedOrigin(c.UserContext(), origin)
	if !ok {
		if c.Method() == fiber.MethodOptions {
			return c.SendStatus(fiber.StatusForbidden)
		}
		return c.Status(fiber.StatusForbidden).JSON(fiber.Map{"error": "origin not allowed"})
	}
	c.Set(fiber.HeaderAccessControlAllowOrigin, origin)
	c.Set(fiber.HeaderVary, fiber.HeaderOrigin)
	if c.Method() == fiber.MethodOptions {
		c.Set(fiber.HeaderAccessControlAllowMethods, "GET, PUT, POST, OPTIONS")
		c.Set(fiber.HeaderAccessControlAllowHeaders, "X-Auth-Token, Content-Type")
		c.Set(fiber.HeaderAccessControlMaxAge, "600")
		return c.SendStatus(fiber.StatusNoContent)
	}
	c.Locals("cors_account", acc.ID)
	return c.Next()
}

// widgetAuth verifies amoCRM's disposable token and pins the request to its account.
func (h *handlers) widgetAuth(c *fiber.Ctx) error {
	a, userID, err := h.d.Widget.Authenticate(c.UserContext(), c.Get("X-Auth-Token"))
	if err != nil {
		return err
	}
	// A page of account A must not act with a token of account B.
	if id, ok := c.Locals("cors_account").(int64); ok && id != a.ID {
		return dispatch.ErrUnauthorized
	}
	c.Locals(localAccount, a)
	c.Locals(localUser, userID)
	return c.Next()
}
