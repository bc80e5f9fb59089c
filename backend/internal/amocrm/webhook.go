package amocrm

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrBadWebhook wraps every ParseWebhook error. The body comes from an
// unauthenticated HTTP endpoint, so callers should answer 400 and not retry.
var ErrBadWebhook = errors.New("amocrm: bad webhook")

// MaxWebhookBody is the largest body ParseWebhook accepts; the HTTP layer can
// use it as its read limit so an oversized body is never buffered in full.
const MaxWebhookBody = 1 << 20

// Abuse limits. A real hook carries one to a few dozen leads; 500 leaves room
// for bulk edits in the amoCRM UI. The nesting limit counts bracket pairs:
// leads[status][0][custom_fields][0][values][0][value] has 7, and a composite
// value (legal entity, address) adds one more.
const (
	maxWebhookLeads   = 500
	maxWebhookKeyLen  = 512
	maxWebhookNesting = 8
)

// WebhookEventKind is the second segment of leads[<kind>][N][...].
type WebhookEventKind string

// The lead events amoCRM can deliver, in the order ParseWebhook returns them.
const (
	WebhookAdd         WebhookEventKind = "add"
	WebhookStatus      WebhookEventKind = "status"
	WebhookUpdate      WebhookEventKind = "update"
	WebhookDelete      WebhookEventKind = "delete"
	WebhookResponsible WebhookEventKind = "responsible"
	WebhookRestore     WebhookEventKind = "restore"
)

var webhookKinds = []WebhookEventKind{WebhookAdd, WebhookStatus, WebhookUpdate, WebhookDelete, WebhookResponsible, WebhookRestore}

// LeadEvent is one leads[<kind>][N] entry. Only the lead's identity and routing
// fields are kept: custom fields and tags in hooks are incomplete (amoCRM sends
// what changed, in a pre-v4 shape), so consumers re-read the lead via the API.
// A zero id field means amoCRM did not send it (or sent 0, e.g. for changes made
// by robots, which have no user).
type LeadEvent struct {
	Kind                              WebhookEventKind
	LeadID, StatusID, PipelineID      int64
	OldStatusID, OldPipelineID        int64
	ResponsibleUserID, ModifiedUserID int64
	LastModified                      int64 // unix seconds, 0 if absent
	Name                              string
}

// WebhookPayload is the lead part of an amoCRM webhook.
type WebhookPayload struct {
	AccountID int64  // account[id]; 0 if absent — hooks from before ~2019 lack it
	Subdomain string // account[subdomain]
	Leads     []LeadEvent
}

type leadKey struct {
	kind  int // index into webhookKinds, so sorting by it gives the documented order
	index int64
}

// The lead fields ParseWebhook reads; everything else under an entry is skipped
// without being stored, which keeps memory proportional to what is returned.
var leadIDFields = map[string]bool{
	"id": true, "status_id": true, "pipeline_id": true, "old_status_id": true,
	"old_pipeline_id": true, "responsible_user_id": true, "modified_user_id": true,
}

// ParseWebhook decodes an amoCRM webhook body (application/x-www-form-urlencoded
// with PHP-style nested keys). Keys outside account[...] and leads[<kind>][...]
// are ignored whatever their shape, apart from the size limits, which apply to
// every key. Percent-decoding follows PHP (amoCRM's own stack): '+' is a space
// and a '%' that starts no valid escape stays literal, so text that reached the
// body unencoded still parses.
func ParseWebhook(body []byte) (WebhookPayload, error) {
	var p WebhookPayload
	fail := func(format string, args ...any) (WebhookPayload, error) {
		return WebhookPayload{}, fmt.Errorf("%w: "+format, append([]any{ErrBadWebhook}, args...)...)
	}
	if len(body) > MaxWebhookBody {
		return fail("body is %d bytes, limit %d", len(body), MaxWebhookBody)
	}
	var accountID string
	leads := map[leadKey]map[string]string{}
	// A raw line break can only be framing (a proxy, a test file, curl -d @file):
	// inside values amoCRM encodes it as %0A.
	rest := strings.TrimRight(string(body), "\r\n")
	for rest != "" {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		rawKey, rawVal, _ := strings.Cut(pair, "=")
		// Checked before decoding so a huge key costs nothing; an escape shrinks
		// three bytes to one, so this bound is only a pre-filter.
		if len(rawKey) > 3*maxWebhookKeyLen {
			return fail("key longer than %d bytes", maxWebhookKeyLen)
		}
		key := phpUnescape(rawKey)
		if len(key) > maxWebhookKeyLen {
			return fail("key longer than %d bytes", maxWebhookKeyLen)
		}
		base, segs, err := splitKey(key)
		if err != nil {
			if base != "leads" && base != "account" {
				if errors.Is(err, errNesting) {
					return fail("key %q: %v", truncate(key, 64), err)
				}
				continue
			}
			return fail("key %q: %v", truncate(key, 64), err)
		}
		switch base {
		case "account":
			if len(segs) != 1 {
				continue
			}
			switch segs[0] {
			case "id":
				accountID = phpUnescape(rawVal)
			case "subdomain":
				p.Subdomain = strings.ToValidUTF8(phpUnescape(rawVal), "\uFFFD")
			}
		case "leads":
			if len(segs) == 0 {
				continue
			}
			kind := slices.Index(webhookKinds, WebhookEventKind(segs[0]))
			if kind < 0 {
				continue // lead events amoCRM may add later, e.g. notes
			}
			if len(segs) < 3 {
				return fail("key %q: expected leads[%s][N][field]", truncate(key, 64), segs[0])
			}
			idx, ok := parseIndex(segs[1])
			if !ok {
				return fail("key %q: entry index must be a non-negative integer", truncate(key, 64))
			}
			k := leadKey{kind, idx}
			l := leads[k]
			if l == nil {
				if len(leads) == maxWebhookLeads {
					return fail("more than %d lead entries", maxWebhookLeads)
				}
				l = map[string]string{}
				leads[k] = l
			}
			if len(segs) != 3 {
				continue // custom_fields, tags: nested and not used
			}
			switch f := segs[2]; {
			case leadIDFields[f], f == "name", f == "last_modified", f == "updated_at":
				// Repeated keys: the last one wins, as in PHP's parse_str.
				l[f] = phpUnescape(rawVal)
			}
		}
	}

	if accountID != "" {
		id, err := parseID(accountID)
		if err != nil {
			return fail("account[id]: %v", err)
		}
		p.AccountID = id
	}

	keys := make([]leadKey, 0, len(leads))
	for k := range leads {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b leadKey) int {
		if a.kind != b.kind {
			return a.kind - b.kind
		}
		return compareInt64(a.index, b.index)
	})
	for _, k := range keys {
		ev, err := buildLeadEvent(webhookKinds[k.kind], leads[k])
		if err != nil {
			return fail("leads[%s][%d]: %v", webhookKinds[k.kind], k.index, err)
		}
		p.Leads = append(p.Leads, ev)
	}
	return p, nil
}

