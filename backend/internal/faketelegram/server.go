// Package faketelegram is an in-process fake of the Telegram Bot API for tests and local
// runs. Point the real client at it (bot.WithServerURL(s.URL), bot.WithSkipGetMe()); it
// answers as the Bot API documents, errors and limits included, records every call and
// offers helpers that play the users' side (pressing Start, adding the bot to a group,
// pressing buttons).
package faketelegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the fake Bot API. All methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to pass to bot.WithServerURL.
	URL string

	srv     *httptest.Server
	token   string
	bot     User
	clock   atomic.Pointer[func() time.Time]
	closing chan struct{}
	down    atomic.Bool
	bg      sync.WaitGroup
	client  *http.Client

	mu             sync.Mutex
	users          map[int64]*userState
	chats          map[int64]*chatState
	nextUserID     int64
	nextGroupSeq   int64
	nextQuerySeq   int64
	queue          []queuedUpdate
	history        []json.RawMessage
	nextUpdateID   int64
	updatesChanged chan struct{}
	allowedUpdates []string
	poll           *longPoll
	webhook        webhookState
	deliveries     []Delivery
	queries        map[string]*queryState
	answers        []CallbackAnswer
	calls          []Call
	faults         map[string][]*fault
	callbackMaxAge time.Duration
	webhookRetry   time.Duration
	privacyMode    bool
	flood          *FloodLimits
	floodLog       map[int64][]time.Time
	floodGlobal    []time.Time
	floodHolds     map[int64]time.Time // scope (chat id, 0: all) → end of its retry_after
	floodIgnored   int                 // sends into a held scope
}

type userState struct {
	user        User
	started     bool
	blocked     bool
	deactivated bool
}

type chatState struct {
	chat      Chat
	botStatus string // "" while the bot has never been in the chat
	members   map[int64]string
	// migratedTo is the supergroup a basic group became.
	migratedTo int64
	nextMsgID  int
	msgs       map[int]*Message
	order      []int
	instance   string
}

type queryState struct {
	created  time.Time
	answered bool
}

type fault struct {
	remaining   int
	status      int
	description string
	retryAfter  int
	hang        time.Duration
}

// Option configures New.
type Option func(*Server)

// WithCallbackMaxAge sets how long a callback query may wait for answerCallbackQuery
// (Telegram: about 15 seconds; measured with the injectable clock).
func WithCallbackMaxAge(d time.Duration) Option { return func(s *Server) { s.callbackMaxAge = d } }

// WithWebhookRetryInterval sets the pause between failed webhook deliveries. Telegram
// backs off for seconds to minutes; tests want milliseconds.
func WithWebhookRetryInterval(d time.Duration) Option {
	return func(s *Server) { s.webhookRetry = d }
}

// WithClock sets the clock used for message dates, callback ages and flood windows.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.clock.Store(&now) } }

// WithPrivacyMode sets the group privacy mode (BotFather's default is on: in groups the
// bot only receives commands, service messages and everything once it is an admin).
func WithPrivacyMode(on bool) Option { return func(s *Server) { s.privacyMode = on } }

// New starts a fake for the bot with this token ("123456:ABC..."); the bot's id is the
// number before the colon, as in real tokens.
func New(token, botUsername string, opts ...Option) *Server {
	botID, err := strconv.ParseInt(strings.SplitN(token, ":", 2)[0], 10, 64)
	if err != nil || botID <= 0 {
		botID = 7000000001
	}
	s := &Server{
		token:          token,
		bot:            User{ID: botID, IsBot: true, FirstName: botUsername, Username: botUsername},
		closing:        make(chan struct{}),
		client:         &http.Client{Timeout: 10 * time.Second},
		users:          map[int64]*userState{},
		chats:          map[int64]*chatState{},
		nextUserID:     500000000,
		nextUpdateID:   800000000,
		updatesChanged: make(chan struct{}),
		queries:        map[string]*queryState{},
		faults:         map[string][]*fault{},
		callbackMaxAge: 15 * time.Second,
		webhookRetry:   100 * time.Millisecond,
		privacyMode:    true,
		floodLog:       map[int64][]time.Time{},
	}
	now := time.Now
	s.clock.Store(&now)
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	return s
}

// Close stops webhook delivery, releases pending long polls and shuts the server down.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.closing:
		s.mu.Unlock()
		return
	default:
	}
	close(s.closing)
	s.stopWebhookLocked()
	s.mu.Unlock()
	s.srv.Close()
	s.bg.Wait()
}

// Bot returns the bot's own user, as getMe reports it.
func (s *Server) Bot() User { return s.bot }

// Token returns the token the fake accepts.
func (s *Server) Token() string { return s.token }

// SetNow replaces the clock (message dates, callback ages, flood windows).
func (s *Server) SetNow(now func() time.Time) { s.clock.Store(&now) }

