package sandbox

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/widgetcheck"
)

//go:embed amocrm-page/require.js amocrm-page/jquery.min.js amocrm-page/amocrm.js
var vendorFS embed.FS

//go:embed static
var staticFS embed.FS

const widgetPath = "/widget"

// routes is the page server. Besides the page and its JSON, it stands in for
// amoCRM's page around the widget, as the widget's browser tests do: it
// serves the widget's files with config.js pointing here, mints a disposable
// token per call at /__token, and proxies /api/widget/ to the backend with
// the account's amoCRM origin, so the widget talks to the real API.
func (s *Sandbox) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	vendor, _ := fs.Sub(vendorFS, "amocrm-page")
	mux.Handle("GET /{$}", fileHandler(static, "index.html"))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.Handle("GET /vendor/", http.StripPrefix("/vendor/", http.FileServerFS(vendor)))
	mux.HandleFunc("GET "+widgetPath+"/", s.widgetFile)
	mux.HandleFunc("GET /card", s.cardPage)
	mux.HandleFunc("GET /settings", s.settingsPage)
	mux.HandleFunc("GET /__token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, s.token(s.demo.acc, s.demo.adminID))
	})
	mux.Handle("/api/widget/", s.widgetProxy())
	mux.HandleFunc("GET /sandbox/state", s.handleState)
	mux.Handle("POST /sandbox/move", jsonOnly(http.HandlerFunc(s.handleMove)))
	mux.Handle("POST /sandbox/press", jsonOnly(http.HandlerFunc(s.handlePress)))
	mux.HandleFunc("GET /sandbox/install", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(s.demo.installPage)
	})
	return mux
}

// jsonOnly refuses bodies that are not JSON: a JSON request from another
// site needs a CORS preflight, which this server never grants, so other
// pages open in the browser cannot move deals or press buttons.
func jsonOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, errors.New("the body must be application/json"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func fileHandler(fsys fs.FS, name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, fsys, name)
	})
}

// WidgetAPIProxy forwards the widget's API calls from a page standing in for
// amoCRM (this server, the widget's browser tests) to the backend as the
// widget on the account's amoCRM page makes them: the browser's origin is
// the stand-in page, the widget's real origin is https://accountDomain,
// which the backend's CORS check expects.
func WidgetAPIProxy(backend *url.URL, accountDomain string) *httputil.ReverseProxy {
	origin := "https://" + accountDomain
	proxy := httputil.NewSingleHostReverseProxy(backend)
	director := proxy.Director
	proxy.Director = func(r *http.Request) {
		director(r)
		r.Host = backend.Host
		if r.Header.Get("Origin") != "" {
			r.Header.Set("Origin", origin)
		}
		r.Header.Set("Referer", origin+"/leads/")
	}
	return proxy
}

