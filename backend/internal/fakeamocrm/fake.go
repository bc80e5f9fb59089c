// Package fakeamocrm is an in-process fake of the amoCRM API v4, its OAuth2
// token endpoint and its outgoing webhooks, for tests of code that talks to
// amoCRM. One Server hosts many accounts; the account of an API call is
// identified by its Bearer token, exactly as the backend does when every
// account shares one AMOCRM_API_URL.
//
// Typical use:
//
//	fake := fakeamocrm.New(fakeamocrm.Options{ClientID: id, ClientSecret: secret, RedirectURI: cb})
//	defer fake.Close()
//	acc := fake.AddAccount(fakeamocrm.AccountSpec{Subdomain: "acme"})
//	install := fake.IssueInstall(acc.ID, "state") // what the OAuth callback receives
//	// ... point the backend at fake.URL(), let it exchange install.Code ...
//	fake.MoveLead(acc.ID, leadID, statusID)       // fires status_lead webhooks
//	fake.WaitDeliveries(5 * time.Second)
//
// Deliberate deviations from amoCRM: HAL links point at the fake's URL (so
// following _links.next stays in-process) while webhook account[_links][self]
// carries the real-looking https://<sub>.amocrm.ru; the rate limiter runs on
// the wall clock, everything else on Options.Now.
package fakeamocrm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
)

// Options configure a Server. Zero values get the defaults noted per field.
type Options struct {
	ClientID     string // default "fake-client-id"
	ClientSecret string // default "fake-client-secret"
	RedirectURI  string // default "https://amodispatch.test/oauth/callback"

	AccessTokenTTL  time.Duration    // default 24h (amoCRM's expires_in 86400)
	RefreshTokenTTL time.Duration    // default 90 days
	Now             func() time.Time // default time.Now; drives token/code expiry and timestamps

	// RateLimit is the number of API requests per second allowed per account
	// (default 7, amoCRM's documented limit). DisableRateLimit turns the
	// limiter off from the start; SetRateLimitEnabled toggles it later.
	RateLimit        int
	DisableRateLimit bool

	// SyncWebhooks delivers outgoing webhooks in the goroutine that caused
	// them (MoveLead, the PATCH handler, ...) before it returns.
	SyncWebhooks bool
	// WebhookTimeout bounds one webhook POST (default 5s).
	WebhookTimeout time.Duration
	// WebhookClient overrides the HTTP client used for webhooks.
	WebhookClient *http.Client
}

// Server is the fake. All methods are safe for concurrent use.
type Server struct {
	opts Options
	ts   *httptest.Server
	mux  *http.ServeMux

	mu          sync.Mutex // guards everything below
	nextID      int64
	accounts    map[int64]*account
	codes       map[string]*authCode
	pairsByAT   map[string]*tokenPair
	pairsByRT   map[string]*tokenPair
	requests    []Request
	faults      []*Fault
	rateEnabled bool

	d deliverer
}

