package orderview

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
)

// nbsp groups thousands in Russian and glues "₽" to the amount, so Telegram
// never wraps a number across lines.
const nbsp = "\u00a0"

// value is one rendered custom-field value: plain text (for measuring and
// cutting) and, when it is a link, the href to wrap it in.
type value struct {
	text string
	href string
}

// formatField renders all values of a field; ok is false when nothing
// displayable is left, so the caller skips the line.
func formatField(typ string, items []amocrm.CustomFieldItem, lang string, loc *time.Location) (value, bool) {
	var parts []string
	for _, it := range items {
		if s := formatItem(typ, it.Value, lang, loc); s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return value{}, false
	}
	v := value{text: strings.Join(parts, ", ")}
	if typ == "url" && len(parts) == 1 && isWebURL(parts[0]) {
		v.href = parts[0]
	}
	return v, true
}

func formatItem(typ string, raw any, lang string, loc *time.Location) string {
	s := clean(rawString(raw))
	if s == "" {
		return ""
	}
	switch typ {
	case "numeric", "monetary", "price":
		if n, ok := formatNumber(s, lang); ok {
			return n
		}
	case "date", "birthday":
		if t, ok := parseTime(raw, s, loc); ok {
			return formatDate(t, lang, false)
		}
	case "date_time":
		if t, ok := parseTime(raw, s, loc); ok {
			return formatDate(t, lang, true)
		}
	case "checkbox":
		if b, ok := parseBool(raw, s); ok {
			return yesNo(b, lang)
		}
	}
	return s
}

func yesNo(b bool, lang string) string {
	if b {
		return tr(lang, "yes")
	}
	return tr(lang, "no")
}

// rawString flattens the JSON shapes amoCRM uses for values. Composite values
// (legal entity, address, file) are objects; the human-facing part is usually
// under one of a few keys, otherwise all scalar parts are shown.
func rawString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		if x {
			return "1"
		}
		return "0"
	case map[string]any:
		for _, k := range []string{"name", "file_name", "text", "value", "address", "title"} {
			if s, ok := x[k].(string); ok && strings.TrimSpace(s) != "" {
				return s
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			switch x[k].(type) {
			case string, float64, bool:
				if s := strings.TrimSpace(rawString(x[k])); s != "" {
					parts = append(parts, s)
				}
			}
		}
		return strings.Join(parts, ", ")
	case []any:
		var parts []string
		for _, e := range x {
			if s := strings.TrimSpace(rawString(e)); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ", ")
	default:
		return fmt.Sprint(v)
	}
}

func parseBool(raw any, s string) (bool, bool) {
	if b, ok := raw.(bool); ok {
		return b, true
	}
	switch strings.ToLower(s) {
	case "1", "true", "y", "yes", "да", "on":
		return true, true
	case "0", "false", "n", "no", "нет", "off":
		return false, true
	}
	return false, false
}

// formatNumber groups digits and localises the decimal separator. The input's
// own decimal digits are kept as sent: amoCRM stores what the user typed, and
// rounding through float64 would invent digits ("0.1" → "0.1000000000000000055").
func formatNumber(s, lang string) (string, bool) {
	s = strings.TrimSpace(s)
	if !isPlainDecimal(s) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return "", false
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(strings.Replace(s, ",", ".", 1), ".")
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	group, dec := nbsp, ","
	if lang == "en" {
		group, dec = ",", "."
	}
	var b strings.Builder
	if neg && (intPart != "0" || strings.Trim(frac, "0") != "") {
		b.WriteByte('-')
	}
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteString(group)
		}
		b.WriteRune(c)
	}
	if hasFrac && frac != "" {
		b.WriteString(dec)
		b.WriteString(frac)
	}
	return b.String(), true
}

// isPlainDecimal matches -?digits([.,]digits)?, with a length cap so absurd
// inputs go through ParseFloat's validation instead.
func isPlainDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" || len(s) > 40 {
		return false
	}
	seenSep, digitsAfter := false, true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digitsAfter = true
		case (c == '.' || c == ',') && !seenSep && i > 0:
			seenSep, digitsAfter = true, false
		default:
			return false
		}
	}
	return digitsAfter
}

