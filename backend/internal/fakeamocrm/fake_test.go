package fakeamocrm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- fixtures --------------------------------------------------------------

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	accA = int64(29000001)
	accB = int64(29000002)

	pipeMain   = int64(5001)
	pipeOther  = int64(5002)
	stUnsorted = int64(6001)
	stNew      = int64(6002)
	stWork     = int64(6003)
	stOther    = int64(6101)

	userAdmin = int64(701)
	userExec  = int64(702)

	fieldAddr = int64(801)
	fieldKind = int64(802)
	enumKindA = int64(901)

	contactIvan = int64(1001)
	leadA       = int64(2001)
	leadA2      = int64(2002)
	leadB       = int64(3001)
)

func specA() AccountSpec {
	return AccountSpec{
		ID: accA, Subdomain: "alpha", Name: "Alpha LLC",
		Pipelines: []Pipeline{
			{ID: pipeMain, Name: "Заявки", IsMain: true, Statuses: []Status{
				{ID: stUnsorted, Name: "Неразобранное", Type: 1},
				{ID: stNew, Name: "Новая"},
				{ID: stWork, Name: "В работе"},
			}},
			{ID: pipeOther, Name: "Сервис", Statuses: []Status{{ID: stOther, Name: "Диагностика"}}},
		},
		Users: []User{
			{ID: userAdmin, Name: "Админ", Email: "admin@alpha.test", IsAdmin: true},
			{ID: userExec, Name: "Мастер", Email: "exec@alpha.test"},
		},
		LeadFields: []CustomField{
			{ID: fieldAddr, Name: "Адрес", Type: "text", Code: "ADDRESS"},
			{ID: fieldKind, Name: "Тип", Type: "select", Enums: []Enum{{ID: enumKindA, Value: "Ремонт"}, {Value: "Монтаж"}}},
		},
		Contacts: []Contact{{
			ID: contactIvan, FirstName: "Иван", LastName: "Иванов",
			Phones: []FieldValue{{Value: "+79990001122", EnumCode: "MOB"}},
			Emails: []FieldValue{{Value: "ivan@example.com"}},
		}},
		Leads: []Lead{
			{ID: leadA, Name: "Починить кран", Price: 1500, PipelineID: pipeMain, StatusID: stNew,
				ResponsibleUserID: userExec,
				CustomFieldsValues: []CustomFieldValue{
					{FieldID: fieldAddr, Values: []FieldValue{{Value: "Ленина, 1"}}},
					{FieldID: fieldKind, Values: []FieldValue{{EnumID: enumKindA}}},
				},
				Contacts: []ContactLink{{ID: contactIvan, IsMain: true}}},
			{ID: leadA2, Name: "Повесить полку", PipelineID: pipeMain, StatusID: stWork},
		},
	}
}

func specB() AccountSpec {
	return AccountSpec{
		ID: accB, Subdomain: "beta", Kommo: true, Language: "en", Currency: "USD",
		Leads: []Lead{{ID: leadB, Name: "Beta deal"}},
	}
}

type fixture struct {
	t     *testing.T
	s     *Server
	clock *fakeClock
	a, b  *Account
	tokA  string
	tokB  string
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	clock := newClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	s := New(opts)
	t.Cleanup(s.Close)
	f := &fixture{t: t, s: s, clock: clock, a: s.AddAccount(specA()), b: s.AddAccount(specB())}
	f.tokA = s.IssueTokens(accA).AccessToken
	f.tokB = s.IssueTokens(accB).AccessToken
	return f
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return m
}

func (f *fixture) do(token, method, path string, body any) result {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			rd = bytes.NewReader(mustJSON(b))
		}
	}
	req, err := http.NewRequest(method, f.s.URL()+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, b}
}

func (f *fixture) token(form url.Values, asJSON bool) result {
	f.t.Helper()
	var req *http.Request
	if asJSON {
		m := map[string]string{}
		for k := range form {
			m[k] = form.Get(k)
		}
		req, _ = http.NewRequest("POST", f.s.URL()+"/oauth2/access_token", bytes.NewReader(mustJSON(m)))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req, _ = http.NewRequest("POST", f.s.URL()+"/oauth2/access_token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, b}
}

func (f *fixture) codeForm(code string) url.Values {
	return url.Values{
		"client_id": {f.s.opts.ClientID}, "client_secret": {f.s.opts.ClientSecret},
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {f.s.opts.RedirectURI},
	}
}

func (f *fixture) refreshForm(rt string) url.Values {
	return url.Values{
		"client_id": {f.s.opts.ClientID}, "client_secret": {f.s.opts.ClientSecret},
		"grant_type": {"refresh_token"}, "refresh_token": {rt}, "redirect_uri": {f.s.opts.RedirectURI},
	}
}

func num(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return -1
}

func embedded(t *testing.T, m map[string]any, key string) []any {
	t.Helper()
	emb, _ := m["_embedded"].(map[string]any)
	list, ok := emb[key].([]any)
	if !ok {
		t.Fatalf("no _embedded.%s in %v", key, m)
	}
	return list
}

// ---- OAuth -----------------------------------------------------------------

func TestOAuthCodeExchange(t *testing.T) {
	cases := []struct {
		name     string
		asJSON   bool
		mutate   func(f *fixture, form url.Values)
		before   func(f *fixture, code string)
		status   int
		wantHint string
	}{
		{name: "json body", asJSON: true, status: 200},
		{name: "form body", status: 200},
		{name: "wrong secret", mutate: func(_ *fixture, v url.Values) { v.Set("client_secret", "nope") }, status: 401, wantHint: "Client authentication failed"},
		{name: "wrong client id", asJSON: true, mutate: func(_ *fixture, v url.Values) { v.Set("client_id", "nope") }, status: 401, wantHint: "Client authentication failed"},
		{name: "wrong redirect uri", mutate: func(_ *fixture, v url.Values) { v.Set("redirect_uri", "https://evil.test") }, status: 400, wantHint: "Invalid redirect URI"},
		{name: "unknown code", mutate: func(_ *fixture, v url.Values) { v.Set("code", "def50200deadbeef") }, status: 400, wantHint: "Cannot decrypt the authorization code"},
		{name: "expired code", before: func(f *fixture, _ string) { f.clock.Advance(CodeTTL + time.Second) }, status: 400, wantHint: "Authorization code has expired"},
		{name: "reused code", before: func(f *fixture, code string) {
			if r := f.token(f.codeForm(code), true); r.status != 200 {
				f.t.Fatalf("first exchange: %d %s", r.status, r.body)
			}
		}, status: 400, wantHint: "Authorization code has been revoked"},
		{name: "unsupported grant", mutate: func(_ *fixture, v url.Values) { v.Set("grant_type", "password") }, status: 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{ClientID: "cid", ClientSecret: "secret", RedirectURI: "https://app.test/cb"})
			code := f.s.IssueCode(accA)
			if tc.before != nil {
				tc.before(f, code)
			}
			form := f.codeForm(code)
			if tc.mutate != nil {
				tc.mutate(f, form)
			}
			r := f.token(form, tc.asJSON)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			m := r.json(t)
			if tc.status != 200 {
				if m["type"] != oauthProblemType || num(m["status"]) != int64(tc.status) || m["title"] == nil || m["detail"] == nil {
					t.Fatalf("not an OAuthProblemJson: %s", r.body)
				}
				if tc.wantHint != "" && m["hint"] != tc.wantHint {
					t.Fatalf("hint %q, want %q", m["hint"], tc.wantHint)
				}
				return
			}
			if m["token_type"] != "Bearer" || num(m["expires_in"]) != 86400 || m["access_token"] == "" || m["refresh_token"] == "" {
				t.Fatalf("bad token response: %s", r.body)
			}
			acc := f.do(m["access_token"].(string), "GET", "/api/v4/account", nil)
			if acc.status != 200 || acc.json(t)["subdomain"] != "alpha" {
				t.Fatalf("token does not open account alpha: %d %s", acc.status, acc.body)
			}
		})
	}
}