// New starts a fake on a random local port.
func New(opts Options) *Server {
	if opts.ClientID == "" {
		opts.ClientID = "fake-client-id"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "fake-client-secret"
	}
	if opts.RedirectURI == "" {
		opts.RedirectURI = "https://amodispatch.test/oauth/callback"
	}
	if opts.AccessTokenTTL == 0 {
		opts.AccessTokenTTL = 24 * time.Hour
	}
	if opts.RefreshTokenTTL == 0 {
		opts.RefreshTokenTTL = 90 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = 7
	}
	if opts.WebhookTimeout == 0 {
		opts.WebhookTimeout = 5 * time.Second
	}
	if opts.WebhookClient == nil {
		opts.WebhookClient = &http.Client{Timeout: opts.WebhookTimeout}
	}
	s := &Server{
		opts:        opts,
		nextID:      30_000_000,
		accounts:    map[int64]*account{},
		codes:       map[string]*authCode{},
		pairsByAT:   map[string]*tokenPair{},
		pairsByRT:   map[string]*tokenPair{},
		rateEnabled: !opts.DisableRateLimit,
	}
	s.d.init()
	s.mux = http.NewServeMux()
	s.routes()
	s.ts = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the base URL to use as AMOCRM_API_URL and as the OAuth host.
func (s *Server) URL() string { return s.ts.URL }

// Close stops the HTTP server. Webhook deliveries still in flight finish
// on their own (bounded by WebhookTimeout).
func (s *Server) Close() { s.ts.Close() }

// Client returns an HTTP client suitable for talking to the fake.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// SetRateLimitEnabled switches the per-account 7 rps limiter on or off.
func (s *Server) SetRateLimitEnabled(on bool) {
	s.mu.Lock()
	s.rateEnabled = on
	s.mu.Unlock()
}

// RateLimitHits returns how many 429s the limiter served to the account.
func (s *Server) RateLimitHits(accountID int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if acc := s.accounts[accountID]; acc != nil {
		return len(acc.rateHits)
	}
	return 0
}

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("POST /oauth2/access_token", s.handleToken)

	api := func(pattern string, h func(http.ResponseWriter, *http.Request, *account)) {
		m.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			h(w, r, r.Context().Value(accountKey{}).(*account))
		})
	}
	api("GET /api/v4/account", s.handleAccount)
	api("GET /api/v4/leads/pipelines", s.handlePipelines)
	api("GET /api/v4/leads/pipelines/{id}", s.handlePipeline)
	api("GET /api/v4/leads", s.handleLeads)
	api("PATCH /api/v4/leads", s.handlePatchLeads)
	api("GET /api/v4/leads/{id}", s.handleLead)
	api("PATCH /api/v4/leads/{id}", s.handlePatchLead)
	api("GET /api/v4/leads/{id}/{sub}", s.handleLeadSub)
	api("POST /api/v4/leads/{id}/{sub}", s.handleLeadSub)
	api("GET /api/v4/leads/custom_fields", s.handleCustomFields)
	api("POST /api/v4/leads/custom_fields", s.handleCreateCustomFields)
	api("GET /api/v4/leads/custom_fields/{id}", s.handleCustomField)
	api("GET /api/v4/leads/notes", s.handleNotesList)
	api("POST /api/v4/leads/notes", s.handleAddNotes)
	api("GET /api/v4/tasks", s.handleTasks)
	api("POST /api/v4/tasks", s.handleAddTasks)
	api("GET /api/v4/tasks/{id}", s.handleTask)
	api("GET /api/v4/contacts", s.handleContacts)
	api("GET /api/v4/contacts/{id}", s.handleContact)
	api("GET /api/v4/users", s.handleUsers)
	api("GET /api/v4/users/{id}", s.handleUser)
	api("GET /api/v4/webhooks", s.handleWebhooks)
	api("POST /api/v4/webhooks", s.handleSubscribe)
	api("DELETE /api/v4/webhooks", s.handleUnsubscribe)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "Not Found", "Not Found", nil)
	})
}

type accountKey struct{}
type metaKey struct{}

// reqMeta lets handlers tell the recorder facts learnt while serving
// (the OAuth endpoint only learns the account from the code/refresh token).
type reqMeta struct {
	accountID   int64
	rateLimited bool
	faulted     bool
}

func metaOf(r *http.Request) *reqMeta {
	m, _ := r.Context().Value(metaKey{}).(*reqMeta)
	if m == nil {
		return &reqMeta{}
	}
	return m
}

type respRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *respRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *respRecorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	meta := &reqMeta{}
	ctx := context.WithValue(r.Context(), metaKey{}, meta)
	r = r.WithContext(ctx)
	rec := &respRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() { s.record(r, body, meta, rec, time.Since(start)) }()

	// The token is resolved before faults so account-scoped faults can match,
	// but it is validated after them: an outage answers before auth does.
	acc, tokenOK := s.authenticate(r)
	if acc != nil {
		meta.accountID = acc.id
	}
	if s.applyFault(rec, r, meta) {
		return
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		if !tokenOK {
			writeProblem(rec, http.StatusUnauthorized, "Unauthorized", "Неверный логин или пароль", nil)
			return
		}
		if s.rateLimited(acc) {
			meta.rateLimited = true
			rec.Header().Set("Retry-After", "1")
			writeProblem(rec, http.StatusTooManyRequests, "Too Many Requests",
				"You have sent too many requests in a given amount of time. Please try again later.",
				map[string]any{"retry_after": 1})
			return
		}
		r = r.WithContext(context.WithValue(ctx, accountKey{}, acc))
	}
	// Handlers render while holding s.mu; buffering keeps a slow client from
	// stalling every other request behind that lock.
	buf := httptest.NewRecorder()
	s.mux.ServeHTTP(buf, r)
	for k, v := range buf.Header() {
		rec.Header()[k] = v
	}
	rec.WriteHeader(buf.Code)
	_, _ = rec.Write(buf.Body.Bytes())
}

// rateLimited implements a sliding one-second window of accepted requests.
// It uses the wall clock, not Options.Now: the client under test paces
// itself in real time, and a frozen test clock would put every request in
// the same window.
func (s *Server) rateLimited(acc *account) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.rateEnabled {
		return false
	}
	now := time.Now()
	cut := 0
	for cut < len(acc.rateWindow) && now.Sub(acc.rateWindow[cut]) >= time.Second {
		cut++
	}
	acc.rateWindow = acc.rateWindow[cut:]
	if len(acc.rateWindow) >= s.opts.RateLimit {
		acc.rateHits = append(acc.rateHits, now)
		return true
	}
	acc.rateWindow = append(acc.rateWindow, now)
	return false
}

