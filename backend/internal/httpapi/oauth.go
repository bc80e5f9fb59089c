package httpapi

import (
	"bytes"
	"errors"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

// installStart sends an admin from our own site to amoCRM's consent page with
// a signed state; installs from amoCRM's settings come without one.
func (h *handlers) installStart(c *fiber.Ctx) error {
	if h.d.Installer == nil || h.d.AmoClientID == "" {
		return dispatch.ErrNotConfigured
	}
	q := url.Values{"client_id": {h.d.AmoClientID}, "state": {h.d.Installer.State()}, "mode": {"post_message"}}
	return c.Redirect("https://www.amocrm.ru/oauth?"+q.Encode(), fiber.StatusFound)
}

type page struct {
	Lang, Title, Message, Detail string
	OK                           bool
	Next, Button, Link, CodeHint string
	Command, NoBot, Setup        string
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1b2733}
h1{font-size:1.5rem}.ok{color:#1d7b3a}.err{color:#b3261e}a.btn{display:inline-block;background:#229ed9;color:#fff;padding:.7rem 1.2rem;border-radius:.4rem;text-decoration:none}
code{background:#f1f3f5;padding:.2rem .4rem;border-radius:.2rem}</style></head>
<body><h1 class="{{if .OK}}ok{{else}}err{{end}}">{{.Title}}</h1>
<p>{{.Message}}</p>{{if .Detail}}<p>{{.Detail}}</p>{{end}}
{{if .OK}}{{if .Link}}<p>{{.Next}}</p><p><a class="btn" id="startgroup" href="{{.Link}}">{{.Button}}</a></p>
<p>{{.CodeHint}} <code id="link-command">{{.Command}}</code></p>{{else}}<p>{{.NoBot}}</p>{{end}}
{{if .Setup}}<p class="err">{{.Setup}}</p>{{end}}{{end}}
</body></html>`))

func (h *handlers) renderPage(c *fiber.Ctx, status int, p page) error {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, p); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Set("Cache-Control", "no-store")
	c.Set("Referrer-Policy", "no-referrer")
	return c.Status(status).Send(buf.Bytes())
}

// installCookie lets the browser that completed an install see its
// confirmation page again on reload (see service.PageProof).
const installCookie = "amodispatch_install"

func (h *handlers) oauthCallback(c *fiber.Ctx) error {
	lang := i18n.Lang(c.Get(fiber.HeaderAcceptLanguage))
	fail := func(status int, msg, detail string) error {
		return h.renderPage(c, status, page{Lang: lang, Title: i18n.T(lang, "install.failed"), Message: msg, Detail: detail})
	}
	if h.d.Installer == nil {
		return fail(fiber.StatusServiceUnavailable, i18n.T(lang, "error.notconfig"), "")
	}
	// referer is the caller's claim; it is logged as a host and never with
	// the code, the state or the client secret.
	refused := func(reason string) {
		h.d.Log.Warn("install refused", "referer_host", refererHost(c.Query("referer")), "reason", reason,
			"from_widget", c.Query("from_widget") != "", "client_addr", c.IP())
	}
	if e := c.Query("error"); e != "" {
		refused("amoCRM reported " + truncate(e, 40))
		return fail(fiber.StatusBadRequest, i18n.T(lang, "install.denied"), i18n.T(lang, "install.again"))
	}
	acc, err := h.d.Installer.Install(c.UserContext(), service.InstallRequest{
		Code: c.Query("code"), Referer: c.Query("referer"), State: c.Query("state"),
		ClientID: c.Query("client_id"), FromWidget: c.Query("from_widget") != "",
		ClientAddr: c.IP(), PageProof: c.Cookies(installCookie),
	})
	if err != nil {
		switch {
		case errors.Is(err, dispatch.ErrRateLimited):
			refused(err.Error())
			c.Set(fiber.HeaderRetryAfter, "60")
			return fail(fiber.StatusTooManyRequests, i18n.T(lang, "install.busy"), "")
		case errors.Is(err, service.ErrBadState):
			refused(err.Error())
			return fail(fiber.StatusBadRequest, i18n.T(lang, "install.state"), "")
		case errors.Is(err, service.ErrCodeRefused):
			refused(err.Error())
			return fail(fiber.StatusBadRequest, i18n.T(lang, "install.bad", err.Error()), i18n.T(lang, "install.used"))
		case errors.Is(err, dispatch.ErrInvalid):
			refused(err.Error())
			return fail(fiber.StatusBadRequest, i18n.T(lang, "install.bad", err.Error()), i18n.T(lang, "install.again"))
		case errors.Is(err, dispatch.ErrNotConfigured):
			return fail(fiber.StatusServiceUnavailable, i18n.T(lang, "error.notconfig"), "")
		default:
			h.d.Log.Error("install failed", "referer_host", refererHost(c.Query("referer")), "err", err)
			return fail(fiber.StatusInternalServerError, i18n.T(lang, "error.internal"), i18n.T(lang, "install.again"))
		}
	}
	c.Cookie(&fiber.Cookie{
		Name: installCookie, Value: h.d.Installer.PageProof(acc.ID), Path: "/oauth/amocrm/callback",
		MaxAge: int(30 * time.Minute / time.Second), HTTPOnly: true, Secure: c.Protocol() == "https" || h.d.SecureCookies,
		// Lax still sends it on amoCRM's top-level redirect and on a reload.
		SameSite: fiber.CookieSameSiteLaxMode,
	})
	lang = i18n.Lang(acc.Language)
	p := page{Lang: lang, OK: true, Title: i18n.T(lang, "install.title"), Message: i18n.T(lang, "install.ok", acc.Name),
		Next: i18n.T(lang, "install.next"), Button: i18n.T(lang, "install.button"), CodeHint: i18n.T(lang, "install.code"),
		NoBot: i18n.T(lang, "install.nobot")}
	if acc.SetupError != "" {
		p.Setup = i18n.T(lang, "install.setup", acc.SetupError)
	}
	if h.d.Bot != nil {
		if link, err := h.d.Bot.StartGroupLink(c.UserContext(), acc.LinkCode); err == nil {
			p.Link = link
			p.Command = "/link " + acc.LinkCode
		} else {
			h.d.Log.Warn("telegram bot username unavailable for the install page", "err", err)
		}
	}
	return h.renderPage(c, fiber.StatusOK, p)
}

// refererHost is the host part of the referer parameter, bounded, for logs.
func refererHost(referer string) string {
	r := strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(referer)), "https://"), "http://")
	if i := strings.IndexAny(r, "/?# "); i >= 0 {
		r = r[:i]
	}
	return truncate(r, 100)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
