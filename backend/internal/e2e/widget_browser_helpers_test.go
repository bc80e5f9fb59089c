package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/sandbox"
	"github.com/amodispatch/amodispatch/backend/internal/testkit"
	"github.com/amodispatch/amodispatch/backend/internal/widgetcheck"
)

const (
	widgetDir      = "../../../widget"
	amoPageDir     = "../sandbox/amocrm-page"
	widgetPagePath = "/widget"
)

// widgetPage stands in for one amoCRM account's page: it serves the widget
// files and the fake amoCRM environment, mints a disposable token per call,
// and proxies /api/widget/ to the backend. From the browser's view the API
// is same-origin; the proxy presents the account's amoCRM origin to the
// backend, as the real browser would.
type widgetPage struct {
	t      testing.TB
	srv    *httptest.Server
	acc    *fakeamocrm.Account
	userID int64
	aud    string
	secret []byte
	// apiBase is the backend URL written into config.js; by default the
	// page's own origin, which proxies the API.
	apiBase string
	proxied sync.Map // "METHOD path" → true, the API calls the page made
}

func newWidgetPage(t testing.TB, e *env, b *backend, acc *fakeamocrm.Account, userID int64) *widgetPage {
	t.Helper()
	backendURL, err := url.Parse(b.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := &widgetPage{t: t, acc: acc, userID: userID, secret: []byte(clientSecret),
		aud: amocrm.AudienceOf(fmt.Sprintf("http://127.0.0.1:%d/oauth/amocrm/callback", e.firstPort))}
	proxy := sandbox.WidgetAPIProxy(backendURL, acc.Domain)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.page)
	mux.Handle("GET /vendor/", http.StripPrefix("/vendor/", http.FileServer(http.Dir(amoPageDir))))
	mux.HandleFunc("GET "+widgetPagePath+"/", p.widgetFile)
	mux.HandleFunc("GET /__token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, p.token(t))
	})
	mux.HandleFunc("/api/widget/", func(w http.ResponseWriter, r *http.Request) {
		p.proxied.Store(r.Method+" "+r.URL.Path, true)
		proxy.ServeHTTP(w, r)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// token is amoCRM's disposable token for this account and user.
func (p *widgetPage) token(t testing.TB) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss":         "https://" + p.acc.Domain,
		"aud":         p.aud,
		"jti":         uuid.NewString(),
		"iat":         now.Unix(),
		"nbf":         now.Unix(),
		"exp":         now.Add(30 * time.Minute).Unix(),
		"account_id":  p.acc.ID,
		"user_id":     p.userID,
		"subdomain":   p.acc.Subdomain,
		"client_uuid": clientID,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(p.secret)
	if err != nil {
		t.Error(err)
	}
	return s
}

// widgetFile serves widget/, with the backend URL put into config.js as
// widgetpack does (here: the page's own origin, which proxies the API).
func (p *widgetPage) widgetFile(w http.ResponseWriter, r *http.Request) {
	rel := strings.TrimPrefix(r.URL.Path, widgetPagePath+"/")
	if rel != widgetcheck.ConfigFile {
		http.StripPrefix(widgetPagePath, http.FileServer(http.Dir(widgetDir))).ServeHTTP(w, r)
		return
	}
	b, err := os.ReadFile(filepath.Join(widgetDir, rel))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	base := p.apiBase
	if base == "" {
		base = p.srv.URL
	}
	_, _ = w.Write(widgetcheck.Substitute(b, base))
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><title>amoCRM stand-in: {{.Area}}</title>
<style>
body{margin:0;font-family:Arial,Helvetica,sans-serif;background:#f5f5f5}
.amo-top{height:44px;background:#1b2a3a;color:#fff;line-height:44px;padding:0 16px;font-size:14px}
.amo-card{display:flex;gap:16px;padding:16px}
.amo-card__main{flex:1;background:#fff;min-height:420px;padding:16px}
#widgets_block{width:300px;background:#fff}
.card-widgets__widget__caption{background:#e9eef3;padding:8px 12px;font-weight:bold}
#work-area-{{.Code}}{background:#fff;margin:16px}
.widget_settings_block{background:#fff;margin:16px;padding:16px;width:520px}
</style>
<script>window.__AMO = {{.Config}};</script>
<script src="/vendor/require.js"></script>
<script src="/vendor/jquery.min.js"></script>
</head><body>
<div class="amo-top">amoCRM · {{.Subdomain}}</div>
{{if eq .Area "lcard"}}<div class="amo-card"><div class="amo-card__main"><h2>{{.LeadName}}</h2></div><div id="widgets_block"></div></div>
{{else if eq .Area "advanced_settings"}}<div id="work-area-{{.Code}}"></div>
{{else}}<div id="widget_settings__modal"><div class="widget_settings_block">
<div class="widget_settings_block__item_field"><input name="info" type="text"></div></div></div>{{end}}
<script src="/vendor/amocrm.js"></script>
</body></html>`))

// page renders the stand-in for ?area=lcard|advanced_settings|settings&lang=ru|en[&lead=ID].
func (p *widgetPage) page(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lang := q.Get("lang")
	if lang != "en" {
		lang = "ru"
	}
	langs, err := os.ReadFile(filepath.Join(widgetDir, "i18n", lang+".json"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var lead int64
	_, _ = fmt.Sscan(q.Get("lead"), &lead) // no lead: 0
	cfg := map[string]any{
		"area": q.Get("area"), "lang": lang, "langs": json.RawMessage(langs), "leadId": lead,
		"accountId": p.acc.ID, "userId": p.userID, "subdomain": p.acc.Subdomain,
		"widgetCode": "amodispatch", "widgetPath": widgetPagePath, "version": "1.0.0",
	}
	var buf bytes.Buffer
	err = pageTmpl.Execute(&buf, map[string]any{"Area": q.Get("area"), "Lang": lang, "Config": cfg,
		"Code": "amodispatch", "Subdomain": p.acc.Subdomain, "LeadName": q.Get("name")})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func (p *widgetPage) url(area, lang string, lead int64, name string) string {
	v := url.Values{"area": {area}, "lang": {lang}}
	if lead != 0 {
		v.Set("lead", fmt.Sprint(lead))
		v.Set("name", name)
	}
	return p.srv.URL + "/?" + v.Encode()
}

// browser is one headless Chromium with a fresh profile.
type browser struct {
	ctx  context.Context
	mu   sync.Mutex
	logs []string
}

// newBrowser starts Chromium, or skips loudly when it is not installed
// (REQUIRE_CHROMIUM=1 turns that into a failure).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	br := &browser{}
	br.ctx = testkit.Chromium(t, 1280, 900, br.listen)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser console:\n%s", strings.Join(br.console(), "\n"))
		}
	})
	return br
}

// listen records the page's console and uncaught exceptions (it runs on
// chromedp's reader goroutine, so it only appends under a lock).
func (br *browser) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			parts = append(parts, string(a.Value)+a.Description)
		}
		br.log(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " ")))
	case *runtime.EventExceptionThrown:
		br.log("exception: " + testkit.Exception(ev))
	}
}

func (br *browser) log(s string) {
	br.mu.Lock()
	defer br.mu.Unlock()
	br.logs = append(br.logs, s)
}

func (br *browser) console() []string {
	br.mu.Lock()
	defer br.mu.Unlock()
	return append([]string(nil), br.logs...)
}

// run performs browser steps with a deadline.
func (br *browser) run(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	testkit.Do(t, br.ctx, steps...)
}

// evalAs runs JavaScript and decodes its result.
func evalAs[T any](t testing.TB, br *browser, js string) T {
	t.Helper()
	return testkit.Eval[T](t, br.ctx, js)
}

// click clicks the first element matching a CSS selector, as a user would.
func (br *browser) click(t testing.TB, sel string) {
	t.Helper()
	br.run(t, chromedp.Click(chromedp.CSS(sel)))
}

// waitReady waits until the view under sel has rendered its data; a view
// that shows an error instead fails the test at once with that error.
func (br *browser) waitReady(t testing.TB, sel string) {
	t.Helper()
	js := fmt.Sprintf(`(function(){
		var el = document.querySelector(%q);
		if (window.__widgetErrors && window.__widgetErrors.length) { return 'error: ' + window.__widgetErrors.join('; '); }
		if (!el) { return ''; }
		if (el.getAttribute('data-amodispatch-ready') === '1') { return 'ready'; }
		var err = el.querySelector('.amodispatch-error');
		return err ? 'error: ' + err.textContent : '';
	})()`, sel)
	deadline := time.Now().Add(20 * time.Second)
	for {
		state := evalAs[string](t, br, js)
		switch {
		case state == "ready":
			return
		case strings.HasPrefix(state, "error: "):
			t.Fatalf("%s shows %s", sel, state)
		case time.Now().After(deadline):
			t.Fatalf("timed out waiting for %s to render", sel)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// text returns the trimmed text content of every element matching sel.
func (br *browser) texts(t testing.TB, sel string) []string {
	t.Helper()
	return evalAs[[]string](t, br, fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(function(e){return e.textContent.trim();})`, sel))
}

// selectValue picks an option of a <select> as a user would (value, then a
// bubbling change event).
func (br *browser) selectValue(t testing.TB, sel string, value any) {
	t.Helper()
	ok := evalAs[bool](t, br, fmt.Sprintf(`(function(){
		var s = document.querySelector(%q);
		if (!s) { return false; }
		var v = %q;
		if (!Array.from(s.options).some(function(o){ return o.value === v; })) { return false; }
		s.value = v;
		s.dispatchEvent(new Event('change', {bubbles: true}));
		return true;
	})()`, sel, fmt.Sprint(value)))
	if !ok {
		t.Fatalf("no option %v in %s", value, sel)
	}
}

// waitText polls until some element under sel contains want.
// setInput types a value into an input, as the user's change leaves it.
func (br *browser) setInput(t testing.TB, sel string, value any) {
	t.Helper()
	ok := evalAs[bool](t, br, fmt.Sprintf(`(function(){
		var s = document.querySelector(%q);
		if (!s) { return false; }
		s.value = %q;
		s.dispatchEvent(new Event('change', {bubbles: true}));
		return true;
	})()`, sel, fmt.Sprint(value)))
	if !ok {
		t.Fatalf("no input %s", sel)
	}
}

func (br *browser) waitText(t testing.TB, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, s := range br.texts(t, sel) {
			if strings.Contains(s, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never contained %q; it shows %q", sel, want, br.texts(t, sel))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// noScriptErrors fails on any uncaught error the page recorded.
func (br *browser) noScriptErrors(t testing.TB) {
	t.Helper()
	errs := evalAs[[]string](t, br, `window.__widgetErrors || []`)
	if len(errs) > 0 {
		t.Fatalf("script errors: %v", errs)
	}
}

// screenshot saves the element under sel into widget/screenshots/name.png
// when WIDGET_SCREENSHOTS=1, once (on SQLite, which always runs).
func (br *browser) screenshot(t testing.TB, kind dbtest.Kind, sel, name string) {
	t.Helper()
	if os.Getenv("WIDGET_SCREENSHOTS") != "1" || kind != dbtest.SQLite {
		return
	}
	ctx, cancel := context.WithTimeout(br.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join(widgetDir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s.png (%d bytes)", name, len(png))
}