func TestInstallRedirect(t *testing.T) {
	f := newFixture(t, Options{ClientID: "cid", RedirectURI: "https://app.test/cb"})
	for _, tc := range []struct {
		acc      int64
		referer  string
		platform string
	}{{accA, "alpha.amocrm.ru", "1"}, {accB, "beta.kommo.com", "2"}} {
		in := f.s.IssueInstall(tc.acc, "st-42")
		q := in.Query
		if q.Get("code") != in.Code || q.Get("state") != "st-42" || q.Get("referer") != tc.referer ||
			q.Get("platform") != tc.platform || q.Get("client_id") != "cid" || q.Get("from_widget") != "1" {
			t.Fatalf("bad install query %v", q)
		}
		u, _ := url.Parse(in.URL)
		if u.Host != "app.test" || u.Query().Get("code") != in.Code {
			t.Fatalf("bad install URL %s", in.URL)
		}
	}
}

func TestRefreshRotation(t *testing.T) {
	f := newFixture(t, Options{})
	r := f.token(f.codeForm(f.s.IssueCode(accA)), true)
	first := r.json(t)
	at1, rt1 := first["access_token"].(string), first["refresh_token"].(string)

	r = f.token(f.refreshForm(rt1), true)
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	second := r.json(t)
	at2, rt2 := second["access_token"].(string), second["refresh_token"].(string)
	if at2 == at1 || rt2 == rt1 {
		t.Fatal("refresh did not rotate the pair")
	}

	steps := []struct {
		name   string
		run    func() result
		status int
		hint   string
	}{
		{"old access token is dead", func() result { return f.do(at1, "GET", "/api/v4/account", nil) }, 401, ""},
		{"new access token works", func() result { return f.do(at2, "GET", "/api/v4/account", nil) }, 200, ""},
		{"old refresh token is revoked", func() result { return f.token(f.refreshForm(rt1), false) }, 401, "Token has been revoked"},
		{"unknown refresh token", func() result { return f.token(f.refreshForm("def50200xyz"), false) }, 401, "Cannot decrypt the refresh token"},
		{"new refresh token works", func() result { return f.token(f.refreshForm(rt2), true) }, 200, ""},
	}
	for _, st := range steps {
		r := st.run()
		if r.status != st.status {
			t.Fatalf("%s: status %d, want %d: %s", st.name, r.status, st.status, r.body)
		}
		if st.hint != "" {
			if m := r.json(t); m["hint"] != st.hint || m["type"] != oauthProblemType {
				t.Fatalf("%s: body %s", st.name, r.body)
			}
		}
	}
	if got := f.s.RefreshCount(accA); got != 2 {
		t.Fatalf("RefreshCount = %d, want 2", got)
	}
	if got := f.s.RefreshAttempts(accA); got != 3 {
		t.Fatalf("RefreshAttempts = %d, want 3", got)
	}
	if f.s.RefreshCount(accB) != 0 {
		t.Fatal("refresh leaked into account B")
	}
}

func TestConcurrentRefreshOnlyOneWins(t *testing.T) {
	f := newFixture(t, Options{})
	rt := f.s.IssueTokens(accA).RefreshToken
	var wg sync.WaitGroup
	start := make(chan struct{})
	statuses := make([]int, 2)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = f.token(f.refreshForm(rt), true).status
		}()
	}
	close(start)
	wg.Wait()
	ok, revoked := 0, 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 401:
			revoked++
		}
	}
	if ok != 1 || revoked != 1 {
		t.Fatalf("statuses %v: want exactly one 200 and one 401", statuses)
	}
	if f.s.RefreshCount(accA) != 1 || f.s.RefreshAttempts(accA) != 2 {
		t.Fatalf("count=%d attempts=%d", f.s.RefreshCount(accA), f.s.RefreshAttempts(accA))
	}
}

// ---- auth / isolation --------------------------------------------------------

func TestAPIUnauthorized(t *testing.T) {
	cases := []struct {
		name  string
		token func(f *fixture) string
	}{
		{"missing token", func(*fixture) string { return "" }},
		{"unknown token", func(*fixture) string { return "garbage" }},
		{"expired by helper", func(f *fixture) string { f.s.ExpireAccessTokens(accA); return f.tokA }},
		{"expired by clock", func(f *fixture) string { f.clock.Advance(24*time.Hour + time.Second); return f.tokA }},
		{"revoked integration", func(f *fixture) string { f.s.RevokeTokens(accA); return f.tokA }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			r := f.do(tc.token(f), "GET", "/api/v4/leads/2001", nil)
			if r.status != 401 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Fatalf("got %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			m := r.json(t)
			if m["title"] != "Unauthorized" || m["type"] != "https://httpstatus.es/401" || num(m["status"]) != 401 || m["detail"] != "Неверный логин или пароль" {
				t.Fatalf("body %s", r.body)
			}
		})
	}

	t.Run("revoked refresh token too", func(t *testing.T) {
		f := newFixture(t, Options{})
		p := f.s.IssueTokens(accA)
		f.s.RevokeTokens(accA)
		if r := f.token(f.refreshForm(p.RefreshToken), true); r.status != 401 {
			t.Fatalf("refresh after revoke: %d", r.status)
		}
		// Re-installing the integration gives working tokens again.
		r := f.token(f.codeForm(f.s.IssueCode(accA)), true)
		if f.do(r.json(t)["access_token"].(string), "GET", "/api/v4/account", nil).status != 200 {
			t.Fatal("re-install tokens do not work")
		}
		if f.do(f.tokB, "GET", "/api/v4/account", nil).status != 200 {
			t.Fatal("revoking A broke B")
		}
	})
}

