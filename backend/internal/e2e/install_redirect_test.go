package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// tokenRequests counts the code and refresh grants the fake received.
func tokenRequests(e *env) int {
	return len(e.amo.Requests(fakeamocrm.RequestFilter{Method: "POST", Path: "/oauth2/access_token"}))
}

// cookieBrowser is an admin's browser: it keeps cookies between requests.
func cookieBrowser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

func browse(t testing.TB, c *http.Client, rawURL string) (int, string) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func callback(b *backend, q url.Values) string { return b.URL + "/oauth/amocrm/callback?" + q.Encode() }

// plausibleCode looks like an amoCRM code but no fake account issued it.
func plausibleCode() string {
	buf := make([]byte, 449)
	_, _ = rand.Read(buf)
	return "def50200" + hex.EncodeToString(buf)
}

// Installs from amoCRM's settings come back with from_widget, platform and a
// state of amoCRM's own (the literal "state" in the captured redirect), or
// none; on amoCRM and on Kommo alike.
func TestInstallFromAmoCRMSettings(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		accA, accB := addAccounts(e)
		accC := e.amo.AddAccount(fakeamocrm.AccountSpec{ID: 31000003, Subdomain: "gamma", Name: "Гамма"})
		b := e.start()
		ctx := context.Background()

		captured := e.amo.IssueInstall(accA.ID, "state") // the shape of the captured real redirect
		noState := e.amo.IssueInstall(accC.ID, "")
		noState.Query.Del("state")
		kommo := e.amo.IssueInstall(accB.ID, "state")
		if kommo.Query.Get("platform") != "2" || kommo.Query.Get("referer") != "beta.kommo.com" || captured.Query.Get("from_widget") != "1" {
			t.Fatalf("fake redirects are not the real shape: %v / %v", captured.Query, kommo.Query)
		}
		for _, in := range []struct {
			name   string
			acc    *fakeamocrm.Account
			q      url.Values
			domain string
		}{
			{"state=state from_widget=1", accA, captured.Query, "alpha.amocrm.ru"},
			{"no state", accC, noState.Query, "gamma.amocrm.ru"},
			{"Kommo", accB, kommo.Query, "beta.kommo.com"},
		} {
			status, body := get(t, callback(b, in.q))
			if status != 200 || !startgroupRe.MatchString(body) {
				t.Fatalf("%s: HTTP %d, want the confirmation page: %s", in.name, status, body)
			}
			a, err := b.Store().Account(ctx, in.acc.ID)
			if err != nil || a.Status != dispatch.AccountActive || a.Domain != in.domain {
				t.Fatalf("%s: stored %+v %v", in.name, a, err)
			}
			if len(e.amo.Webhooks(in.acc.ID)) != 1 {
				t.Fatalf("%s: webhook not subscribed", in.name)
			}
		}
		if strings.Contains(e.logs.String(), "install refused") {
			t.Fatalf("a genuine install was logged as refused:\n%s", e.logs.String())
		}
	})
}

// Refused installs explain themselves on the page, are logged with the
// referer's host and the reason (never the code), store nothing, and those
// that cannot succeed cost no request to amoCRM.
func TestInstallRefusals(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		accA, accB := addAccounts(e)
		b := e.start()
		ctx := context.Background()

		cases := []struct {
			name      string
			mutate    func(q url.Values)
			page, log string
			exchanges int // token requests the refusal may cost
		}{
			{"unsigned state without from_widget", func(q url.Values) { q.Del("from_widget"); q.Set("state", "state") },
				"Ссылка установки устарела или не выдана этим сервером", "state not issued by this server", 0},
			{"forged signed-looking state without from_widget", func(q url.Values) {
				q.Del("from_widget")
				q.Set("state", "ad1.nonce.9999999999.deadbeefdeadbeefdeadbeefdeadbeef")
			}, "Ссылка установки устарела", "state signature does not match", 0},
			{"non-hex code", func(q url.Values) { q.Set("code", "def50200"+strings.Repeat("zz", 449)) },
				"Некорректный запрос установки", "code is not an amoCRM authorization code", 0},
			{"too short code", func(q url.Values) { q.Set("code", "def50200abc") },
				"Некорректный запрос установки", "code is not an amoCRM authorization code", 0},
			// A code of account alpha arriving with beta's host: amoCRM's
			// account is not the referer's.
			{"subdomain mismatch", func(q url.Values) { q.Set("referer", "beta.kommo.com") },
				"Некорректный запрос установки", `is \"alpha\", not the referer's \"beta\"`, 1},
		}
		for _, tc := range cases {
			in := e.amo.IssueInstall(accA.ID, "state")
			tc.mutate(in.Query)
			before := tokenRequests(e)
			status, body := get(t, callback(b, in.Query))
			if status != 400 || !strings.Contains(body, "Не удалось установить") || !strings.Contains(body, tc.page) {
				t.Errorf("%s: HTTP %d, want a 400 page saying %q: %s", tc.name, status, tc.page, body)
			}
			if n := tokenRequests(e) - before; n != tc.exchanges {
				t.Errorf("%s: %d token requests to amoCRM, want %d", tc.name, n, tc.exchanges)
			}
			eventually(t, tc.name+" logged", func() bool {
				for _, line := range strings.Split(e.logs.String(), "\n") {
					if strings.Contains(line, "level=WARN") && strings.Contains(line, `msg="install refused"`) &&
						strings.Contains(line, "referer_host="+in.Query.Get("referer")) && strings.Contains(line, tc.log) {
						return true
					}
				}
				return false
			})
		}
		for _, id := range []int64{accA.ID, accB.ID} {
			if _, err := b.Store().Account(ctx, id); err == nil {
				t.Fatalf("a refused install stored account %d", id)
			}
			if n := len(e.amo.Webhooks(id)); n != 0 {
				t.Fatalf("a refused install subscribed %d webhooks for %d", n, id)
			}
		}
		if logs := e.logs.String(); strings.Contains(logs, "def50200") || strings.Contains(logs, clientSecret) {
			t.Fatal("a code or the client secret reached the logs")
		}
	})
}

