package fakeamocrm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Webhook is a subscription made through POST /api/v4/webhooks.
type Webhook struct {
	ID          int64
	Destination string
	Settings    []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Sort        int
	Disabled    bool
}

var webhookSettings = []string{
	"add_lead", "add_contact", "add_company", "add_customer", "add_task",
	"update_lead", "update_contact", "update_company", "update_customer", "update_task",
	"delete_lead", "delete_contact", "delete_company", "delete_customer", "delete_task",
	"status_lead", "responsible_lead", "restore_contact", "restore_company", "restore_lead",
	"note_lead", "note_contact", "note_company", "note_customer",
}

// Webhooks returns the account's current subscriptions.
func (s *Server) Webhooks(accountID int64) []Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil {
		return nil
	}
	out := make([]Webhook, 0, len(acc.webhooks))
	for _, h := range acc.webhooks {
		c := *h
		c.Settings = slices.Clone(h.Settings)
		out = append(out, c)
	}
	return out
}

func (s *Server) renderWebhook(acc *account, h *Webhook) map[string]any {
	return map[string]any{
		"id":          h.ID,
		"destination": h.Destination,
		"created_at":  h.CreatedAt.Unix(),
		"updated_at":  h.UpdatedAt.Unix(),
		"account_id":  acc.id,
		"created_by":  acc.apiUserID,
		"sort":        h.Sort,
		"disabled":    h.Disabled,
		"settings":    h.Settings,
	}
}

func (s *Server) handleWebhooks(w http.ResponseWriter, r *http.Request, acc *account) {
	dest := r.URL.Query().Get("filter[destination]")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []any{}
	for _, h := range acc.webhooks {
		if dest == "" || dest == h.Destination {
			out = append(out, s.renderWebhook(acc, h))
		}
	}
	if len(out) == 0 {
		noContent(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_total_items": len(out),
		"_links":       selfLink(s, "/api/v4/webhooks"),
		"_embedded":    map[string]any{"webhooks": out},
	})
}

