package faketelegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"
)

type queuedUpdate struct {
	id   int64
	kind string
	raw  json.RawMessage
}

type longPoll struct {
	// conflict is closed when a newer getUpdates supersedes this one.
	conflict chan struct{}
}

type webhookState struct {
	url            string
	secret         string
	maxConnections int64
	allowedUpdates []string
	cancel         context.CancelFunc
	lastErrorDate  int64
	lastErrorMsg   string
}

// Telegram's default subscription: everything except these three.
var notByDefault = map[string]bool{"chat_member": true, "message_reaction": true, "message_reaction_count": true}

// enqueueLocked appends an update of the given kind ("message", "callback_query", ...)
// unless the bot's allowed_updates exclude it, and returns its update_id (0 if dropped).
func (s *Server) enqueueLocked(kind string, payload any) int64 {
	if len(s.allowedUpdates) > 0 {
		if !slices.Contains(s.allowedUpdates, kind) {
			return 0
		}
	} else if notByDefault[kind] {
		return 0
	}
	body, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("faketelegram: marshal %s update: %v", kind, err))
	}
	s.nextUpdateID++
	id := s.nextUpdateID
	raw := fmt.Appendf(nil, `{"update_id":%d,%q:%s}`, id, kind, body)
	s.pushLocked(queuedUpdate{id: id, kind: kind, raw: raw})
	return id
}

func (s *Server) pushLocked(u queuedUpdate) {
	s.queue = append(s.queue, u)
	s.history = append(s.history, u.raw)
	close(s.updatesChanged)
	s.updatesChanged = make(chan struct{})
}

// InjectUpdate queues an arbitrary update. Its update_id is replaced by the next one in
// sequence so that offsets stay meaningful; the assigned id is returned.
func (s *Server) InjectUpdate(raw json.RawMessage) (int64, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return 0, fmt.Errorf("faketelegram: update is not a JSON object: %w", err)
	}
	delete(fields, "update_id")
	if len(fields) != 1 {
		return 0, errors.New("faketelegram: an update carries exactly one field besides update_id")
	}
	var kind string
	for k := range fields {
		kind = k
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextUpdateID++
	id := s.nextUpdateID
	body := fmt.Appendf(nil, `{"update_id":%d,%q:%s}`, id, kind, fields[kind])
	s.pushLocked(queuedUpdate{id: id, kind: kind, raw: body})
	return id, nil
}

// Updates returns every update ever queued, in order.
func (s *Server) Updates() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.history)
}

// PendingUpdates returns the updates not yet confirmed (getUpdates) or delivered (webhook).
func (s *Server) PendingUpdates() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]json.RawMessage, len(s.queue))
	for i, u := range s.queue {
		out[i] = u.raw
	}
	return out
}

const (
	conflictPolling = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
	conflictWebhook = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)

func (s *Server) getUpdates(ctx context.Context, p params) (any, error) {
	offset, _ := p.int("offset")
	limit, ok := p.int("limit")
	if !ok {
		limit = 100
	}
	limit = min(max(limit, 1), 100) // the Bot API server clamps rather than rejects
	timeout, _ := p.int("timeout")
	timeout = min(max(timeout, 0), 50) // the Bot API server caps long polling at 50 s

	s.mu.Lock()
	if s.webhook.url != "" {
		s.mu.Unlock()
		return nil, &apiError{Code: http.StatusConflict, Description: conflictWebhook}
	}
	if v, present, ok := p.json("allowed_updates"); present && ok {
		s.allowedUpdates = toStrings(v)
	}
	switch {
	case offset < 0:
		if keep := int(-offset); keep < len(s.queue) {
			s.queue = s.queue[len(s.queue)-keep:]
		}
	case offset > 0:
		i := 0
		for i < len(s.queue) && s.queue[i].id < offset {
			i++
		}
		s.queue = s.queue[i:]
	}
	// Like the real server, a new long poll terminates the one already waiting.
	if s.poll != nil {
		close(s.poll.conflict)
	}
	me := &longPoll{conflict: make(chan struct{})}
	s.poll = me
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.poll == me {
			s.poll = nil
		}
		s.mu.Unlock()
	}()

	deadline := time.NewTimer(time.Duration(timeout) * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.webhook.url != "" {
			s.mu.Unlock()
			return nil, &apiError{Code: http.StatusConflict, Description: conflictWebhook}
		}
		n := min(int(limit), len(s.queue))
		if n > 0 || timeout == 0 {
			out := make([]json.RawMessage, n)
			for i := range n {
				out[i] = s.queue[i].raw
			}
			s.mu.Unlock()
			return out, nil
		}
		changed := s.updatesChanged
		s.mu.Unlock()
		select {
		case <-changed:
		case <-me.conflict:
			return nil, &apiError{Code: http.StatusConflict, Description: conflictPolling}
		case <-deadline.C:
			return []json.RawMessage{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closing:
			return []json.RawMessage{}, nil
		}
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		if str, ok := e.(string); ok {
			out = append(out, str)
		}
	}
	return out
}

var secretTokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

func (s *Server) setWebhook(_ context.Context, p params) (any, error) {
	rawURL, _ := p.str("url")
	if rawURL == "" {
		return s.deleteWebhook(context.Background(), p)
	}
	// Real Telegram insists on HTTPS; the fake also takes http:// so that plain
	// httptest servers can receive updates.
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, badRequest("bad webhook: An HTTPS URL must be provided for webhook")
	}
	secret, _ := p.str("secret_token")
	if len(secret) > 256 {
		return nil, badRequest("secret token is too long")
	}
	if !secretTokenRE.MatchString(secret) {
		return nil, badRequest("secret token contains unallowed characters")
	}
	maxConn, ok := p.int("max_connections")
	if !ok {
		maxConn = 40
	}
	if maxConn < 1 || maxConn > 100 {
		return nil, badRequest("bad webhook: max_connections must be between 1 and 100")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, present, ok := p.json("allowed_updates"); present && ok {
		s.allowedUpdates = toStrings(v)
	}
	if p.bool("drop_pending_updates") {
		s.queue = nil
	}
	if s.webhook.url == rawURL && s.webhook.secret == secret && s.webhook.maxConnections == maxConn {
		return described{true, "Webhook is already set"}, nil
	}
	s.stopWebhookLocked()
	ctx, cancel := context.WithCancel(context.Background())
	s.webhook = webhookState{url: rawURL, secret: secret, maxConnections: maxConn,
		allowedUpdates: s.allowedUpdates, cancel: cancel}
	if s.poll != nil {
		close(s.poll.conflict)
		s.poll = nil
	}
	close(s.updatesChanged) // wake a waiting long poll so it sees the webhook
	s.updatesChanged = make(chan struct{})
	s.bg.Add(1)
	go s.deliver(ctx, rawURL, secret)
	return described{true, "Webhook was set"}, nil
}

func (s *Server) deleteWebhook(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.bool("drop_pending_updates") {
		s.queue = nil
	}
	if s.webhook.url == "" {
		return described{true, "Webhook is already deleted"}, nil
	}
	s.stopWebhookLocked()
	s.webhook = webhookState{}
	return described{true, "Webhook was deleted"}, nil
}

func (s *Server) stopWebhookLocked() {
	if s.webhook.cancel != nil {
		s.webhook.cancel()
		s.webhook.cancel = nil
	}
}

func (s *Server) getWebhookInfo(context.Context, params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := map[string]any{
		"url":                    s.webhook.url,
		"has_custom_certificate": false,
		"pending_update_count":   len(s.queue),
	}
	if s.webhook.url != "" {
		info["max_connections"] = s.webhook.maxConnections
		if s.webhook.allowedUpdates != nil {
			info["allowed_updates"] = s.webhook.allowedUpdates
		}
		if s.webhook.lastErrorDate != 0 {
			info["last_error_date"] = s.webhook.lastErrorDate
			info["last_error_message"] = s.webhook.lastErrorMsg
		}
	}
	return info, nil
}

// deliver POSTs the head of the queue until the webhook answers 2xx, then moves on;
// one update at a time so the order is kept.
func (s *Server) deliver(ctx context.Context, target, secret string) {
	defer s.bg.Done()
	for {
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		if len(s.queue) == 0 {
			changed := s.updatesChanged
			s.mu.Unlock()
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		head := s.queue[0]
		retry := s.webhookRetry
		s.mu.Unlock()

		d := Delivery{UpdateID: head.id, URL: target, SecretToken: secret}
		d.Status, d.Err = s.post(ctx, target, secret, head.raw)
		if ctx.Err() != nil {
			return
		}
		d.Time = s.now()

		s.mu.Lock()
		s.deliveries = append(s.deliveries, d)
		if d.Delivered() {
			if len(s.queue) > 0 && s.queue[0].id == head.id {
				s.queue = s.queue[1:]
			}
		} else {
			s.webhook.lastErrorDate = d.Time.Unix()
			if d.Err != "" {
				s.webhook.lastErrorMsg = d.Err
			} else {
				s.webhook.lastErrorMsg = "Wrong response from the webhook: " + strconv.Itoa(d.Status) + " " + http.StatusText(d.Status)
			}
		}
		s.mu.Unlock()

		if !d.Delivered() {
			t := time.NewTimer(retry)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

func (s *Server) post(ctx context.Context, target, secret string, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "Connection refused: " + err.Error()
	}
	_ = resp.Body.Close()
	return resp.StatusCode, ""
}

// WebhookDeliveries returns every delivery attempt so far, in order.
func (s *Server) WebhookDeliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}
