package amocrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const (
	pageLimit = 250 // the maximum amoCRM allows per page
	// maxPages bounds pagination so a misbehaving server cannot loop us forever.
	maxPages = 2000
)

// TokenSource supplies and refreshes an account's access token; implemented by
// the backend's store (with a cross-process lock).
type TokenSource interface {
	AccessToken(ctx context.Context) (string, error)
	// Refresh is called once after a 401 with the token that failed; returns a fresh access token.
	Refresh(ctx context.Context, failed string) (string, error)
}

// API is a Client bound to one account. It is cheap; create one per use.
type API struct {
	c       *Client
	origin  string
	lim     *accountLimit
	ts      TokenSource
	initErr error
}

// Account binds the client to an account. The account's domain keys the
// rate limiter, so every API for the same account shares one budget with
// the install's own requests, made before the account's id is known
// (accountID 0). An invalid domain is reported by every method of the
// returned API.
func (c *Client) Account(domain string, accountID int64, ts TokenSource) *API {
	a := &API{c: c, ts: ts}
	d, err := NormalizeDomain(domain)
	switch {
	case err != nil:
		a.initErr = err
	case ts == nil:
		a.initErr = errors.New("amocrm: nil TokenSource")
	default:
		a.origin = c.origin(d)
		a.lim = c.limiter(limitKey(d))
	}
	return a
}

// limitKey is the rate limit key of an account's domain: amoCRM limits each
// account, and its domain is known from the first request of an install.
func limitKey(domain string) int64 {
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(domain)))
	return int64(h.Sum64() >> 1) // positive
}

// do runs one API call with the 401 → refresh → retry-once protocol and
// decodes a 2xx body into out. It returns the HTTP status so callers can tell
// 204 (amoCRM's "nothing found") from 200.
func (a *API) do(ctx context.Context, method, path string, q url.Values, in, out any) (int, error) {
	if a.initErr != nil {
		return 0, a.initErr
	}
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return 0, fmt.Errorf("amocrm: %s %s: encoding request: %w", method, path, err)
		}
	}
	tok, err := a.ts.AccessToken(ctx)
	if err != nil {
		return 0, fmt.Errorf("amocrm: access token: %w", err)
	}
	req := request{method: method, path: path, query: q, body: body, token: tok, secrets: []string{tok}}
	resp, err := a.c.send(ctx, a.origin, a.lim, req)
	if errors.Is(err, ErrUnauthorized) {
		// A 401 means the request was rejected unprocessed, so repeating even a
		// write is safe. One refresh only: a second 401 means the grant is gone.
		a.c.log.LogAttrs(ctx, slog.LevelInfo, "amocrm: 401, refreshing access token",
			slog.String("method", method), slog.String("path", path))
		fresh, rerr := a.ts.Refresh(ctx, tok)
		if rerr != nil {
			return 0, fmt.Errorf("amocrm: refreshing token after 401: %w", rerr)
		}
		req.token, req.secrets = fresh, []string{tok, fresh}
		resp, err = a.c.send(ctx, a.origin, a.lim, req)
	}
	if err != nil {
		return 0, err
	}
	if resp.status == http.StatusNoContent || len(resp.body) == 0 {
		return resp.status, nil
	}
	return resp.status, decodeJSON(resp.body, out, method, path)
}

// getOne is a single-entity GET where 204 means "no such entity".
func (a *API) getOne(ctx context.Context, path string, q url.Values, out any) error {
	status, err := a.do(ctx, http.MethodGet, path, q, nil, out)
	if err != nil {
		return err
	}
	if status == http.StatusNoContent {
		return &Error{StatusCode: status, Method: http.MethodGet, Path: path, Title: "No Content"}
	}
	return nil
}

type page struct {
	Links struct {
		Next *struct {
			Href string `json:"href"`
		} `json:"next"`
	} `json:"_links"`
	Embedded map[string]json.RawMessage `json:"_embedded"`
}

// listAll walks `page=1..` until amoCRM stops sending a next link, answers 204
// or returns an empty page.
func listAll[T any](ctx context.Context, a *API, path string, q url.Values, key string) ([]T, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("limit", strconv.Itoa(pageLimit))
	var all []T
	for n := 1; ; n++ {
		if n > maxPages {
			return all, fmt.Errorf("amocrm: GET %s: more than %d pages", path, maxPages)
		}
		q.Set("page", strconv.Itoa(n))
		var p page
		status, err := a.do(ctx, http.MethodGet, path, q, nil, &p)
		if err != nil {
			return nil, err
		}
		if status == http.StatusNoContent {
			break
		}
		var items []T
		if raw, ok := p.Embedded[key]; ok {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, fmt.Errorf("amocrm: GET %s: decoding _embedded.%s: %w", path, key, err)
			}
		}
		all = append(all, items...)
		if len(items) == 0 || p.Links.Next == nil {
			break
		}
	}
	if all == nil {
		all = []T{}
	}
	return all, nil
}