var currencySymbols = map[string]string{
	"RUB": "₽", "RUR": "₽", "USD": "$", "EUR": "€", "KZT": "₸", "UAH": "₴", "BYN": "Br",
	"GBP": "£", "CNY": "¥", "JPY": "¥", "TRY": "₺", "INR": "₹", "GEL": "₾", "AMD": "֏",
	"AZN": "₼", "ILS": "₪", "KRW": "₩", "VND": "₫", "PLN": "zł",
}

// formatMoney follows each language's convention: "15 000 ₽" in Russian,
// "₽15,000" in English; an unknown ISO code is written out ("15 000 CHF",
// "CHF 15,000").
func formatMoney(amount int64, currency, lang string) string {
	num, _ := formatNumber(strconv.FormatInt(amount, 10), lang)
	code := strings.ToUpper(strings.TrimSpace(clean(currency)))
	if code == "" {
		return num
	}
	sym, known := currencySymbols[code]
	if !known {
		sym = code
	}
	if lang != "en" {
		return num + nbsp + sym
	}
	neg := strings.HasPrefix(num, "-")
	num = strings.TrimPrefix(num, "-")
	out := sym + num
	if !known {
		out = sym + nbsp + num
	}
	if neg {
		out = "-" + out
	}
	return out
}

// Dates outside this range are not dates a CRM user meant; formatting them
// would print years like 292277026596.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

var timeLayouts = []string{
	time.RFC3339,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04",
	"2006-01-02",
	"02.01.2006 15:04",
	"02.01.2006",
}

// parseTime accepts what amoCRM has been seen to send for date fields: unix
// seconds as a JSON number or numeric string, ISO-8601-ish strings, and the
// "dd.mm.yyyy" of old webhooks. Zone-less strings are read in loc.
func parseTime(raw any, s string, loc *time.Location) (time.Time, bool) {
	var t time.Time
	if f, ok := raw.(float64); ok {
		if math.IsNaN(f) || f < -62135596800 || f > 253402300799 {
			return time.Time{}, false
		}
		t = time.Unix(int64(math.Floor(f)), 0)
	} else if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < -62135596800 || n > 253402300799 {
			return time.Time{}, false
		}
		t = time.Unix(n, 0)
	} else {
		parsed := false
		for _, layout := range timeLayouts {
			if p, err := time.ParseInLocation(layout, s, loc); err == nil {
				t, parsed = p, true
				break
			}
		}
		if !parsed {
			return time.Time{}, false
		}
	}
	t = t.In(loc)
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, false
	}
	return t, true
}

func formatDate(t time.Time, lang string, withTime bool) string {
	layout := "02.01.2006"
	if lang == "en" {
		layout = "Jan 2, 2006"
	}
	if withTime {
		layout += " 15:04"
	}
	return t.Format(layout)
}

// isWebURL limits links to http(s): Telegram refuses or drops other schemes,
// and javascript:/data: hrefs from a CRM field must never become links.
func isWebURL(s string) bool {
	if len(s) > 2048 || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	return scheme == "http" || scheme == "https"
}

// clean makes CRM text safe to embed: valid UTF-8, no control characters
// except line breaks and tabs, no surrounding whitespace.
func clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	if strings.IndexFunc(s, isStrippedControl) >= 0 {
		s = strings.Map(func(r rune) rune {
			if isStrippedControl(r) {
				return -1
			}
			return r
		}, s)
	}
	return strings.TrimSpace(s)
}

func isStrippedControl(r rune) bool {
	return r != '\n' && r != '\t' && unicode.IsControl(r)
}

// oneLine is clean for values that must not break the layout, like names.
func oneLine(s string) string {
	return strings.Join(strings.Fields(clean(s)), " ")
}

// escape produces only the entities Telegram documents (&lt; &gt; &amp;
// &quot;); html.EscapeString's &#39; is accepted too, but there is no need
// to rely on numeric references.
func escape(s string) string {
	return htmlEscaper.Replace(s)
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