// Fault makes matching requests fail (or stall) before normal handling.
type Fault struct {
	// Pattern is "METHOD /path" or "/path"; the path is matched with
	// path.Match (so "/api/v4/leads/*" matches one segment). "*" or ""
	// matches every request.
	Pattern string
	// Times is how many requests fail; negative means until ClearFaults.
	Times int
	// Status is the HTTP status to answer with. 0 means "do not fail, only
	// apply Delay" (useful to trigger client timeouts).
	Status int
	// Delay is slept before answering.
	Delay time.Duration
	// AccountID restricts the fault to one account's tokens (0 = any).
	AccountID int64
}

// FailNext makes the next n requests matching pattern answer with status
// (429/500/502/503/...), amoCRM-style bodies included.
func (s *Server) FailNext(pattern string, n int, status int) {
	s.InjectFault(Fault{Pattern: pattern, Times: n, Status: status})
}

// InjectFault registers a fault; faults are consumed in registration order.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every pending fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

func (f *Fault) matches(r *http.Request, accountID int64) bool {
	if f.AccountID != 0 && f.AccountID != accountID {
		return false
	}
	p := strings.TrimSpace(f.Pattern)
	if p == "" || p == "*" {
		return true
	}
	if method, rest, ok := strings.Cut(p, " "); ok {
		if !strings.EqualFold(method, r.Method) {
			return false
		}
		p = strings.TrimSpace(rest)
	}
	if p == r.URL.Path {
		return true
	}
	ok, _ := path.Match(p, r.URL.Path)
	return ok
}

func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, meta *reqMeta) bool {
	s.mu.Lock()
	var hit *Fault
	for i, f := range s.faults {
		if f.matches(r, meta.accountID) {
			c := *f
			hit = &c
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
				}
			}
			break
		}
	}
	s.mu.Unlock()
	if hit == nil {
		return false
	}
	if hit.Delay > 0 {
		select {
		case <-time.After(hit.Delay):
		case <-r.Context().Done():
		}
	}
	if hit.Status == 0 {
		return false
	}
	meta.faulted = true
	writeFault(w, hit.Status)
	return true
}

// writeFault imitates what really comes back: amoCRM's problem+json for
// statuses its app answers, nginx's HTML page for gateway errors.
func writeFault(w http.ResponseWriter, status int) {
	switch status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		writeProblem(w, status, "Too Many Requests",
			"You have sent too many requests in a given amount of time. Please try again later.",
			map[string]any{"retry_after": 1})
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		text := fmt.Sprintf("%d %s", status, http.StatusText(status))
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", text, text)
	case http.StatusUnauthorized:
		writeProblem(w, status, "Unauthorized", "Неверный логин или пароль", nil)
	default:
		writeProblem(w, status, http.StatusText(status), http.StatusText(status), nil)
	}
}

func writeProblem(w http.ResponseWriter, status int, title, detail string, extra map[string]any) {
	body := map[string]any{
		"title":  title,
		"type":   fmt.Sprintf("https://httpstatus.es/%d", status),
		"status": status,
		"detail": detail,
	}
	for k, v := range extra {
		body[k] = v
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/hal+json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// noContent is how amoCRM answers "nothing found", both for an entity by id
// and for an empty list: 204 with an empty body, never 404.
func noContent(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

// validationError writes amoCRM's 400 body with "validation-errors".
func validationError(w http.ResponseWriter, errs []itemErrors) {
	list := make([]any, 0, len(errs))
	for _, e := range errs {
		es := make([]any, 0, len(e.errors))
		for _, x := range e.errors {
			es = append(es, map[string]any{"code": x.code, "path": x.path, "detail": x.detail})
		}
		list = append(list, map[string]any{"request_id": e.requestID, "errors": es})
	}
	writeProblem(w, http.StatusBadRequest, "Bad Request", "Request validation failed",
		map[string]any{"validation-errors": list})
}

type fieldErr struct{ code, path, detail string }

type itemErrors struct {
	requestID string
	errors    []fieldErr
}

func badRequest(w http.ResponseWriter, detail string) {
	writeProblem(w, http.StatusBadRequest, "Bad Request", detail, nil)
}

func (s *Server) href(p string, q url.Values) map[string]any {
	u := s.ts.URL + p
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return map[string]any{"href": u}
}

func selfLink(s *Server, p string) map[string]any {
	return map[string]any{"self": s.href(p, nil)}
}