func TestAccountsIsolated(t *testing.T) {
	f := newFixture(t, Options{})
	cases := []struct {
		name   string
		token  string
		method string
		path   string
		body   any
		status int
		check  func(t *testing.T, r result)
	}{
		{"A sees its account", f.tokA, "GET", "/api/v4/account", nil, 200, func(t *testing.T, r result) {
			m := r.json(t)
			if num(m["id"]) != accA || m["subdomain"] != "alpha" || m["currency"] != "RUB" || m["language"] != "ru" {
				t.Fatalf("%s", r.body)
			}
		}},
		{"B sees its account", f.tokB, "GET", "/api/v4/account?with=amojo_id,version", nil, 200, func(t *testing.T, r result) {
			m := r.json(t)
			if num(m["id"]) != accB || m["subdomain"] != "beta" || m["currency"] != "USD" || m["language"] != "en" {
				t.Fatalf("%s", r.body)
			}
		}},
		{"B cannot read A's lead", f.tokB, "GET", "/api/v4/leads/2001", nil, 204, nil},
		{"B cannot read A's contact", f.tokB, "GET", "/api/v4/contacts/1001", nil, 204, nil},
		{"B cannot patch A's lead", f.tokB, "PATCH", "/api/v4/leads", []any{map[string]any{"id": leadA, "price": 1}}, 400, nil},
		{"B's list holds only B's lead", f.tokB, "GET", "/api/v4/leads", nil, 200, func(t *testing.T, r result) {
			leads := embedded(t, r.json(t), "leads")
			if len(leads) != 1 || num(leads[0].(map[string]any)["id"]) != leadB {
				t.Fatalf("%s", r.body)
			}
		}},
		{"B has default pipeline with 142/143", f.tokB, "GET", "/api/v4/leads/pipelines", nil, 200, func(t *testing.T, r result) {
			ps := embedded(t, r.json(t), "pipelines")
			sts := embedded(t, ps[0].(map[string]any), "statuses")
			last := sts[len(sts)-1].(map[string]any)
			if len(ps) != 1 || num(sts[len(sts)-2].(map[string]any)["id"]) != 142 || num(last["id"]) != 143 || last["name"] != "Закрыто и не реализовано" {
				t.Fatalf("%s", r.body)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(tc.token, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 204 && len(r.body) != 0 {
				t.Fatalf("204 with body %q", r.body)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	if l, _ := f.s.Lead(accA, leadA); l.Price != 1500 {
		t.Fatalf("A's lead changed through B: %+v", l)
	}
	wantB := 0
	for _, tc := range cases {
		if tc.token == f.tokB {
			wantB++
		}
	}
	if n := len(f.s.Requests(RequestFilter{AccountID: accB})); n != wantB {
		t.Fatalf("recorded %d B requests, want %d", n, wantB)
	}
}

// ---- leads / contacts reads ---------------------------------------------------------

func TestLeadReads(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	if err := f.s.DeleteLead(accA, leadA2); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		path   string
		status int
		check  func(t *testing.T, m map[string]any)
	}{
		{"missing lead is 204", "/api/v4/leads/999999", 204, nil},
		{"deleted lead is 204", "/api/v4/leads/2002", 204, nil},
		{"non-numeric id is 404", "/api/v4/leads/abc", 404, nil},
		{"lead without contacts embed", "/api/v4/leads/2001", 200, func(t *testing.T, m map[string]any) {
			emb := m["_embedded"].(map[string]any)
			if _, ok := emb["contacts"]; ok {
				t.Fatal("contacts embedded without with=contacts")
			}
			if num(m["status_id"]) != stNew || num(m["pipeline_id"]) != pipeMain || num(m["price"]) != 1500 || num(m["account_id"]) != accA {
				t.Fatalf("%v", m)
			}
			cfv := m["custom_fields_values"].([]any)
			kind := cfv[1].(map[string]any)
			v := kind["values"].([]any)[0].(map[string]any)
			if num(kind["field_id"]) != fieldKind || v["value"] != "Ремонт" || num(v["enum_id"]) != enumKindA {
				t.Fatalf("cfv %v", cfv)
			}
			if cfv[0].(map[string]any)["field_code"] != "ADDRESS" || kind["field_code"] != nil {
				t.Fatalf("field_code %v", cfv)
			}
		}},
		{"lead with contacts", "/api/v4/leads/2001?with=contacts", 200, func(t *testing.T, m map[string]any) {
			cs := embedded(t, m, "contacts")
			c := cs[0].(map[string]any)
			if len(cs) != 1 || num(c["id"]) != contactIvan || c["is_main"] != true {
				t.Fatalf("%v", cs)
			}
		}},
		{"contact with phone", "/api/v4/contacts/1001", 200, func(t *testing.T, m map[string]any) {
			cfv := m["custom_fields_values"].([]any)
			phone := cfv[0].(map[string]any)
			v := phone["values"].([]any)[0].(map[string]any)
			if m["name"] != "Иван Иванов" || phone["field_code"] != "PHONE" || phone["field_type"] != "multitext" || v["value"] != "+79990001122" || v["enum_code"] != "MOB" {
				t.Fatalf("%v", m)
			}
			if email := cfv[1].(map[string]any); email["field_code"] != "EMAIL" || email["values"].([]any)[0].(map[string]any)["enum_code"] != "WORK" {
				t.Fatalf("%v", email)
			}
		}},
		{"missing contact is 204", "/api/v4/contacts/42", 204, nil},
		{"contacts by filter[id][]", "/api/v4/contacts?filter[id][]=1001&filter[id][]=5", 200, func(t *testing.T, m map[string]any) {
			if cs := embedded(t, m, "contacts"); len(cs) != 1 {
				t.Fatalf("%v", cs)
			}
		}},
		{"list by status filter", "/api/v4/leads?filter[statuses][0][pipeline_id]=5001&filter[statuses][0][status_id]=6002&filter[statuses][1][pipeline_id]=5002&filter[statuses][1][status_id]=6101", 200, func(t *testing.T, m map[string]any) {
			ls := embedded(t, m, "leads")
			if len(ls) != 1 || num(ls[0].(map[string]any)["id"]) != leadA {
				t.Fatalf("%v", ls)
			}
		}},
		{"list filter matches nothing", "/api/v4/leads?filter[statuses][0][pipeline_id]=5001&filter[statuses][0][status_id]=142", 204, nil},
		{"list by filter[id][]", "/api/v4/leads?filter[id][]=2001&with=contacts", 200, func(t *testing.T, m map[string]any) {
			ls := embedded(t, m, "leads")
			if len(ls) != 1 || len(embedded(t, ls[0].(map[string]any), "contacts")) != 1 {
				t.Fatalf("%v", ls)
			}
		}},
		{"single pipeline", "/api/v4/leads/pipelines/5002", 200, func(t *testing.T, m map[string]any) {
			if sts := embedded(t, m, "statuses"); len(sts) != 3 {
				t.Fatalf("%v", sts)
			}
		}},
		{"users", "/api/v4/users", 200, func(t *testing.T, m map[string]any) {
			if us := embedded(t, m, "users"); len(us) != 2 || num(m["_total_items"]) != 2 {
				t.Fatalf("%v", m)
			}
		}},
		{"unknown path 404", "/api/v4/catalogs", 404, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(f.tokA, "GET", tc.path, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.status == 204 && len(r.body) != 0 {
				t.Fatalf("204 with body %q", r.body)
			}
			if tc.check != nil {
				tc.check(t, r.json(t))
			}
		})
	}
}

func TestLeadPagination(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	for i := 0; i < 5; i++ {
		if _, err := f.s.AddLead(accA, Lead{Name: fmt.Sprintf("bulk %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int64]bool{}
	next := "/api/v4/leads?limit=2"
	for pages := 0; next != ""; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		r := f.do(f.tokA, "GET", next, nil)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		m := r.json(t)
		for _, l := range embedded(t, m, "leads") {
			seen[num(l.(map[string]any)["id"])] = true
		}
		next = ""
		if n, ok := m["_links"].(map[string]any)["next"].(map[string]any); ok {
			next = strings.TrimPrefix(n["href"].(string), f.s.URL())
		}
	}
	if len(seen) != 7 {
		t.Fatalf("saw %d leads, want 7", len(seen))
	}
	if r := f.do(f.tokA, "GET", "/api/v4/leads?limit=2&page=9", nil); r.status != 204 {
		t.Fatalf("page past the end: %d", r.status)
	}
}

// ---- PATCH -------------------------------------------------------------------

func TestPatchValidationChangesNothing(t *testing.T) {
	cases := []struct {
		name string
		body any
		path string // validation-errors[0].errors[0].path
	}{
		{"unknown custom field", []any{map[string]any{"id": leadA, "price": 1, "custom_fields_values": []any{map[string]any{"field_id": 123, "values": []any{map[string]any{"value": "x"}}}}}}, "custom_fields_values.0.field_id"},
		{"unknown enum", []any{map[string]any{"id": leadA, "custom_fields_values": []any{map[string]any{"field_id": fieldKind, "values": []any{map[string]any{"enum_id": 7}}}}}}, "custom_fields_values.0.values.0.enum_id"},
		{"unknown responsible user", []any{map[string]any{"id": leadA, "responsible_user_id": 999}}, "responsible_user_id"},
		{"status of another pipeline", []any{map[string]any{"id": leadA, "status_id": stOther}}, "status_id"},
		{"status of another pipeline, explicit", []any{map[string]any{"id": leadA, "pipeline_id": pipeMain, "status_id": stOther}}, "status_id"},
		{"unknown pipeline", []any{map[string]any{"id": leadA, "pipeline_id": 1}}, "pipeline_id"},
		{"price as string", []any{map[string]any{"id": leadA, "price": "100"}}, "price"},
		{"unknown lead", []any{map[string]any{"id": 424242, "price": 1}}, "id"},
		{"second item invalid rejects the first", []any{
			map[string]any{"id": leadA2, "price": 777},
			map[string]any{"id": leadA, "status_id": 1},
		}, "status_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{DisableRateLimit: true})
			beforeA, _ := f.s.Lead(accA, leadA)
			beforeA2, _ := f.s.Lead(accA, leadA2)
			r := f.do(f.tokA, "PATCH", "/api/v4/leads", tc.body)
			if r.status != 400 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := r.json(t)
			ve := m["validation-errors"].([]any)[0].(map[string]any)
			e := ve["errors"].([]any)[0].(map[string]any)
			if e["path"] != tc.path || m["title"] != "Bad Request" || num(m["status"]) != 400 || m["detail"] != "Request validation failed" {
				t.Fatalf("body %s", r.body)
			}
			afterA, _ := f.s.Lead(accA, leadA)
			afterA2, _ := f.s.Lead(accA, leadA2)
			if fmt.Sprint(beforeA) != fmt.Sprint(afterA) || fmt.Sprint(beforeA2) != fmt.Sprint(afterA2) {
				t.Fatalf("state changed:\n%+v\n%+v", beforeA, afterA)
			}
			if len(f.s.LeadUpdates(accA)) != 0 {
				t.Fatal("LeadUpdates recorded a rejected PATCH")
			}
		})
	}
	t.Run("malformed body", func(t *testing.T) {
		f := newFixture(t, Options{})
		if r := f.do(f.tokA, "PATCH", "/api/v4/leads", map[string]any{"id": leadA}); r.status != 400 {
			t.Fatalf("object body on the batch endpoint: %d", r.status)
		}
	})
}

func TestPatchLeads(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	f.clock.Advance(time.Hour)
	r := f.do(f.tokA, "PATCH", "/api/v4/leads", []any{
		map[string]any{"id": leadA, "status_id": stWork, "responsible_user_id": userAdmin, "request_id": "r1",
			"custom_fields_values": []any{
				map[string]any{"field_id": fieldAddr, "values": []any{map[string]any{"value": "Мира, 5"}}},
				map[string]any{"field_id": fieldKind, "values": nil},
			}},
		map[string]any{"id": leadA2, "price": 50000, "pipeline_id": pipeOther},
	})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	leads := embedded(t, r.json(t), "leads")
	if len(leads) != 2 || leads[0].(map[string]any)["request_id"] != "r1" || leads[1].(map[string]any)["request_id"] != "1" ||
		num(leads[0].(map[string]any)["updated_at"]) != f.clock.Now().Unix() {
		t.Fatalf("%s", r.body)
	}
	l, _ := f.s.Lead(accA, leadA)
	if l.StatusID != stWork || l.ResponsibleUserID != userAdmin || len(l.CustomFieldsValues) != 1 || l.CustomFieldsValues[0].Values[0].Value != "Мира, 5" || l.UpdatedBy != userAdmin {
		t.Fatalf("%+v", l)
	}
	l2, _ := f.s.Lead(accA, leadA2)
	if l2.Price != 50000 || l2.PipelineID != pipeOther || l2.StatusID != stOther {
		t.Fatalf("%+v", l2)
	}
	ups := f.s.LeadUpdates(accA)
	if len(ups) != 2 || ups[0].Before.StatusID != stNew || ups[0].After.StatusID != stWork {
		t.Fatalf("%+v", ups)
	}

	r = f.do(f.tokA, "PATCH", "/api/v4/leads/2001", map[string]any{"status_id": StatusWon, "name": "Готово"})
	if r.status != 200 || num(r.json(t)["id"]) != leadA {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if l, _ := f.s.Lead(accA, leadA); l.StatusID != StatusWon || l.Name != "Готово" || l.ClosedAt.IsZero() {
		t.Fatalf("%+v", l)
	}
}

// ---- rate limit / faults --------------------------------------------------------------

func TestRateLimit(t *testing.T) {
	f := newFixture(t, Options{})
	for i := 1; i <= 7; i++ {
		if r := f.do(f.tokA, "GET", "/api/v4/account", nil); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	r := f.do(f.tokA, "GET", "/api/v4/account", nil)
	if r.status != 429 {
		t.Fatalf("8th request: %d", r.status)
	}
	m := r.json(t)
	if m["title"] != "Too Many Requests" || m["type"] != "https://httpstatus.es/429" || num(m["status"]) != 429 {
		t.Fatalf("%s", r.body)
	}
	if f.s.RateLimitHits(accA) != 1 || len(f.s.Requests(RequestFilter{AccountID: accA, Status: 429})) != 1 {
		t.Fatal("429 not recorded")
	}
	if rr := f.s.Requests(RequestFilter{Status: 429}); !rr[0].RateLimited {
		t.Fatal("429 not flagged RateLimited")
	}
	if r := f.do(f.tokB, "GET", "/api/v4/account", nil); r.status != 200 {
		t.Fatalf("account B throttled by A's traffic: %d", r.status)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := f.do(f.tokA, "GET", "/api/v4/account", nil); r.status != 200 {
		t.Fatalf("after the window: %d", r.status)
	}
	f.s.SetRateLimitEnabled(false)
	for i := 0; i < 20; i++ {
		if r := f.do(f.tokA, "GET", "/api/v4/account", nil); r.status != 200 {
			t.Fatalf("limiter off, request %d: %d", i, r.status)
		}
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		name    string
		fault   Fault
		method  string
		path    string
		want    []int
		content string
	}{
		{"503 twice then ok", Fault{Pattern: "GET /api/v4/leads/*", Times: 2, Status: 503}, "GET", "/api/v4/leads/2001", []int{503, 503, 200}, "text/html"},
		{"500 once", Fault{Pattern: "/api/v4/account", Times: 1, Status: 500}, "GET", "/api/v4/account", []int{500, 200}, "application/problem+json"},
		{"429 injected", Fault{Pattern: "*", Times: 1, Status: 429}, "GET", "/api/v4/account", []int{429, 200}, "application/problem+json"},
		{"method mismatch does not fire", Fault{Pattern: "PATCH /api/v4/leads", Times: 1, Status: 500}, "GET", "/api/v4/leads", []int{200}, ""},
		{"other account does not fire", Fault{Pattern: "*", Times: 1, Status: 502, AccountID: accB}, "GET", "/api/v4/account", []int{200}, ""},
		{"oauth endpoint", Fault{Pattern: "POST /oauth2/access_token", Times: 1, Status: 502}, "POST", "/oauth2/access_token", []int{502, 400}, "text/html"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{DisableRateLimit: true})
			f.s.InjectFault(tc.fault)
			for i, want := range tc.want {
				var body any
				if tc.method == "POST" {
					body = map[string]any{}
				}
				r := f.do(f.tokA, tc.method, tc.path, body)
				if r.status != want {
					t.Fatalf("request %d: %d, want %d", i, r.status, want)
				}
				if i == 0 && tc.content != "" && !strings.HasPrefix(r.header.Get("Content-Type"), tc.content) {
					t.Fatalf("content type %q", r.header.Get("Content-Type"))
				}
			}
		})
	}
	t.Run("delay only", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.s.InjectFault(Fault{Pattern: "/api/v4/account", Delay: 150 * time.Millisecond})
		start := time.Now()
		if r := f.do(f.tokA, "GET", "/api/v4/account", nil); r.status != 200 || time.Since(start) < 150*time.Millisecond {
			t.Fatalf("%d after %s", r.status, time.Since(start))
		}
	})
}

// ---- webhooks ----------------------------------------------------------------

type hookSink struct {
	mu   sync.Mutex
	got  []capturedHook
	srv  *httptest.Server
	code int
}

type capturedHook struct {
	header http.Header
	raw    string
	form   url.Values
}

func newSink(t *testing.T) *hookSink {
	h := &hookSink{code: 200}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(b))
		h.mu.Lock()
		h.got = append(h.got, capturedHook{r.Header.Clone(), string(b), form})
		code := h.code
		h.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookSink) hooks() []capturedHook {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]capturedHook(nil), h.got...)
}

func (f *fixture) subscribe(dest string, settings ...string) {
	f.t.Helper()
	r := f.do(f.tokA, "POST", "/api/v4/webhooks", map[string]any{"destination": dest, "settings": settings})
	if r.status != 201 {
		f.t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
}

func TestWebhookMoveLead(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	sink := newSink(t)
	f.subscribe(sink.srv.URL+"/amocrm/hook", "status_lead")

	if err := f.s.MoveLead(accA, leadA, stWork); err != nil {
		t.Fatal(err)
	}
	if err := f.s.WaitDeliveries(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	hooks := sink.hooks()
	if len(hooks) != 1 {
		t.Fatalf("got %d hooks", len(hooks))
	}
	h := hooks[0]
	if h.header.Get("Content-Type") != "application/x-www-form-urlencoded" || h.header.Get("User-Agent") != "amoCRM-WebHook-client/1.0" {
		t.Fatalf("headers %v", h.header)
	}
	if !strings.HasPrefix(h.raw, "leads%5Bstatus%5D%5B0%5D%5Bid%5D=2001&") {
		t.Fatalf("raw body not PHP-encoded in amoCRM order: %s", h.raw)
	}
	want := map[string]string{
		"leads[status][0][id]":                                 "2001",
		"leads[status][0][name]":                               "Починить кран",
		"leads[status][0][status_id]":                          fmt.Sprint(stWork),
		"leads[status][0][old_status_id]":                      fmt.Sprint(stNew),
		"leads[status][0][pipeline_id]":                        fmt.Sprint(pipeMain),
		"leads[status][0][old_pipeline_id]":                    fmt.Sprint(pipeMain),
		"leads[status][0][price]":                              "1500",
		"leads[status][0][responsible_user_id]":                fmt.Sprint(userExec),
		"leads[status][0][modified_user_id]":                   fmt.Sprint(userExec),
		"leads[status][0][last_modified]":                      fmt.Sprint(f.clock.Now().Unix()),
		"leads[status][0][account_id]":                         fmt.Sprint(accA),
		"leads[status][0][custom_fields][0][id]":               fmt.Sprint(fieldAddr),
		"leads[status][0][custom_fields][0][name]":             "Адрес",
		"leads[status][0][custom_fields][0][values][0][value]": "Ленина, 1",
		"leads[status][0][custom_fields][1][values][0][enum]":  fmt.Sprint(enumKindA),
		"account[subdomain]":                                   "alpha",
		"account[id]":                                          fmt.Sprint(accA),
		"account[_links][self]":                                "https://alpha.amocrm.ru",
	}
	for k, v := range want {
		if got := h.form.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	ds := f.s.Deliveries(accA)
	if len(ds) != 1 || ds[0].StatusCode != 200 || ds[0].Event != "status_lead" || ds[0].LeadID != leadA {
		t.Fatalf("%+v", ds)
	}
}

func TestWebhookEvents(t *testing.T) {
	cases := []struct {
		name     string
		settings []string
		act      func(f *fixture)
		wantKeys []string // first key of each delivered body, in order
	}{
		{"API PATCH echoes status_lead", []string{"status_lead"}, func(f *fixture) {
			if r := f.do(f.tokA, "PATCH", "/api/v4/leads/2001", map[string]any{"status_id": stWork}); r.status != 200 {
				f.t.Fatalf("%d %s", r.status, r.body)
			}
		}, []string{"leads[status][0][id]"}},
		{"price PATCH fires update only", []string{"status_lead", "update_lead"}, func(f *fixture) {
			f.do(f.tokA, "PATCH", "/api/v4/leads/2001", map[string]any{"price": 10})
		}, []string{"leads[update][0][id]"}},
		{"move fires status then update", []string{"update_lead", "status_lead"}, func(f *fixture) {
			_ = f.s.MoveLead(accA, leadA, StatusLost)
		}, []string{"leads[status][0][id]", "leads[update][0][id]"}},
		{"add lead", []string{"add_lead"}, func(f *fixture) {
			_, _ = f.s.AddLead(accA, Lead{Name: "Новая", PipelineID: pipeMain, StatusID: stNew})
		}, []string{"leads[add][0][id]"}},
		{"delete lead", []string{"delete_lead"}, func(f *fixture) { _ = f.s.DeleteLead(accA, leadA) }, []string{"leads[delete][0][id]"}},
		{"responsible change", []string{"responsible_lead"}, func(f *fixture) {
			_, _ = f.s.UpdateLead(accA, leadA, func(l *Lead) { l.ResponsibleUserID = userAdmin })
		}, []string{"leads[responsible][0][id]"}},
		{"unsubscribed event is silent", []string{"add_lead"}, func(f *fixture) { _ = f.s.MoveLead(accA, leadA, stWork) }, nil},
		{"other account is silent", []string{"status_lead"}, func(f *fixture) {
			_ = f.s.MoveLead(accB, leadB, f.b.MainPipeline().Statuses[2].ID)
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{DisableRateLimit: true})
			sink := newSink(t)
			f.subscribe(sink.srv.URL, tc.settings...)
			tc.act(f)
			if err := f.s.WaitDeliveries(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			hooks := sink.hooks()
			if len(hooks) != len(tc.wantKeys) {
				t.Fatalf("got %d hooks, want %d", len(hooks), len(tc.wantKeys))
			}
			for i, k := range tc.wantKeys {
				first, _ := url.QueryUnescape(strings.SplitN(hooks[i].raw, "=", 2)[0])
				if first != k {
					t.Fatalf("hook %d starts with %s, want %s (%s)", i, first, k, hooks[i].raw)
				}
			}
			if tc.name == "API PATCH echoes status_lead" {
				if got := hooks[0].form.Get("leads[status][0][modified_user_id]"); got != fmt.Sprint(userAdmin) {
					t.Fatalf("API change attributed to %s, want the integration user", got)
				}
			}
		})
	}
}

func TestWebhookDeliveryFaults(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true, SyncWebhooks: true})
	sink := newSink(t)
	f.subscribe(sink.srv.URL, "status_lead")

	f.s.DropNextDeliveries(1)
	_ = f.s.MoveLead(accA, leadA, stWork)
	if len(sink.hooks()) != 0 {
		t.Fatal("dropped hook was delivered")
	}
	if err := f.s.ResendLast(accA); err != nil {
		t.Fatal(err)
	}
	if hs := sink.hooks(); len(hs) != 1 || hs[0].form.Get("leads[status][0][status_id]") != fmt.Sprint(stWork) {
		t.Fatalf("resend: %v", hs)
	}
	f.s.DuplicateNextDeliveries(1)
	_ = f.s.MoveLead(accA, leadA, stNew)
	hs := sink.hooks()
	if len(hs) != 3 || hs[1].raw != hs[2].raw {
		t.Fatalf("duplicate: %d hooks", len(hs))
	}
	ds := f.s.Deliveries(accA)
	if len(ds) != 4 || !ds[0].Dropped || !ds[1].Resent || !ds[3].Duplicate {
		t.Fatalf("%+v", ds)
	}
	sink.mu.Lock()
	sink.code = 500
	sink.mu.Unlock()
	_ = f.s.MoveLead(accA, leadA, stWork)
	if ds := f.s.Deliveries(accA); ds[len(ds)-1].StatusCode != 500 {
		t.Fatal("receiver status not recorded")
	}
}

func TestWebhookSubscriptions(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	if r := f.do(f.tokA, "GET", "/api/v4/webhooks", nil); r.status != 204 {
		t.Fatalf("empty list: %d", r.status)
	}
	f.subscribe("https://hooks.test/a", "status_lead")
	f.subscribe("https://hooks.test/a", "status_lead", "update_lead", "delete_lead")
	r := f.do(f.tokA, "GET", "/api/v4/webhooks", nil)
	hooks := embedded(t, r.json(t), "webhooks")
	if len(hooks) != 1 || len(hooks[0].(map[string]any)["settings"].([]any)) != 3 {
		t.Fatalf("re-subscribe did not update in place: %s", r.body)
	}
	if len(f.s.Webhooks(accB)) != 0 {
		t.Fatal("subscription leaked to B")
	}
	bad := []map[string]any{
		{"destination": "not a url", "settings": []string{"status_lead"}},
		{"destination": "https://hooks.test/b", "settings": []string{"nonsense"}},
		{"destination": "https://hooks.test/b"},
	}
	for _, b := range bad {
		if r := f.do(f.tokA, "POST", "/api/v4/webhooks", b); r.status != 400 {
			t.Fatalf("%v accepted: %d", b, r.status)
		}
	}
	if r := f.do(f.tokA, "DELETE", "/api/v4/webhooks", map[string]any{"destination": "https://hooks.test/a"}); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if len(f.s.Webhooks(accA)) != 0 {
		t.Fatal("not deleted")
	}
	if r := f.do(f.tokA, "DELETE", "/api/v4/webhooks", map[string]any{"destination": "https://hooks.test/a"}); r.status != 404 {
		t.Fatalf("delete twice: %d", r.status)
	}
}

// ---- notes / custom fields ------------------------------------------------------------

func TestNotes(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	if r := f.do(f.tokA, "GET", "/api/v4/leads/2001/notes", nil); r.status != 204 {
		t.Fatalf("no notes yet: %d", r.status)
	}
	r := f.do(f.tokA, "POST", "/api/v4/leads/notes", []any{
		map[string]any{"entity_id": leadA, "note_type": "common", "params": map[string]any{"text": "Взял в работу"}},
	})
	if r.status != 200 || len(embedded(t, r.json(t), "notes")) != 1 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := f.do(f.tokA, "POST", "/api/v4/leads/2001/notes", []any{
		map[string]any{"note_type": "common", "params": map[string]any{"text": "Готово"}},
	}); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, bad := range []any{
		[]any{map[string]any{"entity_id": leadB, "note_type": "common", "params": map[string]any{"text": "x"}}},
		[]any{map[string]any{"entity_id": leadA, "note_type": "common", "params": map[string]any{}}},
		[]any{map[string]any{"entity_id": leadA, "note_type": "bogus", "params": map[string]any{"text": "x"}}},
	} {
		if r := f.do(f.tokA, "POST", "/api/v4/leads/notes", bad); r.status != 400 {
			t.Fatalf("%v accepted: %d", bad, r.status)
		}
	}
	notes := f.s.Notes(accA, leadA)
	if len(notes) != 2 || notes[0].Text() != "Взял в работу" || notes[1].Text() != "Готово" || notes[0].CreatedBy != userAdmin {
		t.Fatalf("%+v", notes)
	}
	r = f.do(f.tokA, "GET", "/api/v4/leads/2001/notes", nil)
	list := embedded(t, r.json(t), "notes")
	if len(list) != 2 || list[1].(map[string]any)["params"].(map[string]any)["text"] != "Готово" {
		t.Fatalf("%s", r.body)
	}
}

func TestCustomFields(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	r := f.do(f.tokA, "POST", "/api/v4/leads/custom_fields", []any{
		map[string]any{"name": "Исполнитель", "type": "text", "code": "AMOD_EXECUTOR", "sort": 510},
		map[string]any{"name": "Срочность", "type": "select", "enums": []any{map[string]any{"value": "Высокая", "sort": 1}}},
	})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	created := embedded(t, r.json(t), "custom_fields")
	id := num(created[0].(map[string]any)["id"])
	if len(created) != 2 || created[0].(map[string]any)["code"] != "AMOD_EXECUTOR" || id <= 0 {
		t.Fatalf("%s", r.body)
	}
	// The new field is usable in PATCH right away.
	if r := f.do(f.tokA, "PATCH", "/api/v4/leads", []any{map[string]any{"id": leadA, "custom_fields_values": []any{
		map[string]any{"field_id": id, "values": []any{map[string]any{"value": "@master"}}}}}}); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r = f.do(f.tokA, "GET", "/api/v4/leads/custom_fields?limit=2", nil)
	m := r.json(t)
	if num(m["_total_items"]) != 4 || len(embedded(t, m, "custom_fields")) != 2 || m["_links"].(map[string]any)["next"] == nil {
		t.Fatalf("%s", r.body)
	}
	for _, bad := range []any{
		[]any{map[string]any{"name": "", "type": "text"}},
		[]any{map[string]any{"name": "X", "type": "hologram"}},
		[]any{map[string]any{"name": "Dup", "type": "text", "code": "AMOD_EXECUTOR"}},
	} {
		if r := f.do(f.tokA, "POST", "/api/v4/leads/custom_fields", bad); r.status != 400 {
			t.Fatalf("%v accepted: %d", bad, r.status)
		}
	}
	if len(f.b.LeadFields()) != 0 {
		t.Fatal("field leaked to B")
	}
}

// ---- recorder / concurrency -----------------------------------------------------------

func TestRecorder(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	f.do(f.tokA, "PATCH", "/api/v4/leads", []any{map[string]any{"id": leadA, "price": 9}})
	f.do(f.tokA, "GET", "/api/v4/leads/2001?with=contacts", nil)
	f.token(f.refreshForm(f.s.Tokens(accA)[0].RefreshToken), false)

	reqs := f.s.Requests(RequestFilter{AccountID: accA, Method: "PATCH"})
	if len(reqs) != 1 || reqs[0].Status != 200 || reqs[0].JSON.([]any)[0].(map[string]any)["price"] != float64(9) {
		t.Fatalf("%+v", reqs)
	}
	get := f.s.Requests(RequestFilter{Path: "/api/v4/leads/*"})
	if len(get) != 1 || get[0].Query.Get("with") != "contacts" {
		t.Fatalf("%+v", get)
	}
	oauth := f.s.Requests(RequestFilter{Path: "/oauth2/access_token"})
	if len(oauth) != 1 || oauth[0].AccountID != accA || oauth[0].Form.Get("grant_type") != "refresh_token" {
		t.Fatalf("%+v", oauth)
	}
	toks := f.s.Tokens(accA)
	if len(toks) != 2 || toks[0].AccessValid || toks[0].RefreshValid || !toks[1].AccessValid {
		t.Fatalf("%+v", toks)
	}
}

func TestConcurrentUse(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	sink := newSink(t)
	f.subscribe(sink.srv.URL, "status_lead", "update_lead")
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				switch i % 5 {
				case 0:
					f.do(f.tokA, "PATCH", "/api/v4/leads", []any{map[string]any{"id": leadA, "price": g*100 + i}})
				case 1:
					f.do(f.tokB, "GET", "/api/v4/leads?with=contacts", nil)
				case 2:
					_ = f.s.MoveLead(accA, leadA2, []int64{stNew, stWork}[i%2])
				case 3:
					f.s.Requests(RequestFilter{AccountID: accA})
					f.s.Deliveries(0)
				default:
					f.do(f.tokA, "POST", "/api/v4/leads/2001/notes", []any{map[string]any{"note_type": "common", "params": map[string]any{"text": "x"}}})
				}
			}
		}()
	}
	wg.Wait()
	if err := f.s.WaitDeliveries(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(f.s.Notes(accA, leadA)); n != 16*3 {
		t.Fatalf("notes %d", n)
	}
	if len(f.s.Requests(RequestFilter{AccountID: accB})) != 16*3 {
		t.Fatal("requests lost")
	}
	for _, d := range f.s.Deliveries(accA) {
		if d.StatusCode != 200 {
			t.Fatalf("%+v", d)
		}
	}
}

// The install redirect has the shape of the captured real one
// (samples/amocrm/oauth_install_redirect_get_params…): a long lowercase-hex
// code starting def50200, from_widget, platform and referer.
func TestInstallRedirectShape(t *testing.T) {
	f := newFixture(t, Options{})
	hexCode := regexp.MustCompile(`^def50200[0-9a-f]{898}$`)
	for _, tc := range []struct {
		acc               int64
		referer, platform string
	}{{accA, "alpha.amocrm.ru", "1"}, {accB, "beta.kommo.com", "2"}} {
		in := f.s.IssueInstall(tc.acc, "state")
		q := in.Query
		if !hexCode.MatchString(in.Code) || q.Get("code") != in.Code {
			t.Errorf("account %d: code %q is not a def50200… hex code", tc.acc, in.Code)
		}
		if q.Get("referer") != tc.referer || q.Get("platform") != tc.platform || q.Get("from_widget") != "1" ||
			q.Get("state") != "state" || q.Get("client_id") != f.s.opts.ClientID {
			t.Errorf("account %d: redirect query %v", tc.acc, q)
		}
		if r := f.token(f.codeForm(in.Code), true); r.status != 200 {
			t.Fatalf("account %d: exchange %d %s", tc.acc, r.status, r.body)
		}
		if r := f.token(f.codeForm(in.Code), true); r.status != 400 {
			t.Fatalf("account %d: a used code answered %d, want 400", tc.acc, r.status)
		}
	}
}

// Disabling the integration in amoCRM revokes the account's tokens before the
// hook is sent, so a backend asking amoCRM about them meanwhile sees 401.
func TestDisconnectHookRevokesTokens(t *testing.T) {
	f := newFixture(t, Options{})
	pair := f.s.IssueTokens(accA)
	type seen struct {
		query     url.Values
		ua        string
		tokenGone bool
	}
	got := make(chan seen, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gone := f.do(pair.AccessToken, "GET", "/api/v4/account", nil).status == 401
		got <- seen{r.URL.Query(), r.UserAgent(), gone}
	}))
	defer hook.Close()
	status, err := f.s.SendDisconnect(accA, hook.URL+"/oauth/amocrm/disconnect")
	if err != nil || status != 200 {
		t.Fatalf("SendDisconnect: %d %v", status, err)
	}
	s := <-got
	mac := hmac.New(sha256.New, []byte(f.s.opts.ClientSecret))
	mac.Write([]byte(f.s.opts.ClientID + "|" + fmt.Sprint(accA)))
	if s.query.Get("signature") != hex.EncodeToString(mac.Sum(nil)) || s.query.Get("client_uuid") != f.s.opts.ClientID ||
		s.query.Get("account_id") != fmt.Sprint(accA) || s.ua != "amoService-oAuth-Code-Sender/1.0" {
		t.Fatalf("hook request: %v UA %q", s.query, s.ua)
	}
	if !s.tokenGone {
		t.Fatal("the access token still worked while the hook was being delivered")
	}
	if r := f.token(f.refreshForm(pair.RefreshToken), true); r.status != 401 {
		t.Fatalf("refresh after disconnect: %d", r.status)
	}
	if f.do(f.tokB, "GET", "/api/v4/account", nil).status != 200 {
		t.Fatal("disconnecting A revoked B")
	}
}

// GET /api/v4/users/{id} and the list carry rights.is_admin as amoCRM
// documents it; a user demoted in amoCRM shows as such on the next read, and
// another account's user is not found (204, as for any missing entity).
func TestUserRights(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	rights := func(tok string, id int64) (int, map[string]any) {
		r := f.do(tok, "GET", fmt.Sprintf("/api/v4/users/%d", id), nil)
		if r.status != 200 {
			return r.status, nil
		}
		m := r.json(t)
		if num(m["id"]) != id {
			t.Fatalf("user %d answered as %v", id, m["id"])
		}
		return r.status, m["rights"].(map[string]any)
	}
	if s, r := rights(f.tokA, userAdmin); s != 200 || r["is_admin"] != true || r["is_active"] != true {
		t.Fatalf("admin: %d %v", s, r)
	}
	if s, r := rights(f.tokA, userExec); s != 200 || r["is_admin"] != false {
		t.Fatalf("manager: %d %v", s, r)
	}
	listed := func() map[int64]any {
		out := map[int64]any{}
		for _, u := range embedded(t, f.do(f.tokA, "GET", "/api/v4/users", nil).json(t), "users") {
			m := u.(map[string]any)
			out[num(m["id"])] = m["rights"].(map[string]any)["is_admin"]
		}
		return out
	}
	if l := listed(); l[userAdmin] != true || l[userExec] != false {
		t.Fatalf("list: %v", l)
	}

	if err := f.s.SetUserAdmin(accA, userAdmin, false); err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetUserAdmin(accA, userExec, true); err != nil {
		t.Fatal(err)
	}
	if _, r := rights(f.tokA, userAdmin); r["is_admin"] != false {
		t.Fatalf("demoted admin: %v", r)
	}
	if _, r := rights(f.tokA, userExec); r["is_admin"] != true {
		t.Fatalf("promoted manager: %v", r)
	}
	if l := listed(); l[userAdmin] != false || l[userExec] != true {
		t.Fatalf("list after the change: %v", l)
	}

	if s, _ := rights(f.tokB, userAdmin); s != 204 {
		t.Fatalf("A's user read with B's token: %d", s)
	}
	if s, _ := rights(f.tokA, 999999); s != 204 {
		t.Fatalf("unknown user: %d", s)
	}
	if err := f.s.SetUserAdmin(accB, userAdmin, true); err == nil {
		t.Fatal("SetUserAdmin accepted another account's user")
	}
}

func TestTasks(t *testing.T) {
	f := newFixture(t, Options{DisableRateLimit: true})
	if r := f.do(f.tokA, "GET", "/api/v4/tasks?filter[entity_type]=leads&filter[entity_id][]=2001", nil); r.status != 204 {
		t.Fatalf("no tasks yet: %d", r.status)
	}
	till := time.Date(2025, 3, 1, 12, 15, 0, 0, time.UTC).Unix()
	r := f.do(f.tokA, "POST", "/api/v4/tasks", []any{
		map[string]any{"entity_id": leadA, "entity_type": "leads", "text": "Никто не взял заказ", "complete_till": till,
			"responsible_user_id": userExec, "request_id": "ladder"},
	})
	created := embedded(t, r.json(t), "tasks")
	if r.status != 200 || len(created) != 1 || created[0].(map[string]any)["request_id"] != "ladder" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, bad := range []any{
		[]any{map[string]any{"entity_id": leadB, "entity_type": "leads", "text": "x", "complete_till": till}},         // another account's deal
		[]any{map[string]any{"entity_id": leadA, "entity_type": "leads", "text": " ", "complete_till": till}},         // blank text
		[]any{map[string]any{"entity_id": leadA, "entity_type": "leads", "text": "x"}},                                // no deadline
		[]any{map[string]any{"entity_id": leadA, "text": "x", "complete_till": till}},                                 // id without type
		[]any{map[string]any{"entity_id": leadA, "entity_type": "deals", "text": "x", "complete_till": till}},         // unknown type
		[]any{map[string]any{"text": "x", "complete_till": till, "responsible_user_id": 999}},                         // unknown user
		[]any{map[string]any{"text": "x", "complete_till": till, "task_type_id": 77}},                                 // unknown task type
		[]any{map[string]any{"text": "ok", "complete_till": till}, map[string]any{"text": "", "complete_till": till}}, // all or none
	} {
		if r := f.do(f.tokA, "POST", "/api/v4/tasks", bad); r.status != 400 {
			t.Fatalf("%v accepted: %d %s", bad, r.status, r.body)
		}
	}
	tasks := f.s.Tasks(accA, 0)
	if len(tasks) != 1 {
		t.Fatalf("a refused batch stored tasks: %+v", tasks)
	}
	got := tasks[0]
	if got.EntityID != leadA || got.ResponsibleUserID != userExec || got.TaskTypeID != 1 || got.CompleteTill.Unix() != till || got.CreatedBy != userAdmin {
		t.Fatalf("%+v", got)
	}
	r = f.do(f.tokA, "GET", "/api/v4/tasks?filter[entity_type]=leads&filter[entity_id][]=2001&filter[is_completed]=0", nil)
	list := embedded(t, r.json(t), "tasks")
	if len(list) != 1 || list[0].(map[string]any)["text"] != "Никто не взял заказ" || list[0].(map[string]any)["complete_till"] != float64(till) {
		t.Fatalf("%s", r.body)
	}
	if r := f.do(f.tokA, "GET", "/api/v4/tasks?filter[entity_type]=leads&filter[entity_id][]=2002", nil); r.status != 204 {
		t.Fatalf("another deal's tasks: %d %s", r.status, r.body)
	}
	if r := f.do(f.tokB, "GET", "/api/v4/tasks", nil); r.status != 204 {
		t.Fatalf("another account sees the task: %d %s", r.status, r.body)
	}
	if r := f.do(f.tokA, "GET", fmt.Sprintf("/api/v4/tasks/%d", got.ID), nil); r.status != 200 {
		t.Fatalf("%d", r.status)
	}
}
