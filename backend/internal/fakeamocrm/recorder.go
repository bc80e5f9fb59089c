package fakeamocrm

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// Request is one HTTP request served by the fake (API and OAuth alike).
type Request struct {
	Seq         int
	At          time.Time // wall clock
	Duration    time.Duration
	AccountID   int64 // 0 when the caller could not be attributed
	Method      string
	Path        string
	RawQuery    string
	Query       url.Values
	Header      http.Header
	Body        []byte
	JSON        any        // decoded JSON body, nil if not JSON
	Form        url.Values // decoded form body, nil if not a form
	Status      int
	Response    []byte
	RateLimited bool // answered 429 by the rate limiter
	Faulted     bool // answered by an injected fault
}

// RequestFilter selects recorded requests; zero fields match anything.
type RequestFilter struct {
	AccountID int64
	Method    string
	// Path matches exactly or as a path.Match pattern ("/api/v4/leads/*").
	Path   string
	Status int
}

func (f RequestFilter) match(r *Request) bool {
	if f.AccountID != 0 && f.AccountID != r.AccountID {
		return false
	}
	if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
		return false
	}
	if f.Status != 0 && f.Status != r.Status {
		return false
	}
	if f.Path != "" && f.Path != r.Path {
		if ok, _ := path.Match(f.Path, r.Path); !ok {
			return false
		}
	}
	return true
}

func (s *Server) record(r *http.Request, body []byte, meta *reqMeta, rec *respRecorder, d time.Duration) {
	req := Request{
		At:          time.Now(),
		Duration:    d,
		AccountID:   meta.accountID,
		Method:      r.Method,
		Path:        r.URL.Path,
		RawQuery:    r.URL.RawQuery,
		Query:       r.URL.Query(),
		Header:      r.Header.Clone(),
		Body:        body,
		Status:      rec.status,
		Response:    slices.Clone(rec.body.Bytes()),
		RateLimited: meta.rateLimited,
		Faulted:     meta.faulted,
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case len(body) == 0:
	case ct == "application/x-www-form-urlencoded":
		req.Form, _ = url.ParseQuery(string(body))
	default:
		var v any
		if json.Unmarshal(body, &v) == nil {
			req.JSON = v
		}
	}
	s.mu.Lock()
	req.Seq = len(s.requests) + 1
	s.requests = append(s.requests, req)
	s.mu.Unlock()
}

// Requests returns recorded requests matching f, in arrival order.
func (s *Server) Requests(f RequestFilter) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for i := range s.requests {
		if f.match(&s.requests[i]) {
			out = append(out, s.requests[i])
		}
	}
	return out
}

// ResetRequests forgets recorded requests (state is kept).
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

// LeadUpdate is one lead changed by a successful API PATCH.
type LeadUpdate struct {
	At        time.Time
	LeadID    int64
	RequestID string
	Patch     map[string]any // the item as sent
	Before    Lead
	After     Lead
}

// LeadUpdates lists successful API PATCHes of leads for the account.
func (s *Server) LeadUpdates(accountID int64) []LeadUpdate {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil {
		return nil
	}
	return slices.Clone(acc.leadUpdates)
}

// Note is a lead note.
type Note struct {
	ID                int64
	EntityID          int64
	NoteType          string
	Params            map[string]any
	CreatedBy         int64
	ResponsibleUserID int64
	CreatedAt         time.Time
}

// Text returns params.text.
func (n Note) Text() string {
	t, _ := n.Params["text"].(string)
	return t
}

// Notes returns the notes of a lead (all leads if leadID is 0).
func (s *Server) Notes(accountID, leadID int64) []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil {
		return nil
	}
	var out []Note
	for _, n := range acc.notes {
		if leadID == 0 || n.EntityID == leadID {
			out = append(out, n)
		}
	}
	return out
}

// Lead returns the current state of a lead (deleted leads are returned too,
// with Deleted set).
func (s *Server) Lead(accountID, id int64) (Lead, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil || acc.leads[id] == nil {
		return Lead{}, false
	}
	return cloneLead(acc.leads[id]), true
}

// Leads returns every live lead of the account ordered by id.
func (s *Server) Leads(accountID int64) []Lead {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil {
		return nil
	}
	var out []Lead
	for _, l := range acc.sortedLeads() {
		out = append(out, cloneLead(l))
	}
	return out
}

// Contact returns the current state of a contact.
func (s *Server) Contact(accountID, id int64) (Contact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil || acc.contacts[id] == nil {
		return Contact{}, false
	}
	return cloneContact(acc.contacts[id]), true
}

func (acc *account) sortedLeads() []*Lead {
	out := make([]*Lead, 0, len(acc.leads))
	for _, l := range acc.leads {
		if !l.Deleted {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b *Lead) int { return cmpInt(a.ID, b.ID) })
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