func embeddedList[T any](ctx context.Context, a *API, path string, q url.Values, key string) ([]T, error) {
	var p page
	status, err := a.do(ctx, http.MethodGet, path, q, nil, &p)
	if err != nil {
		return nil, err
	}
	items := []T{}
	if status == http.StatusNoContent {
		return items, nil
	}
	if raw, ok := p.Embedded[key]; ok {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("amocrm: GET %s: decoding _embedded.%s: %w", path, key, err)
		}
	}
	return items, nil
}

// GetAccount returns the account the token belongs to.
func (a *API) GetAccount(ctx context.Context) (Account, error) {
	var acc Account
	err := a.getOne(ctx, "/api/v4/account", nil, &acc)
	return acc, err
}

// AccountTimezone returns the account's time zone (an IANA name such as
// "Europe/Moscow") from its date and time settings.
func (a *API) AccountTimezone(ctx context.Context) (string, error) {
	var acc struct {
		Embedded struct {
			DatetimeSettings struct {
				Timezone string `json:"timezone"`
			} `json:"datetime_settings"`
		} `json:"_embedded"`
	}
	if err := a.getOne(ctx, "/api/v4/account", url.Values{"with": {"datetime_settings"}}, &acc); err != nil {
		return "", err
	}
	return acc.Embedded.DatetimeSettings.Timezone, nil
}

// ListPipelines returns all lead pipelines with their statuses (not paginated by amoCRM).
func (a *API) ListPipelines(ctx context.Context) ([]Pipeline, error) {
	return embeddedList[Pipeline](ctx, a, "/api/v4/leads/pipelines", nil, "pipelines")
}

// GetLead returns one lead; a missing lead yields ErrNotFound.
func (a *API) GetLead(ctx context.Context, id int64, withContacts bool) (Lead, error) {
	var q url.Values
	if withContacts {
		q = url.Values{"with": {"contacts"}}
	}
	var l Lead
	err := a.getOne(ctx, "/api/v4/leads/"+strconv.FormatInt(id, 10), q, &l)
	return l, err
}

// ListLeads returns every lead matching filter, following all pages.
func (a *API) ListLeads(ctx context.Context, filter LeadFilter) ([]Lead, error) {
	q := url.Values{}
	for i, s := range filter.Statuses {
		p := "filter[statuses][" + strconv.Itoa(i) + "]"
		q.Set(p+"[pipeline_id]", strconv.FormatInt(s.PipelineID, 10))
		q.Set(p+"[status_id]", strconv.FormatInt(s.StatusID, 10))
	}
	for i, id := range filter.IDs {
		q.Set("filter[id]["+strconv.Itoa(i)+"]", strconv.FormatInt(id, 10))
	}
	if filter.WithContacts {
		q.Set("with", "contacts")
	}
	if !filter.UpdatedFrom.IsZero() {
		q.Set("filter[updated_at][from]", strconv.FormatInt(filter.UpdatedFrom.Unix(), 10))
	}
	return listAll[Lead](ctx, a, "/api/v4/leads", q, "leads")
}

// GetContact returns one contact; a missing contact yields ErrNotFound.
func (a *API) GetContact(ctx context.Context, id int64) (Contact, error) {
	var c Contact
	err := a.getOne(ctx, "/api/v4/contacts/"+strconv.FormatInt(id, 10), nil, &c)
	return c, err
}

// ListLeadCustomFields returns all lead custom field definitions.
func (a *API) ListLeadCustomFields(ctx context.Context) ([]CustomField, error) {
	return listAll[CustomField](ctx, a, "/api/v4/leads/custom_fields", nil, "custom_fields")
}

// CreateLeadCustomFields creates lead custom fields and returns them with IDs.
func (a *API) CreateLeadCustomFields(ctx context.Context, fields []CustomField) ([]CustomField, error) {
	if len(fields) == 0 {
		return []CustomField{}, nil
	}
	in := make([]CustomField, len(fields))
	copy(in, fields)
	for i := range in {
		in[i].ID = 0
	}
	var p page
	if _, err := a.do(ctx, http.MethodPost, "/api/v4/leads/custom_fields", nil, in, &p); err != nil {
		return nil, err
	}
	var out []CustomField
	if raw, ok := p.Embedded["custom_fields"]; ok {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("amocrm: POST /api/v4/leads/custom_fields: decoding response: %w", err)
		}
	}
	return out, nil
}

// ListUsers returns all account users.
func (a *API) ListUsers(ctx context.Context) ([]User, error) {
	return listAll[User](ctx, a, "/api/v4/users", nil, "users")
}

// GetUser returns one account user with their rights; a user the account
// does not have yields ErrNotFound.
func (a *API) GetUser(ctx context.Context, id int64) (User, error) {
	var u User
	err := a.getOne(ctx, "/api/v4/users/"+strconv.FormatInt(id, 10), nil, &u)
	return u, err
}