func (s *Server) handleSubscribe(w http.ResponseWriter, r *http.Request, acc *account) {
	var in struct {
		Destination string   `json:"destination"`
		Settings    []string `json:"settings"`
		Sort        int      `json:"sort"`
	}
	if err := json.Unmarshal(bodyOf(r), &in); err != nil {
		badRequest(w, "request body must be a JSON object")
		return
	}
	var errs []fieldErr
	if u, err := url.Parse(in.Destination); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fieldErr{"InvalidUrl", "destination", "This value is not a valid URL."})
	}
	if len(in.Settings) == 0 {
		errs = append(errs, fieldErr{"NotBlank", "settings", "This value should not be blank."})
	}
	for i, st := range in.Settings {
		if !slices.Contains(webhookSettings, st) {
			errs = append(errs, fieldErr{"NotSupportedChoice", fmt.Sprintf("settings.%d", i), "The value you selected is not a valid choice."})
		}
	}
	if len(errs) > 0 {
		validationError(w, []itemErrors{{"0", errs}})
		return
	}
	s.mu.Lock()
	now := s.now()
	var h *Webhook
	for _, x := range acc.webhooks {
		if x.Destination == in.Destination {
			h = x
		}
	}
	// amoCRM keys subscriptions by destination: re-subscribing replaces the
	// settings instead of creating a second hook.
	if h == nil {
		h = &Webhook{ID: s.newID(), Destination: in.Destination, CreatedAt: now}
		acc.webhooks = append(acc.webhooks, h)
	}
	h.Settings = slices.Compact(slices.Clone(in.Settings))
	h.UpdatedAt = now
	h.Sort = in.Sort
	h.Disabled = false
	out := s.renderWebhook(acc, h)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) handleUnsubscribe(w http.ResponseWriter, r *http.Request, acc *account) {
	var in struct {
		Destination string `json:"destination"`
	}
	if err := json.Unmarshal(bodyOf(r), &in); err != nil || in.Destination == "" {
		validationError(w, []itemErrors{{"0", []fieldErr{{"NotBlank", "destination", "This value should not be blank."}}}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(acc.webhooks, func(h *Webhook) bool { return h.Destination == in.Destination })
	if i < 0 {
		writeProblem(w, http.StatusNotFound, "Not Found", "Webhook not found", nil)
		return
	}
	acc.webhooks = slices.Delete(acc.webhooks, i, i+1)
	w.WriteHeader(http.StatusNoContent)
}

// ---- lead mutations by "a human in the amoCRM UI" -----------------------------

// AddLead creates a lead (defaults: main pipeline, its first working stage,
// the first user) and fires add_lead.
func (s *Server) AddLead(accountID int64, l Lead) (Lead, error) {
	s.mu.Lock()
	acc := s.accounts[accountID]
	if acc == nil {
		s.mu.Unlock()
		return Lead{}, fmt.Errorf("unknown account %d", accountID)
	}
	stored, err := s.insertLeadLocked(acc, l)
	if err != nil {
		s.mu.Unlock()
		return Lead{}, err
	}
	outs := s.eventsLocked(acc, "add_lead", "add", &stored, nil)
	s.mu.Unlock()
	s.dispatch(outs)
	return stored, nil
}

// UpdateLead applies fn to a copy of the lead, validates the result and
// stores it, firing update_lead and, when they changed, status_lead and
// responsible_lead. Unless fn sets UpdatedBy, the change is attributed to
// the lead's responsible user (a human, not the integration).
func (s *Server) UpdateLead(accountID, leadID int64, fn func(*Lead)) (Lead, error) {
	s.mu.Lock()
	acc := s.accounts[accountID]
	if acc == nil {
		s.mu.Unlock()
		return Lead{}, fmt.Errorf("unknown account %d", accountID)
	}
	cur := acc.liveLead(leadID)
	if cur == nil {
		s.mu.Unlock()
		return Lead{}, fmt.Errorf("lead %d not found", leadID)
	}
	before := cloneLead(cur)
	next := cloneLead(cur)
	fn(&next)
	next.ID, next.Deleted = before.ID, false
	if err := s.checkLeadLocked(acc, &next); err != nil {
		s.mu.Unlock()
		return Lead{}, err
	}
	now := s.now()
	if next.UpdatedBy == before.UpdatedBy {
		next.UpdatedBy = next.ResponsibleUserID
	}
	if next.UpdatedAt.Equal(before.UpdatedAt) {
		next.UpdatedAt = now
	}
	switch {
	case isClosed(next.StatusID) && !isClosed(before.StatusID):
		next.ClosedAt = next.UpdatedAt
	case !isClosed(next.StatusID):
		next.ClosedAt = time.Time{}
	}
	stored := next
	acc.leads[leadID] = &stored
	outs := s.leadChangeEventsLocked(acc, &before, &stored)
	s.mu.Unlock()
	s.dispatch(outs)
	return cloneLead(&stored), nil
}

func (s *Server) checkLeadLocked(acc *account, l *Lead) error {
	p := acc.pipeline(l.PipelineID)
	if p == nil {
		return fmt.Errorf("unknown pipeline %d", l.PipelineID)
	}
	if !p.hasStatus(l.StatusID) {
		return fmt.Errorf("status %d is not in pipeline %d", l.StatusID, l.PipelineID)
	}
	if !acc.user(l.ResponsibleUserID) {
		return fmt.Errorf("unknown user %d", l.ResponsibleUserID)
	}
	cfv, err := acc.normalizeCFV(l.CustomFieldsValues)
	if err != nil {
		return err
	}
	l.CustomFieldsValues = cfv
	for _, c := range l.Contacts {
		if acc.liveContact(c.ID) == nil {
			return fmt.Errorf("unknown contact %d", c.ID)
		}
	}
	return nil
}

// MoveLead moves a lead to another status of its current pipeline, as a
// manager dragging the card would, and fires status_lead (+ update_lead).
func (s *Server) MoveLead(accountID, leadID, statusID int64) error {
	_, err := s.UpdateLead(accountID, leadID, func(l *Lead) { l.StatusID = statusID })
	return err
}

// MoveLeadTo moves a lead to a status of another pipeline.
func (s *Server) MoveLeadTo(accountID, leadID, pipelineID, statusID int64) error {
	_, err := s.UpdateLead(accountID, leadID, func(l *Lead) { l.PipelineID, l.StatusID = pipelineID, statusID })
	return err
}

// DeleteLead deletes a lead (GET then answers 204) and fires delete_lead.
func (s *Server) DeleteLead(accountID, leadID int64) error {
	s.mu.Lock()
	acc := s.accounts[accountID]
	if acc == nil {
		s.mu.Unlock()
		return fmt.Errorf("unknown account %d", accountID)
	}
	l := acc.liveLead(leadID)
	if l == nil {
		s.mu.Unlock()
		return fmt.Errorf("lead %d not found", leadID)
	}
	l.Deleted = true
	l.UpdatedAt = s.now()
	snap := cloneLead(l)
	outs := s.eventsLocked(acc, "delete_lead", "delete", &snap, nil)
	s.mu.Unlock()
	s.dispatch(outs)
	return nil
}

// AddContact creates a contact. Contact webhooks are not emitted.
func (s *Server) AddContact(accountID int64, c Contact) (Contact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil {
		return Contact{}, fmt.Errorf("unknown account %d", accountID)
	}
	return s.insertContactLocked(acc, c)
}

// UpdateContact applies fn to a copy of the contact and stores it.
func (s *Server) UpdateContact(accountID, id int64, fn func(*Contact)) (Contact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil {
		return Contact{}, fmt.Errorf("unknown account %d", accountID)
	}
	cur := acc.liveContact(id)
	if cur == nil {
		return Contact{}, fmt.Errorf("contact %d not found", id)
	}
	next := cloneContact(cur)
	fn(&next)
	next.ID = id
	if !acc.user(next.ResponsibleUserID) {
		return Contact{}, fmt.Errorf("unknown user %d", next.ResponsibleUserID)
	}
	if err := acc.normalizeMultitext(&acc.phoneField, next.Phones); err != nil {
		return Contact{}, err
	}
	if err := acc.normalizeMultitext(&acc.emailField, next.Emails); err != nil {
		return Contact{}, err
	}
	next.UpdatedAt = s.now()
	acc.contacts[id] = &next
	return cloneContact(&next), nil
}

// ---- events ----------------------------------------------------------------

type outgoing struct {
	accountID   int64
	webhookID   int64
	destination string
	event       string
	leadID      int64
	body        string
	resent      bool
}

// leadChangeEventsLocked fires what amoCRM fires for an edit, whoever made
// it: API edits included, which is why a client must recognise the echo of
// its own status change.
func (s *Server) leadChangeEventsLocked(acc *account, before, after *Lead) []*outgoing {
	var outs []*outgoing
	if before.StatusID != after.StatusID || before.PipelineID != after.PipelineID {
		outs = append(outs, s.eventsLocked(acc, "status_lead", "status", after, before)...)
	}
	if before.ResponsibleUserID != after.ResponsibleUserID {
		outs = append(outs, s.eventsLocked(acc, "responsible_lead", "responsible", after, before)...)
	}
	outs = append(outs, s.eventsLocked(acc, "update_lead", "update", after, before)...)
	return outs
}

func (s *Server) eventsLocked(acc *account, setting, kind string, l, old *Lead) []*outgoing {
	var outs []*outgoing
	for _, h := range acc.webhooks {
		if h.Disabled || !slices.Contains(h.Settings, setting) {
			continue
		}
		outs = append(outs, &outgoing{
			accountID:   acc.id,
			webhookID:   h.ID,
			destination: h.Destination,
			event:       setting,
			leadID:      l.ID,
			body:        s.leadHookBody(acc, kind, l, old),
		})
	}
	return outs
}

// phpForm keeps insertion order: url.Values.Encode sorts keys, amoCRM does
// not, and some receivers (and our assertions) care about the raw body.
type phpForm struct{ b strings.Builder }

func (f *phpForm) add(k string, v any) {
	if f.b.Len() > 0 {
		f.b.WriteByte('&')
	}
	f.b.WriteString(url.QueryEscape(k))
	f.b.WriteByte('=')
	f.b.WriteString(url.QueryEscape(fmt.Sprint(v)))
}

func (s *Server) leadHookBody(acc *account, kind string, l, old *Lead) string {
	f := &phpForm{}
	p := "leads[" + kind + "][0]"
	if kind == "delete" {
		f.add(p+"[id]", l.ID)
		f.add(p+"[status_id]", l.StatusID)
		f.add(p+"[pipeline_id]", l.PipelineID)
	} else {
		f.add(p+"[id]", l.ID)
		f.add(p+"[name]", l.Name)
		f.add(p+"[status_id]", l.StatusID)
		if kind == "status" {
			f.add(p+"[old_status_id]", old.StatusID)
		}
		f.add(p+"[price]", l.Price)
		f.add(p+"[responsible_user_id]", l.ResponsibleUserID)
		f.add(p+"[last_modified]", l.UpdatedAt.Unix())
		f.add(p+"[modified_user_id]", l.UpdatedBy)
		f.add(p+"[created_user_id]", l.CreatedBy)
		f.add(p+"[date_create]", l.CreatedAt.Unix())
		f.add(p+"[pipeline_id]", l.PipelineID)
		if kind == "status" {
			f.add(p+"[old_pipeline_id]", old.PipelineID)
		}
		f.add(p+"[account_id]", acc.id)
		for i, v := range l.CustomFieldsValues {
			cf := acc.leadField(v.FieldID)
			if cf == nil {
				continue
			}
			cp := fmt.Sprintf("%s[custom_fields][%d]", p, i)
			f.add(cp+"[id]", cf.ID)
			f.add(cp+"[name]", cf.Name)
			for j, x := range v.Values {
				vp := fmt.Sprintf("%s[values][%d]", cp, j)
				f.add(vp+"[value]", x.Value)
				if x.EnumID != 0 {
					f.add(vp+"[enum]", x.EnumID)
				}
			}
			if cf.Code != "" {
				f.add(cp+"[code]", cf.Code)
			}
		}
		if kind == "responsible" {
			f.add(p+"[old_responsible_user_id]", old.ResponsibleUserID)
		}
		f.add(p+"[created_at]", l.CreatedAt.Unix())
		f.add(p+"[updated_at]", l.UpdatedAt.Unix())
	}
	f.add("account[subdomain]", acc.subdomain)
	f.add("account[id]", acc.id)
	f.add("account[_links][self]", "https://"+acc.domain)
	return f.b.String()
}

// ---- delivery --------------------------------------------------------------

// Delivery is one webhook POST attempt (or a dropped one).
type Delivery struct {
	Seq         int
	AccountID   int64
	WebhookID   int64
	Destination string
	Event       string // status_lead, update_lead, ...
	LeadID      int64
	Body        string // raw application/x-www-form-urlencoded body
	Form        url.Values
	At          time.Time
	StatusCode  int    // 0 if the request failed or was dropped
	Err         string // transport error
	Duration    time.Duration
	Dropped     bool // fault: amoCRM "lost" it, nothing was sent
	Duplicate   bool // fault: the same hook sent a second time
	Resent      bool // sent again through Resend/ResendLast
}

type deliverer struct {
	mu       sync.Mutex
	pending  int
	queues   map[int64]*dqueue
	log      []Delivery
	dropNext int
	dupNext  int
}

type dqueue struct {
	items   []*outgoing
	running bool
}

func (d *deliverer) init() { d.queues = map[int64]*dqueue{} }

// dispatch sends hooks. Async mode keeps one FIFO worker per account so hooks
// of one account arrive in event order, while a slow receiver of one account
// does not hold up the others.
func (s *Server) dispatch(outs []*outgoing) {
	if len(outs) == 0 {
		return
	}
	d := &s.d
	d.mu.Lock()
	d.pending += len(outs)
	if s.opts.SyncWebhooks {
		d.mu.Unlock()
		for _, o := range outs {
			s.deliver(o)
		}
		return
	}
	for _, o := range outs {
		q := d.queues[o.accountID]
		if q == nil {
			q = &dqueue{}
			d.queues[o.accountID] = q
		}
		q.items = append(q.items, o)
		if !q.running {
			q.running = true
			go s.runQueue(q)
		}
	}
	d.mu.Unlock()
}

func (s *Server) runQueue(q *dqueue) {
	d := &s.d
	for {
		d.mu.Lock()
		if len(q.items) == 0 {
			q.running = false
			d.mu.Unlock()
			return
		}
		o := q.items[0]
		q.items = q.items[1:]
		d.mu.Unlock()
		s.deliver(o)
	}
}

func (s *Server) deliver(o *outgoing) {
	d := &s.d
	d.mu.Lock()
	drop := d.dropNext > 0
	if drop {
		d.dropNext--
	}
	dup := !drop && d.dupNext > 0
	if dup {
		d.dupNext--
	}
	d.mu.Unlock()

	if drop {
		s.logDelivery(o, Delivery{Dropped: true})
	} else {
		s.logDelivery(o, s.post(o))
		if dup {
			dd := s.post(o)
			dd.Duplicate = true
			s.logDelivery(o, dd)
		}
	}
	d.mu.Lock()
	d.pending--
	d.mu.Unlock()
}

func (s *Server) post(o *outgoing) Delivery {
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, o.destination, strings.NewReader(o.body))
	if err != nil {
		return Delivery{Err: err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "amoCRM-WebHook-client/1.0")
	req.Header.Set("Accept", "*/*")
	resp, err := s.opts.WebhookClient.Do(req)
	out := Delivery{Duration: time.Since(start)}
	if err != nil {
		out.Err = err.Error()
		return out
	}
	drain(resp)
	out.StatusCode = resp.StatusCode
	return out
}

func (s *Server) logDelivery(o *outgoing, rec Delivery) {
	form, _ := url.ParseQuery(o.body)
	rec.AccountID, rec.WebhookID, rec.Destination = o.accountID, o.webhookID, o.destination
	rec.Event, rec.LeadID, rec.Body, rec.Form, rec.Resent = o.event, o.leadID, o.body, form, o.resent
	rec.At = time.Now()
	s.d.mu.Lock()
	rec.Seq = len(s.d.log) + 1
	s.d.log = append(s.d.log, rec)
	s.d.mu.Unlock()
}

// Deliveries returns the webhook delivery log of the account (0 = all).
func (s *Server) Deliveries(accountID int64) []Delivery {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	var out []Delivery
	for _, d := range s.d.log {
		if accountID == 0 || d.AccountID == accountID {
			out = append(out, d)
		}
	}
	return out
}

// WaitDeliveries blocks until no webhook is queued or in flight.
func (s *Server) WaitDeliveries(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s.d.mu.Lock()
		n := s.d.pending
		s.d.mu.Unlock()
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fakeamocrm: %d webhook deliveries still pending after %s", n, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// DropNextDeliveries makes the next n webhook deliveries vanish (recorded
// with Dropped), as amoCRM occasionally loses hooks.
func (s *Server) DropNextDeliveries(n int) {
	s.d.mu.Lock()
	s.d.dropNext += n
	s.d.mu.Unlock()
}

// DuplicateNextDeliveries makes the next n deliveries arrive twice.
func (s *Server) DuplicateNextDeliveries(n int) {
	s.d.mu.Lock()
	s.d.dupNext += n
	s.d.mu.Unlock()
}

// Resend sends a recorded delivery again (same body), as amoCRM does when it
// re-delivers a hook it considers lost.
func (s *Server) Resend(d Delivery) {
	s.dispatch([]*outgoing{{
		accountID: d.AccountID, webhookID: d.WebhookID, destination: d.Destination,
		event: d.Event, leadID: d.LeadID, body: d.Body, resent: true,
	}})
}

// ResendLast re-sends the account's most recent delivery, dropped or not.
func (s *Server) ResendLast(accountID int64) error {
	ds := s.Deliveries(accountID)
	for i := len(ds) - 1; i >= 0; i-- {
		if !ds[i].Duplicate {
			s.Resend(ds[i])
			return nil
		}
	}
	return errors.New("fakeamocrm: no delivery to resend")
}

// SendDisconnect performs amoCRM's "integration disconnected" GET to
// destination and revokes the account's tokens. The signature is
// hex(HMAC-SHA256(client_secret, client_uuid + "|" + account_id)), as
// documented by Kommo.
func (s *Server) SendDisconnect(accountID int64, destination string) (int, error) {
	s.RevokeTokens(accountID)
	uuid := s.opts.ClientID
	acc := strconv.FormatInt(accountID, 10)
	mac := hmac.New(sha256.New, []byte(s.opts.ClientSecret))
	mac.Write([]byte(uuid + "|" + acc))
	q := url.Values{"client_uuid": {uuid}, "account_id": {acc}, "signature": {hex.EncodeToString(mac.Sum(nil))}}
	sep := "?"
	if strings.Contains(destination, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(http.MethodGet, destination+sep+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "amoService-oAuth-Code-Sender/1.0")
	resp, err := s.opts.WebhookClient.Do(req)
	if err != nil {
		return 0, err
	}
	drain(resp)
	return resp.StatusCode, nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}
