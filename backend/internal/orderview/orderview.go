// Package orderview renders amoCRM deals as Telegram messages (parse_mode
// HTML): the post in the executors' group, the private message with the
// client's contacts, and the group message after an executor took the order.
//
// Every CRM-supplied string is escaped, and every message fits Telegram's
// 4096-character limit by construction: values that belong to the message's
// identity (order number, deal name, client, executor) are capped, and the
// field list absorbs whatever room is left, losing lines from the end.
package orderview

import (
	"cmp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
)

// MaxLen is Telegram's message limit in UTF-16 code units of the visible text.
const MaxLen = 4096

// Caps for the lines that are never dropped. Together (client block with
// maxContactValues phones and e-mails, order header, deal name, executor and
// time) they stay under ~2500 units, so the field list always has room.
const (
	maxDealName      = 512
	maxPersonName    = 256
	maxFieldLabel    = 256
	maxPhone         = 64
	maxEmail         = 254
	maxContactValues = 5
	// A cut value shorter than this says nothing useful; the line is dropped
	// in favour of a bare "…" instead.
	minCutValue = 16
)

const ellipsis = "…"

// Field is a lead custom field of the account (from /api/v4/leads/custom_fields).
type Field struct {
	ID   int64
	Name string
	Type string
	Code string // amoCRM's field_code, e.g. PHONE
}

// Options describe the account the deal belongs to and what the admin chose to show.
type Options struct {
	Lang     string         // "ru" (default) or "en"; anything starting with "en" is English
	Currency string         // ISO code from the account, e.g. "RUB"
	Location *time.Location // for dates; nil means Europe/Moscow
	// Fields are the account's lead custom fields in the account's order. Lead
	// values for fields missing here are shown after them with the name and
	// type the lead itself carries.
	Fields []Field
	// ShowFieldIDs selects the fields to show, in the account's field order
	// (IDs unknown to Fields follow in this slice's order). nil shows every
	// non-empty field; an empty non-nil slice shows none.
	ShowFieldIDs []int64
	ShowBudget   bool // include the budget (lead price) line
	// HiddenFieldIDs are never shown, whatever ShowFieldIDs says: fields the
	// product writes itself (the executor) are not part of the order.
	HiddenFieldIDs []int64
}

// Executor is the Telegram user who took the order.
type Executor struct {
	TelegramID                    int64
	FirstName, LastName, Username string
}

// Group is the order post for the executors' group. It takes no contact on
// purpose: client data must only ever reach the executor who took the order.
// Phone numbers and e-mails typed into the deal's name or fields are masked,
// and contact-type fields are left out.
func Group(lead amocrm.Lead, o Options) string {
	lang, loc := normLang(o.Lang), location(o.Location)
	return render(
		section{lines: orderHead(lead, lang, true)},
		section{lines: orderBody(lead, o, lang, loc, true), flexible: true},
	)
}

// Private is the message to the executor after they took the order: the
// client's name, phones and e-mails, then the same summary as the group post.
// contact may be nil when the deal has no contact.
func Private(lead amocrm.Lead, contact *amocrm.Contact, o Options) string {
	lang, loc := normLang(o.Lang), location(o.Location)
	return render(
		section{lines: clientLines(contact, lang)},
		section{lines: orderHead(lead, lang, false)},
		section{lines: orderBody(lead, o, lang, loc, false), flexible: true},
	)
}

// Taken replaces the group post once an executor took the order; it is
// group text, masked as Group is.
func Taken(lead amocrm.Lead, e Executor, at time.Time, o Options) string {
	lang, loc := normLang(o.Lang), location(o.Location)
	foot := []line{textLine("✅ ", tr(lang, "executor_found"), value{text: capUnits(ExecutorLabel(e), maxPersonName)}, false)}
	if !at.IsZero() {
		foot = append(foot, textLine("🕒 ", tr(lang, "taken_at"), value{text: formatDate(at.In(loc), lang, true)}, false))
	}
	return render(
		section{lines: orderHead(lead, lang, true)},
		section{lines: orderBody(lead, o, lang, loc, true), flexible: true},
		section{lines: foot},
	)
}

// ExecutorLabel is "First Last (@login)" as plain text (not HTML), for the
// amoCRM field that records who took the order.
func ExecutorLabel(e Executor) string {
	name := oneLine(e.FirstName + " " + e.LastName)
	user := strings.TrimPrefix(oneLine(e.Username), "@")
	switch {
	case name != "" && user != "":
		return name + " (@" + user + ")"
	case name != "":
		return name
	case user != "":
		return "@" + user
	}
	return "id " + strconv.FormatInt(e.TelegramID, 10)
}

var (
	moscowOnce sync.Once
	moscow     *time.Location
)