// AddLeadNote adds a common (text) note to a lead.
func (a *API) AddLeadNote(ctx context.Context, leadID int64, text string) (Note, error) {
	type noteIn struct {
		EntityID int64      `json:"entity_id"`
		NoteType string     `json:"note_type"`
		Params   NoteParams `json:"params"`
	}
	body := []noteIn{{EntityID: leadID, NoteType: "common", Params: NoteParams{Text: text}}}
	var p page
	if _, err := a.do(ctx, http.MethodPost, "/api/v4/leads/notes", nil, body, &p); err != nil {
		return Note{}, err
	}
	var notes []Note
	if raw, ok := p.Embedded["notes"]; ok {
		if err := json.Unmarshal(raw, &notes); err != nil {
			return Note{}, fmt.Errorf("amocrm: POST /api/v4/leads/notes: decoding response: %w", err)
		}
	}
	if len(notes) == 0 {
		return Note{}, errors.New("amocrm: POST /api/v4/leads/notes: response has no note")
	}
	// The create response carries only ids; fill in what we sent.
	n := notes[0]
	if n.EntityID == 0 {
		n.EntityID = leadID
	}
	if n.NoteType == "" {
		n.NoteType = "common"
	}
	if n.Params.Text == "" {
		n.Params.Text = text
	}
	return n, nil
}

// ListLeadNotes returns a lead's notes (all pages), e.g. to find a note this
// integration already added before adding it again.
func (a *API) ListLeadNotes(ctx context.Context, leadID int64) ([]Note, error) {
	return listAll[Note](ctx, a, "/api/v4/leads/"+strconv.FormatInt(leadID, 10)+"/notes", nil, "notes")
}

// AddLeadTask creates a task on lead t.EntityID (EntityType is set to leads;
// a zero TaskTypeID means a follow-up) and returns it with its ID.
func (a *API) AddLeadTask(ctx context.Context, t Task) (Task, error) {
	if t.EntityID <= 0 || t.Text == "" || t.CompleteTill <= 0 {
		return Task{}, errors.New("amocrm: AddLeadTask: lead, text and deadline are required")
	}
	t.EntityType = "leads"
	if t.TaskTypeID == 0 {
		t.TaskTypeID = TaskFollowUp
	}
	var p page
	if _, err := a.do(ctx, http.MethodPost, "/api/v4/tasks", nil, []Task{t}, &p); err != nil {
		return Task{}, err
	}
	var created []Task
	if raw, ok := p.Embedded["tasks"]; ok {
		if err := json.Unmarshal(raw, &created); err != nil {
			return Task{}, fmt.Errorf("amocrm: POST /api/v4/tasks: decoding response: %w", err)
		}
	}
	if len(created) == 0 || created[0].ID == 0 {
		return Task{}, errors.New("amocrm: POST /api/v4/tasks: response has no task")
	}
	// The create response carries only ids; the rest is what we sent.
	t.ID = created[0].ID
	return t, nil
}

// ListLeadTasks returns a lead's tasks (all pages), e.g. to find a task this
// integration already created before creating it again.
func (a *API) ListLeadTasks(ctx context.Context, leadID int64) ([]Task, error) {
	q := url.Values{"filter[entity_type]": {"leads"}, "filter[entity_id][]": {strconv.FormatInt(leadID, 10)}}
	return listAll[Task](ctx, a, "/api/v4/tasks", q, "tasks")
}

// UpdateLead PATCHes the set fields of u onto lead u.ID.
func (a *API) UpdateLead(ctx context.Context, u LeadUpdate) error {
	if u.ID <= 0 {
		return errors.New("amocrm: UpdateLead: missing lead ID")
	}
	_, err := a.do(ctx, http.MethodPatch, "/api/v4/leads/"+strconv.FormatInt(u.ID, 10), nil, u, nil)
	return err
}

// ListWebhooks returns the account's webhook subscriptions.
func (a *API) ListWebhooks(ctx context.Context) ([]Webhook, error) {
	return embeddedList[Webhook](ctx, a, "/api/v4/webhooks", nil, "webhooks")
}

// SubscribeWebhook subscribes destination to the given events (e.g.
// "status_lead", "responsible_lead"). amoCRM updates the settings of an
// existing subscription with the same destination, so this is safe to repeat.
func (a *API) SubscribeWebhook(ctx context.Context, destination string, settings []string) (Webhook, error) {
	in := struct {
		Destination string   `json:"destination"`
		Settings    []string `json:"settings"`
	}{destination, settings}
	var w Webhook
	_, err := a.do(ctx, http.MethodPost, "/api/v4/webhooks", nil, in, &w)
	return w, err
}

// UnsubscribeWebhook removes the subscription for destination.
func (a *API) UnsubscribeWebhook(ctx context.Context, destination string) error {
	in := struct {
		Destination string `json:"destination"`
	}{destination}
	_, err := a.do(ctx, http.MethodDelete, "/api/v4/webhooks", nil, in, nil)
	return err
}