// The admin reloads the confirmation page: amoCRM refuses the used code, and
// the same browser sees its account's page again. Anyone else calling with a
// used or made-up code and that account's referer learns nothing, not even
// that the account is installed: the page carries the Telegram link code.
func TestInstallPageReload(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		accA, _ := addAccounts(e)
		b := e.start()
		ctx := context.Background()

		admin := cookieBrowser(t)
		in := e.amo.IssueInstall(accA.ID, "state")
		status, first := browse(t, admin, callback(b, in.Query))
		m := startgroupRe.FindStringSubmatch(first)
		if status != 200 || m == nil {
			t.Fatalf("install: HTTP %d %s", status, first)
		}
		stored, _ := b.Store().Account(ctx, accA.ID)

		status, again := browse(t, admin, callback(b, in.Query))
		if status != 200 || !strings.Contains(again, m[0]) || !strings.Contains(again, stored.Name) {
			t.Fatalf("reload in the admin's browser: HTTP %d, want the same confirmation:\n%s", status, again)
		}
		if a, _ := b.Store().Account(ctx, accA.ID); a.UpdatedAt != stored.UpdatedAt {
			t.Fatal("a reload changed the account")
		}

		// Another browser with the used code, with a made-up code, and the
		// admin's browser with another account's host: one and the same
		// refusal, identical to that of an account never installed here.
		stranger := cookieBrowser(t)
		_, neverInstalled := browse(t, stranger, callback(b, url.Values{"code": {plausibleCode()}, "referer": {"nobody.amocrm.ru"}, "from_widget": {"1"}}))
		guesses := map[string]func() (int, string){
			"used code, other browser": func() (int, string) { return browse(t, stranger, callback(b, in.Query)) },
			"made-up code": func() (int, string) {
				return browse(t, stranger, callback(b, url.Values{"code": {plausibleCode()}, "referer": {"alpha.amocrm.ru"}, "from_widget": {"1"}}))
			},
			"admin's cookie, other host": func() (int, string) {
				return browse(t, admin, callback(b, url.Values{"code": {plausibleCode()}, "referer": {"nobody.amocrm.ru"}, "from_widget": {"1"}}))
			},
		}
		for name, try := range guesses {
			status, body := try()
			if status != 400 || body != neverInstalled {
				t.Errorf("%s: HTTP %d, want the never-installed page:\n%s\nvs\n%s", name, status, body, neverInstalled)
			}
			if strings.Contains(body, stored.LinkCode) || strings.Contains(body, stored.Name) {
				t.Errorf("%s: the page reveals the account", name)
			}
		}
		if !strings.Contains(neverInstalled, "в настройках виджета amoDispatch") {
			t.Errorf("a used code's page does not say where the link is:\n%s", neverInstalled)
		}

		// The account switched off: the reload no longer shows its link.
		if err := b.Store().SetAccountStatus(ctx, accA.ID, dispatch.AccountDisabled); err != nil {
			t.Fatal(err)
		}
		if status, body := browse(t, admin, callback(b, in.Query)); status != 400 || strings.Contains(body, stored.LinkCode) {
			t.Fatalf("reload after disabling: HTTP %d %s", status, body)
		}
	})
}

// A flood on the anonymous callback costs amoCRM a bounded number of token
// requests; the rest get a 429 page.
func TestInstallCallbackFlood(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		addAccounts(e)
		b := e.start()
		limited := 0
		for range 40 {
			q := url.Values{"code": {plausibleCode()}, "referer": {"alpha.amocrm.ru"}, "from_widget": {"1"}}
			status, body, header := exchange(t, "GET", callback(b, q), nil)
			switch status {
			case 429:
				limited++
				if !strings.Contains(string(body), "Слишком много попыток установки") || header.Get("Retry-After") == "" {
					t.Fatalf("429 page: %v %s", header, body)
				}
			case 400:
			default:
				t.Fatalf("flood answer %d: %s", status, body)
			}
		}
		// One address gets the burst of 10 exchanges (a refill every 6 s may
		// add one on a slow run); the overall limit is proven in
		// service.TestExchangeLimiter, as the test has one address only.
		if n := tokenRequests(e); n > 11 || n+limited != 40 {
			t.Fatalf("40 callbacks made %d token requests with %d answered 429; want at most 11 and the rest 429", n, limited)
		}
		if !strings.Contains(e.logs.String(), "too many requests") {
			t.Fatal("the refusals are not logged")
		}
	})
}