// location falls back to a fixed UTC+3 when the host has no tzdata: Moscow
// has had no DST since 2014, so only older dates could differ.
func location(l *time.Location) *time.Location {
	if l != nil {
		return l
	}
	moscowOnce.Do(func() {
		var err error
		if moscow, err = time.LoadLocation("Europe/Moscow"); err != nil {
			moscow = time.FixedZone("MSK", 3*60*60)
		}
	})
	return moscow
}

func orderHead(lead amocrm.Lead, lang string, masked bool) []line {
	lines := []line{textLine("📦 ", "", value{text: tr(lang, "order", lead.ID)}, true)}
	name := oneLine(lead.Name)
	if masked {
		name = maskContacts(name)
	}
	if name != "" {
		lines = append(lines, textLine("", "", value{text: capUnits(name, maxDealName)}, true))
	}
	return lines
}

func orderBody(lead amocrm.Lead, o Options, lang string, loc *time.Location, masked bool) []line {
	var lines []line
	if o.ShowBudget {
		lines = append(lines, textLine("", tr(lang, "budget"), value{text: formatMoney(lead.Price, o.Currency, lang)}, false))
	}
	for _, f := range selectFields(lead, o) {
		if masked && contactField(f.typ, f.code) {
			continue
		}
		v, ok := formatField(f.typ, f.values, lang, loc)
		if !ok {
			continue
		}
		if masked {
			if m := maskContacts(v.text); m != v.text {
				v = value{text: m} // a link to a masked address would still name it
			}
		}
		lines = append(lines, textLine("", capUnits(oneLine(f.name), maxFieldLabel), v, false))
	}
	return lines
}

type shownField struct {
	name, typ, code string
	values          []amocrm.CustomFieldItem
}

func selectFields(lead amocrm.Lead, o Options) []shownField {
	byID := map[int64]amocrm.CustomFieldValue{}
	for _, v := range lead.CustomFieldsValues {
		if _, dup := byID[v.FieldID]; !dup {
			byID[v.FieldID] = v
		}
	}
	var show map[int64]bool
	if o.ShowFieldIDs != nil {
		show = make(map[int64]bool, len(o.ShowFieldIDs))
		for _, id := range o.ShowFieldIDs {
			show[id] = true
		}
	}
	var out []shownField
	done := map[int64]bool{}
	for _, id := range o.HiddenFieldIDs {
		done[id] = true
	}
	for _, f := range o.Fields {
		v, ok := byID[f.ID]
		if !ok || done[f.ID] || (show != nil && !show[f.ID]) {
			continue
		}
		done[f.ID] = true
		name, typ := f.Name, f.Type
		if name == "" {
			name = v.FieldName
		}
		if typ == "" {
			typ = v.FieldType
		}
		out = append(out, shownField{name, typ, cmp.Or(v.FieldCode, f.Code), v.Values})
	}
	add := func(v amocrm.CustomFieldValue) {
		out = append(out, shownField{v.FieldName, v.FieldType, v.FieldCode, v.Values})
	}
	if show == nil {
		for _, v := range lead.CustomFieldsValues {
			if v.FieldID == 0 {
				add(v)
			} else if !done[v.FieldID] {
				done[v.FieldID] = true
				add(v)
			}
		}
		return out
	}
	for _, id := range o.ShowFieldIDs {
		if v, ok := byID[id]; ok && !done[id] {
			done[id] = true
			add(v)
		}
	}
	return out
}

func clientLines(c *amocrm.Contact, lang string) []line {
	if c == nil {
		return nil
	}
	var lines []line
	name := oneLine(c.Name)
	if name == "" {
		name = oneLine(c.FirstName + " " + c.LastName)
	}
	if name != "" {
		lines = append(lines, textLine("👤 ", tr(lang, "client"), value{text: capUnits(name, maxPersonName)}, false))
	}
	for i, p := range c.Phones() {
		if i == maxContactValues {
			break
		}
		if v, ok := phoneValue(p); ok {
			lines = append(lines, textLine("📞 ", "", v, false))
		}
	}
	for i, e := range c.Emails() {
		if i == maxContactValues {
			break
		}
		if v, ok := emailValue(e); ok {
			lines = append(lines, textLine("✉️ ", "", v, false))
		}
	}
	return lines
}