func buildLeadEvent(kind WebhookEventKind, f map[string]string) (LeadEvent, error) {
	ev := LeadEvent{Kind: kind, Name: strings.ToValidUTF8(f["name"], "\uFFFD")}
	raw, ok := f["id"]
	if !ok {
		return ev, errors.New("missing id")
	}
	id, err := parseID(raw)
	if err != nil {
		return ev, fmt.Errorf("id: %v", err)
	}
	if id == 0 {
		return ev, errors.New("id: must be positive")
	}
	ev.LeadID = id
	for _, t := range []struct {
		name string
		dst  *int64
	}{
		{"status_id", &ev.StatusID},
		{"pipeline_id", &ev.PipelineID},
		{"old_status_id", &ev.OldStatusID},
		{"old_pipeline_id", &ev.OldPipelineID},
		{"responsible_user_id", &ev.ResponsibleUserID},
		{"modified_user_id", &ev.ModifiedUserID},
	} {
		raw, ok := f[t.name]
		if !ok || raw == "" {
			continue
		}
		v, err := parseID(raw)
		if err != nil {
			return ev, fmt.Errorf("%s: %v", t.name, err)
		}
		*t.dst = v
	}
	// A bad timestamp only loses the ordering hint, so it is not worth rejecting
	// an otherwise valid event over.
	ts, ok := f["last_modified"]
	if !ok {
		ts = f["updated_at"]
	}
	if v, err := parseID(ts); err == nil {
		ev.LastModified = v
	}
	return ev, nil
}

// parseID accepts plain decimal digits only: signs, spaces, fractions and
// exponents are what a forged or corrupted body looks like, not amoCRM.
func parseID(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a non-negative integer", truncate(s, 32))
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", truncate(s, 32))
	}
	return v, nil
}

func parseIndex(s string) (int64, bool) {
	v, err := parseID(s)
	return v, err == nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

var (
	errNesting   = fmt.Errorf("nested deeper than %d levels", maxWebhookNesting)
	errMalformed = errors.New("malformed brackets")
)

// splitKey splits "leads[status][0][id]" into "leads" and [status 0 id]. Unlike
// PHP it rejects stray text between or after the brackets instead of guessing,
// and an empty [] (PHP's append) is returned as an empty segment for the caller
// to reject where it matters. base is returned even on error so the caller can
// tell whether the key was one it reads.
func splitKey(key string) (base string, segs []string, err error) {
	open := strings.IndexByte(key, '[')
	if open < 0 {
		return key, nil, nil
	}
	base, rest := key[:open], key[open:]
	for rest != "" {
		if rest[0] != '[' {
			return base, nil, errMalformed
		}
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return base, nil, errMalformed
		}
		if len(segs) == maxWebhookNesting {
			return base, nil, errNesting
		}
		segs = append(segs, rest[1:end])
		rest = rest[end+1:]
	}
	return base, segs, nil
}

// phpUnescape is PHP's urldecode: unlike url.QueryUnescape it never fails, so one
// stray '%' in an unrelated field cannot make the whole hook unreadable.
func phpUnescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