func (s *Server) now() time.Time { return (*s.clock.Load())() }

// SetCallbackMaxAge changes how old a callback query may be when answered.
func (s *Server) SetCallbackMaxAge(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callbackMaxAge = d
}

// SetWebhookRetryInterval changes the pause between failed webhook deliveries.
func (s *Server) SetWebhookRetryInterval(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhookRetry = d
}

// SetPrivacyMode switches group privacy mode (see WithPrivacyMode).
func (s *Server) SetPrivacyMode(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.privacyMode = on
}

// FailNext makes the next n calls of method fail with this status and description
// ("Too Many Requests: retry after 5"); retryAfter > 0 adds parameters.retry_after.
func (s *Server) FailNext(method string, n, status int, description string, retryAfter int) {
	s.addFault(method, &fault{remaining: n, status: status, description: description, retryAfter: retryAfter})
}

// HangNext makes the next n calls of method wait d before being handled. The call is
// handled even if the client gave up meanwhile, as a real request that timed out on the
// client side may still have been executed by Telegram.
func (s *Server) HangNext(method string, n int, d time.Duration) {
	s.addFault(method, &fault{remaining: n, hang: d})
}

// SetDown makes every method answer 502 Bad Gateway, as Telegram's front
// ends do while the Bot API is down, until SetDown(false).
func (s *Server) SetDown(down bool) { s.down.Store(down) }

func (s *Server) addFault(method string, f *fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(method)
	s.faults[key] = append(s.faults[key], f)
}

// takeFaults consumes at most one hang and one failure queued for the method.
func (s *Server) takeFaults(method string) (hang time.Duration, fail *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.faults[method]
	kept := list[:0]
	for _, f := range list {
		switch {
		case f.hang > 0 && hang == 0:
			hang = f.hang
			f.remaining--
		case f.hang == 0 && fail == nil:
			fail = &apiError{Code: f.status, Description: f.description, RetryAfter: f.retryAfter}
			f.remaining--
		}
		if f.remaining > 0 {
			kept = append(kept, f)
		}
	}
	s.faults[method] = kept
	return hang, fail
}

// FloodLimits is Telegram's published sending pace
// (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
// "avoid sending more than one message per second in a particular chat. We
// may allow short bursts that go over this limit", no more than 20 messages a
// minute to one group, about 30 a second in all.
type FloodLimits struct {
	PrivateInterval time.Duration // minimum gap between messages to one private chat
	GroupPerMinute  int           // messages per minute to one group
	GlobalPerSecond int           // messages per second overall
	// ChatBurst, when set, is the short burst a group allows over one message
	// a second: at most ChatBurst messages in any ChatBurst seconds.
	ChatBurst int
}

// DefaultFloodLimits returns Telegram's figures: 1/s per chat (bursts of 3 in
// a group), 20/min per group, 30/s in all.
func DefaultFloodLimits() FloodLimits {
	return FloodLimits{PrivateInterval: time.Second, GroupPerMinute: 20, GlobalPerSecond: 30, ChatBurst: 3}
}

// EnableFloodControl makes sendMessage answer 429 with retry_after beyond these limits.
// Only sends count (edits and answers do not). Windows are measured with the injectable
// clock. Off by default.
//
// A 429 holds its scope for retry_after, as Telegram does: the chat whose
// limit was reached, or every chat when the overall rate was. A send into a
// held scope is refused again with the time left and counted (see
// SentDuringRetryAfter); Telegram turns such repeated flooding into longer bans.
func (s *Server) EnableFloodControl(l FloodLimits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flood = &l
	s.floodLog = map[int64][]time.Time{}
	s.floodGlobal = nil
	s.floodHolds = map[int64]time.Time{}
	s.floodIgnored = 0
}

// DisableFloodControl turns flood control off.
func (s *Server) DisableFloodControl() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flood = nil
}

// SentDuringRetryAfter counts the sends made into a scope still held by an
// earlier 429's retry_after since flood control was enabled.
func (s *Server) SentDuringRetryAfter() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.floodIgnored
}