// phoneValue links a phone as tel:+digits. Russian numbers are the common
// case and arrive in every shape ("8 (999) 123-45-67", "9991234567"), so they
// are normalised to +7 and shown in one format; anything else is shown as
// typed. Numbers that cannot be dialled (too short/long for E.164, or with an
// extension glued on) stay plain text.
func phoneValue(raw string) (value, bool) {
	s := oneLine(raw)
	if s == "" {
		return value{}, false
	}
	var digits strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits.WriteRune(r)
		}
	}
	d := digits.String()
	switch {
	case strings.HasPrefix(s, "+"):
	case len(d) == 11 && d[0] == '8':
		d = "7" + d[1:]
	case len(d) == 10 && d[0] == '9':
		d = "7" + d
	}
	if len(d) < 5 || len(d) > 15 {
		return value{text: capUnits(s, maxPhone)}, true
	}
	display := capUnits(s, maxPhone)
	if len(d) == 11 && d[0] == '7' {
		display = "+7 " + d[1:4] + " " + d[4:7] + "-" + d[7:9] + "-" + d[9:11]
	}
	return value{text: display, href: "tel:+" + d}, true
}

// emailValue links only plain addresses: '?' or '&' would let a CRM value add
// mailto headers, and a cut address is not an address.
func emailValue(raw string) (value, bool) {
	s := oneLine(raw)
	if s == "" {
		return value{}, false
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || len(s) > maxEmail ||
		strings.ContainsAny(s, " <>\"'?&#%/\\,;:()[]") || strings.Contains(domain, "@") {
		return value{text: capUnits(s, maxEmail)}, true
	}
	return value{text: s, href: "mailto:" + s}, true
}

// line is one message line: a fixed head (emoji and label) and a value, kept
// apart so that shortening cuts the value's plain text — never markup.
type line struct {
	head  string // HTML
	headN int    // visible UTF-16 length of head
	val   value
	bold  bool
}

func textLine(prefix, label string, v value, bold bool) line {
	head := prefix
	if label != "" {
		head += label + ": "
	}
	return line{head: escape(head), headN: utf16Len(head), val: v, bold: bold}
}

func (l line) n() int { return l.headN + utf16Len(l.val.text) }

func (l line) html() string {
	v := escape(l.val.text)
	if l.val.href != "" {
		v = `<a href="` + escape(l.val.href) + `">` + v + `</a>`
	}
	if l.bold {
		v = "<b>" + v + "</b>"
	}
	return l.head + v
}

// cut shortens the value so the line takes at most max units, ending in "…".
// The link goes: a truncated URL or address would point somewhere else.
func (l line) cut(max int) (line, bool) {
	room := max - l.headN - utf16Len(ellipsis)
	if room < minCutValue {
		return line{}, false
	}
	l.val = value{text: cutUnits(l.val.text, room) + ellipsis}
	return l, true
}

type section struct {
	lines    []line
	flexible bool // the one section that is shortened to make the message fit
}

func sectionLen(lines []line) int {
	n := 0
	for i, l := range lines {
		if i > 0 {
			n++ // "\n"
		}
		n += l.n()
	}
	return n
}

// render joins non-empty sections with a blank line, first shrinking the
// flexible section to the room the fixed ones leave.
func render(sections ...section) string {
	fixed, used := 0, 0
	for _, s := range sections {
		if len(s.lines) == 0 {
			continue
		}
		if used > 0 {
			fixed += 2 // "\n\n"
		}
		used++
		if !s.flexible {
			fixed += sectionLen(s.lines)
		}
	}
	var b strings.Builder
	for _, s := range sections {
		lines := s.lines
		if s.flexible {
			lines = fit(lines, MaxLen-fixed)
		}
		if len(lines) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		for i, l := range lines {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(l.html())
		}
	}
	return b.String()
}

// fit keeps whole lines from the top while they fit, cuts the first one that
// does not if enough of it would remain, and marks any loss with "…".
func fit(lines []line, budget int) []line {
	if sectionLen(lines) <= budget {
		return lines
	}
	const reserve = 2 // "\n…" after the last kept line
	if budget < reserve {
		return nil
	}
	var out []line
	used := 0
	for _, l := range lines {
		sep := 0
		if len(out) > 0 {
			sep = 1
		}
		if used+sep+l.n() <= budget-reserve {
			out = append(out, l)
			used += sep + l.n()
			continue
		}
		if c, ok := l.cut(budget - used - sep); ok {
			return append(out, c)
		}
		break
	}
	return append(out, line{val: value{text: ellipsis}})
}

// utf16Len is how Telegram measures text.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if utf16.RuneLen(r) == 2 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// cutUnits returns the longest rune-aligned prefix of s within max UTF-16
// units, without trailing whitespace.
func cutUnits(s string, max int) string {
	n := 0
	for i, r := range s {
		w := 1
		if utf16.RuneLen(r) == 2 {
			w = 2
		}
		if n+w > max {
			return strings.TrimRightFunc(s[:i], unicode.IsSpace)
		}
		n += w
	}
	return s
}

// capUnits bounds a value that must stay in the message whatever its size.
func capUnits(s string, max int) string {
	if utf16Len(s) <= max {
		return s
	}
	return cutUnits(s, max-utf16Len(ellipsis)) + ellipsis
}