func (s *Sandbox) widgetProxy() http.Handler {
	backend, _ := url.Parse(s.backendURL)
	proxy := WidgetAPIProxy(backend, s.demo.acc.Domain)
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		// A reloaded card frame cancels its calls; that is no failure.
		if r.Context().Err() == nil {
			s.opts.Log.Warn("sandbox: widget API proxy", "path", r.URL.Path, "err", err)
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	return proxy
}

// widgetFile serves widget/ as it is in the repository, with the backend
// URL put into config.js as widgetpack does (here: this server, which
// proxies the API).
func (s *Sandbox) widgetFile(w http.ResponseWriter, r *http.Request) {
	rel := strings.TrimPrefix(r.URL.Path, widgetPath+"/")
	w.Header().Set("Cache-Control", "no-store")
	if rel != widgetcheck.ConfigFile {
		http.StripPrefix(widgetPath, http.FileServer(http.Dir(s.opts.WidgetDir))).ServeHTTP(w, r)
		return
	}
	b, err := os.ReadFile(filepath.Join(s.opts.WidgetDir, rel))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	_, _ = w.Write(widgetcheck.Substitute(b, s.url))
}

var cardTmpl = template.Must(template.New("card").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><title>amoCRM · {{.LeadName}}</title>
<style>
body{margin:0;font-family:Arial,Helvetica,sans-serif;background:#fff}
#widgets_block{background:#fff}
.card-widgets__widget__caption{background:#e9eef3;padding:8px 12px;font-weight:bold;font-size:13px}
</style>
<script>window.__AMO = {{.Config}};</script>
<script src="/vendor/require.js"></script>
<script src="/vendor/jquery.min.js"></script>
</head><body>
<div id="widgets_block"></div>
<script src="/vendor/amocrm.js"></script>
</body></html>`))

var settingsTmpl = template.Must(template.New("settings").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><title>amoCRM · amoDispatch</title>
<style>body{margin:0;padding:16px 24px;font-family:Arial,Helvetica,sans-serif;background:#fff}</style>
<script>window.__AMO = {{.Config}};</script>
<script src="/vendor/require.js"></script>
<script src="/vendor/jquery.min.js"></script>
</head><body>
<div id="work-area-amodispatch"></div>
<script src="/vendor/amocrm.js"></script>
{{if .Stats}}<script>
// Opened from the sandbox's "statistics" link: show that tab once the page is drawn.
(function open() {
  var tab = document.querySelector('.amodispatch-tab[data-tab="stats"]');
  if (tab) { tab.click(); } else { setTimeout(open, 100); }
})();
</script>{{end}}
</body></html>`))

// settingsPage is the widget's advanced settings page, as the demo's admin
// sees it in amoCRM; ?tab=stats opens its statistics, which count the
// demo's orders.
func (s *Sandbox) settingsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lang := q.Get("lang")
	if lang != "en" {
		lang = "ru"
	}
	langs, err := os.ReadFile(filepath.Join(s.opts.WidgetDir, "i18n", lang+".json"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	cfg := map[string]any{
		"area": "advanced_settings", "lang": lang, "langs": json.RawMessage(langs), "leadId": 0,
		"accountId": s.demo.acc.ID, "userId": s.demo.adminID, "subdomain": s.demo.acc.Subdomain,
		"widgetCode": "amodispatch", "widgetPath": widgetPath, "version": fmt.Sprint(time.Now().Unix()),
	}
	var buf bytes.Buffer
	if err := settingsTmpl.Execute(&buf, map[string]any{"Lang": lang, "Config": cfg, "Stats": q.Get("tab") == "stats"}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// cardPage is the right column of amoCRM's deal card with the widget's
// panel (lcard) for ?lead=ID&lang=ru|en.
func (s *Sandbox) cardPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lang := q.Get("lang")
	if lang != "en" {
		lang = "ru"
	}
	var lead int64
	_, _ = fmt.Sscan(q.Get("lead"), &lead) // no lead: 0
	l, ok := s.amo.Lead(s.demo.acc.ID, lead)
	if !ok {
		http.Error(w, "no such deal", http.StatusNotFound)
		return
	}
	langs, err := os.ReadFile(filepath.Join(s.opts.WidgetDir, "i18n", lang+".json"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	cfg := map[string]any{
		"area": "lcard", "lang": lang, "langs": json.RawMessage(langs), "leadId": lead,
		"accountId": s.demo.acc.ID, "userId": s.demo.adminID, "subdomain": s.demo.acc.Subdomain,
		"widgetCode": "amodispatch", "widgetPath": widgetPath, "version": fmt.Sprint(time.Now().Unix()),
	}
	var buf bytes.Buffer
	if err := cardTmpl.Execute(&buf, map[string]any{"Lang": lang, "Config": cfg, "LeadName": l.Name}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func (s *Sandbox) handleState(w http.ResponseWriter, r *http.Request) {
	var lead int64
	_, _ = fmt.Sscan(r.URL.Query().Get("lead"), &lead) // no lead: 0
	st, err := s.state(r.Context(), lead)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, st)
}

func (s *Sandbox) handleMove(w http.ResponseWriter, r *http.Request) {
	var in struct {
		LeadID  int64 `json:"lead_id"`
		StageID int64 `json:"stage_id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.amo.MoveLead(s.demo.acc.ID, in.LeadID, in.StageID); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, map[string]bool{"ok": true})
}

func (s *Sandbox) handlePress(w http.ResponseWriter, r *http.Request) {
	var in pressInput
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	res, err := s.press(ctx, in)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusGatewayTimeout
		}
		writeError(w, status, err)
		return
	}
	writeJSON(w, res)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