// floodCheckLocked answers whether one more message to chat fits the limits, and records
// it if so.
func (s *Server) floodCheckLocked(c *chatState) *apiError {
	if s.flood == nil {
		return nil
	}
	now := s.now()
	for _, scope := range []int64{0, c.chat.ID} {
		if until, ok := s.floodHolds[scope]; ok && now.Before(until) {
			s.floodIgnored++
			return tooManyRequests(until.Sub(now))
		}
	}
	hold := func(scope int64, wait time.Duration) *apiError {
		e := tooManyRequests(wait)
		s.floodHolds[scope] = now.Add(time.Duration(e.RetryAfter) * time.Second)
		return e
	}
	s.floodGlobal = keepSince(s.floodGlobal, now.Add(-time.Second))
	if l := s.flood.GlobalPerSecond; l > 0 && len(s.floodGlobal) >= l {
		return hold(0, s.floodGlobal[0].Add(time.Second).Sub(now))
	}
	log := s.floodLog[c.chat.ID]
	if c.chat.Type == ChatPrivate {
		log = keepSince(log, now.Add(-s.flood.PrivateInterval))
		if len(log) > 0 {
			return hold(c.chat.ID, log[0].Add(s.flood.PrivateInterval).Sub(now))
		}
	} else {
		log = keepSince(log, now.Add(-time.Minute))
		if l := s.flood.GroupPerMinute; l > 0 && len(log) >= l {
			return hold(c.chat.ID, log[0].Add(time.Minute).Sub(now))
		}
		if b := s.flood.ChatBurst; b > 0 {
			span := time.Duration(b) * time.Second
			recent := keepSince(log, now.Add(-span))
			if len(recent) >= b {
				return hold(c.chat.ID, recent[0].Add(span).Sub(now))
			}
		}
	}
	s.floodLog[c.chat.ID] = append(log, now)
	s.floodGlobal = append(s.floodGlobal, now)
	return nil
}

func keepSince(ts []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(since) {
		i++
	}
	return ts[i:]
}

func tooManyRequests(wait time.Duration) *apiError {
	secs := int((wait + time.Second - 1) / time.Second)
	secs = max(secs, 1)
	return &apiError{Code: http.StatusTooManyRequests,
		Description: fmt.Sprintf("Too Many Requests: retry after %d", secs), RetryAfter: secs}
}

// apiError is a Bot API failure; it becomes {"ok":false,...} with HTTP status Code.
type apiError struct {
	Code        int
	Description string
	RetryAfter  int
	MigrateTo   int64
}

func (e *apiError) Error() string { return e.Description }

func badRequest(desc string) *apiError {
	return &apiError{Code: http.StatusBadRequest, Description: "Bad Request: " + desc}
}

func forbidden(desc string) *apiError {
	return &apiError{Code: http.StatusForbidden, Description: "Forbidden: " + desc}
}

// described is a success that also carries a description, as setWebhook's does.
type described struct {
	result      any
	description string
}

type handler func(s *Server, ctx context.Context, p params) (any, error)

var methods = map[string]struct {
	name string
	fn   handler
}{}

func init() {
	for name, fn := range map[string]handler{
		"getMe":                  (*Server).getMe,
		"getUpdates":             (*Server).getUpdates,
		"setWebhook":             (*Server).setWebhook,
		"deleteWebhook":          (*Server).deleteWebhook,
		"getWebhookInfo":         (*Server).getWebhookInfo,
		"sendMessage":            (*Server).sendMessage,
		"sendChatAction":         (*Server).sendChatAction,
		"editMessageText":        (*Server).editMessageText,
		"editMessageReplyMarkup": (*Server).editMessageReplyMarkup,
		"answerCallbackQuery":    (*Server).answerCallbackQuery,
		"deleteMessage":          (*Server).deleteMessage,
		"getChat":                (*Server).getChat,
		"getChatMember":          (*Server).getChatMember,
		"leaveChat":              (*Server).leaveChat,
	} {
		methods[strings.ToLower(name)] = struct {
			name string
			fn   handler
		}{name, fn}
	}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
	token, method, _ := strings.Cut(rest, "/")
	call := Call{Method: method, Time: s.now()}
	var (
		result any
		err    error
	)
	m, known := methods[strings.ToLower(method)]
	switch {
	case !ok || token != s.token:
		err = &apiError{Code: http.StatusUnauthorized, Description: "Unauthorized"}
	case !known:
		err = &apiError{Code: http.StatusNotFound, Description: "Not Found"}
	default:
		call.Method = m.name
		var p params
		p, err = parseParams(r)
		call.Params = p
		if err == nil {
			result, err = s.dispatch(r.Context(), strings.ToLower(method), m.fn, p)
		}
	}
	s.respond(w, &call, result, err)
}

func (s *Server) dispatch(ctx context.Context, method string, fn handler, p params) (any, error) {
	if s.down.Load() {
		return nil, &apiError{Code: http.StatusBadGateway, Description: "Bad Gateway"}
	}
	hang, fail := s.takeFaults(method)
	if hang > 0 {
		t := time.NewTimer(hang)
		select {
		case <-t.C:
		case <-s.closing:
			t.Stop()
			return nil, &apiError{Code: http.StatusBadGateway, Description: "Bad Gateway"}
		}
		// The client may have gone; carry on with a context that outlives it.
		ctx = context.WithoutCancel(ctx)
	}
	if fail != nil {
		return nil, fail
	}
	return fn(s, ctx, p)
}

func (s *Server) respond(w http.ResponseWriter, call *Call, result any, err error) {
	body := map[string]any{"ok": err == nil}
	status := http.StatusOK
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{Code: http.StatusInternalServerError, Description: "Internal Server Error: " + err.Error()}
		}
		status = ae.Code
		body["error_code"] = ae.Code
		body["description"] = ae.Description
		switch {
		case ae.RetryAfter > 0:
			body["parameters"] = map[string]any{"retry_after": ae.RetryAfter}
		case ae.MigrateTo != 0:
			body["parameters"] = map[string]any{"migrate_to_chat_id": ae.MigrateTo}
		}
		call.Description = ae.Description
	} else {
		if d, ok := result.(described); ok {
			result = d.result
			body["description"] = d.description
			call.Description = d.description
		}
		raw, mErr := json.Marshal(result)
		if mErr != nil {
			panic(fmt.Sprintf("faketelegram: marshal result of %s: %v", call.Method, mErr))
		}
		body["result"] = json.RawMessage(raw)
		call.Result = raw
	}
	call.Status = status
	call.OK = err == nil
	s.mu.Lock()
	s.calls = append(s.calls, *call)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// params are request parameters normalised so that JSON, multipart and urlencoded
// requests look alike: see Call.Params.
type params map[string]any

// Form fields whose value is a JSON-serialised object or array (the Bot API's wording).
var jsonFields = map[string]bool{
	"reply_markup": true, "allowed_updates": true, "entities": true, "caption_entities": true,
	"link_preview_options": true, "reply_parameters": true, "commands": true, "scope": true,
}

var intFields = map[string]bool{
	"chat_id": true, "message_id": true, "offset": true, "limit": true, "timeout": true,
	"user_id": true, "cache_time": true, "max_connections": true, "message_thread_id": true,
}

var boolFields = map[string]bool{
	"show_alert": true, "drop_pending_updates": true, "disable_notification": true,
	"protect_content": true, "disable_web_page_preview": true,
}

func parseParams(r *http.Request) (params, error) {
	p := params{}
	addForm := func(vals url.Values) {
		for k, v := range vals {
			if len(v) > 0 {
				p[k] = normalizeFormValue(k, v[0])
			}
		}
	}
	// Telegram also reads parameters from the query string.
	addForm(r.URL.Query())
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		dec := json.NewDecoder(io.LimitReader(r.Body, 50<<20))
		dec.UseNumber()
		var body map[string]any
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			return p, badRequest("can't parse JSON object")
		}
		for k, v := range body {
			p[k] = normalizeJSONValue(v)
		}
	case "multipart/form-data":
		// go-telegram/bot sends parameterless methods (getMe) as an empty body
		// under a multipart content type; Telegram treats that as no parameters.
		if r.ContentLength == 0 {
			break
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 50<<20))
		if err != nil {
			return p, badRequest("can't parse multipart/form-data request")
		}
		if len(body) == 0 {
			break
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseMultipartForm(32 << 20); err != nil {
			return p, badRequest("can't parse multipart/form-data request")
		}
		addForm(r.MultipartForm.Value)
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return p, badRequest("can't parse application/x-www-form-urlencoded request")
		}
		addForm(r.PostForm)
	}
	return p, nil
}

func normalizeFormValue(key, v string) any {
	switch {
	case jsonFields[key]:
		var decoded any
		dec := json.NewDecoder(strings.NewReader(v))
		dec.UseNumber()
		if dec.Decode(&decoded) == nil {
			return normalizeJSONValue(decoded)
		}
	case intFields[key]:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	case boolFields[key]:
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return v
}

func normalizeJSONValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeJSONValue(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeJSONValue(e)
		}
	}
	return v
}

func (p params) str(key string) (string, bool) {
	switch v := p[key].(type) {
	case string:
		return v, true
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	case nil:
		return "", false
	default:
		raw, _ := json.Marshal(v)
		return string(raw), true
	}
}

func (p params) int(key string) (int64, bool) {
	switch v := p[key].(type) {
	case int64:
		return v, true
	case float64:
		return int64(v), v == float64(int64(v))
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func (p params) bool(key string) bool {
	switch v := p[key].(type) {
	case bool:
		return v
	case string:
		b, _ := strconv.ParseBool(v)
		return b
	case int64:
		return v != 0
	}
	return false
}

// json returns a JSON-valued parameter; ok is false when present but not valid JSON
// (a form field that failed to decode stays a string).
func (p params) json(key string) (value any, present, ok bool) {
	v, present := p[key]
	if !present {
		return nil, false, true
	}
	if s, isStr := v.(string); isStr {
		var decoded any
		if json.Unmarshal([]byte(s), &decoded) != nil {
			return nil, true, false
		}
		return decoded, true, true
	}
	return v, true, true
}
