package faketelegram

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Wording and byte offsets follow tdlib's parse_html (td/telegram/MessageEntity.cpp), which
// is what the Bot API server runs, so a backend that matches on these strings in tests
// matches on what production returns. One deliberate difference: tdlib silently keeps an
// '&' that starts no entity, but the Bot API docs require escaping every '&', '<' and '>'
// that is not markup; the fake rejects a bare '&' so escaping bugs surface in tests.

type openTag struct {
	name        string
	pos         int // byte offset of '<'
	utf16Start  int
	entityType  string
	url         string
	language    string
	customEmoji string
}

var htmlTags = map[string]string{
	"b": "bold", "strong": "bold",
	"i": "italic", "em": "italic",
	"u": "underline", "ins": "underline",
	"s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
	"span": "spoiler", "tg-spoiler": "spoiler",
	"a":          "text_link",
	"tg-emoji":   "custom_emoji",
	"code":       "code",
	"pre":        "pre",
	"blockquote": "blockquote",
}

// parseHTML returns the visible text and its entities, or the text after
// "Bad Request: can't parse entities: ".
func parseHTML(s string) (string, []MessageEntity, error) {
	var (
		out      strings.Builder
		utf16Len int
		stack    []openTag
		entities []MessageEntity
	)
	emit := func(r rune) {
		out.WriteRune(r)
		utf16Len += utf16RuneLen(r)
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case '&':
			r, n, ok := decodeEntity(s[i:])
			if !ok {
				return "", nil, fmt.Errorf("Unsupported HTML entity at byte offset %d; escape '&' as &amp;", i)
			}
			emit(r)
			i += n
		case '<':
			var err error
			if i+1 < len(s) && s[i+1] == '/' {
				var e *MessageEntity
				stack, e, i, err = closeTag(s, i, stack, utf16Len)
				if e != nil {
					entities = append(entities, *e)
				}
			} else {
				var t openTag
				if t, i, err = parseStartTag(s, i, stack); err == nil {
					t.utf16Start = utf16Len
					stack = append(stack, t)
				}
			}
			if err != nil {
				return "", nil, err
			}
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			emit(r)
			i += n
		}
	}
	if len(stack) > 0 {
		return "", nil, fmt.Errorf("Can't find end tag corresponding to start tag %q", stack[len(stack)-1].name)
	}
	sort.SliceStable(entities, func(a, b int) bool {
		if entities[a].Offset != entities[b].Offset {
			return entities[a].Offset < entities[b].Offset
		}
		return entities[a].Length > entities[b].Length
	})
	return out.String(), entities, nil
}

func parseStartTag(s string, begin int, stack []openTag) (openTag, int, error) {
	i := begin + 1
	for i < len(s) && !isHTMLSpace(s[i]) && s[i] != '>' {
		i++
	}
	if i >= len(s) {
		return openTag{}, 0, fmt.Errorf("Unclosed start tag at byte offset %d", begin)
	}
	name := strings.ToLower(s[begin+1 : i])
	typ, ok := htmlTags[name]
	if !ok {
		return openTag{}, 0, fmt.Errorf("Unsupported start tag %q at byte offset %d", name, begin)
	}
	t := openTag{name: name, pos: begin, entityType: typ}
	attrs := map[string]string{}
	for {
		for i < len(s) && isHTMLSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return openTag{}, 0, fmt.Errorf("Unclosed start tag at byte offset %d", begin)
		}
		if s[i] == '>' {
			i++
			break
		}
		nameStart := i
		for i < len(s) && !isHTMLSpace(s[i]) && s[i] != '=' && s[i] != '>' {
			i++
		}
		attr := strings.ToLower(s[nameStart:i])
		if attr == "" {
			return openTag{}, 0, fmt.Errorf("Empty attribute name in the tag %q at byte offset %d", name, begin)
		}
		for i < len(s) && isHTMLSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return openTag{}, 0, fmt.Errorf("Unclosed start tag at byte offset %d", begin)
		}
		if s[i] != '=' {
			if name == "blockquote" && attr == "expandable" {
				attrs[attr] = ""
				continue
			}
			return openTag{}, 0, fmt.Errorf("Expected equal sign in declaration of an attribute of the tag %q at byte offset %d", name, begin)
		}
		i++
		for i < len(s) && isHTMLSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return openTag{}, 0, fmt.Errorf("Unclosed start tag at byte offset %d", begin)
		}
		var value strings.Builder
		if q := s[i]; q == '"' || q == '\'' {
			i++
			for i < len(s) && s[i] != q {
				if s[i] == '&' {
					r, n, ok := decodeEntity(s[i:])
					if !ok {
						return openTag{}, 0, fmt.Errorf("Unsupported HTML entity at byte offset %d; escape '&' as &amp;", i)
					}
					value.WriteRune(r)
					i += n
					continue
				}
				value.WriteByte(s[i])
				i++
			}
			if i >= len(s) {
				return openTag{}, 0, fmt.Errorf("Unclosed start tag at byte offset %d", begin)
			}
			i++
		} else {
			tokenStart := i
			for i < len(s) && (isASCIIAlnum(s[i]) || s[i] == '.' || s[i] == '-') {
				i++
			}
			if i >= len(s) || (!isHTMLSpace(s[i]) && s[i] != '>') {
				return openTag{}, 0, fmt.Errorf("Unexpected end of name token at byte offset %d", tokenStart)
			}
			value.WriteString(strings.ToLower(s[tokenStart:i]))
		}
		attrs[attr] = value.String()
	}

	switch name {
	case "a":
		t.url = attrs["href"]
	case "span":
		if attrs["class"] != "tg-spoiler" {
			return openTag{}, 0, fmt.Errorf("Tag \"span\" must have class \"tg-spoiler\" at byte offset %d", begin)
		}
	case "tg-emoji":
		id := attrs["emoji-id"]
		if _, err := strconv.ParseInt(id, 10, 64); err != nil {
			return openTag{}, 0, fmt.Errorf("Invalid custom emoji identifier specified at byte offset %d", begin)
		}
		t.customEmoji = id
	case "blockquote":
		if _, ok := attrs["expandable"]; ok {
			t.entityType = "expandable_blockquote"
		}
	case "code":
		// <pre><code class="language-go"> turns the enclosing pre into a pre with a language.
		if lang, ok := strings.CutPrefix(attrs["class"], "language-"); ok && len(stack) > 0 && stack[len(stack)-1].name == "pre" {
			stack[len(stack)-1].language = lang
			t.entityType = "" // merged into the pre entity
		}
	}
	return t, i, nil
}

func closeTag(s string, begin int, stack []openTag, utf16Pos int) ([]openTag, *MessageEntity, int, error) {
	i := begin + 2
	for i < len(s) && !isHTMLSpace(s[i]) && s[i] != '>' {
		i++
	}
	name := strings.ToLower(s[begin+2 : i])
	for i < len(s) && isHTMLSpace(s[i]) {
		i++
	}
	if i >= len(s) || s[i] != '>' {
		return nil, nil, 0, fmt.Errorf("Unclosed end tag at byte offset %d", begin)
	}
	i++
	if len(stack) == 0 {
		return nil, nil, 0, fmt.Errorf("Unexpected end tag at byte offset %d", begin)
	}
	top := stack[len(stack)-1]
	if name != "" && name != top.name {
		return nil, nil, 0, fmt.Errorf("Unmatched end tag at byte offset %d, expected \"</%s>\", found \"</%s>\"", begin, top.name, name)
	}
	stack = stack[:len(stack)-1]
	length := utf16Pos - top.utf16Start
	if length == 0 || top.entityType == "" {
		return stack, nil, i, nil
	}
	e := &MessageEntity{Type: top.entityType, Offset: top.utf16Start, Length: length,
		URL: top.url, Language: top.language, CustomEmojiID: top.customEmoji}
	return stack, e, i, nil
}

// decodeEntity accepts only what the docs list: &lt; &gt; &amp; &quot; and numeric
// references, each terminated by ';'.
func decodeEntity(s string) (rune, int, bool) {
	end := strings.IndexByte(s, ';')
	if end < 2 || end > 12 {
		return 0, 0, false
	}
	body := s[1:end]
	switch body {
	case "lt":
		return '<', end + 1, true
	case "gt":
		return '>', end + 1, true
	case "amp":
		return '&', end + 1, true
	case "quot":
		return '"', end + 1, true
	}
	num, ok := strings.CutPrefix(body, "#")
	if !ok || num == "" {
		return 0, 0, false
	}
	base := 10
	if h, ok := strings.CutPrefix(num, "x"); ok {
		num, base = h, 16
	} else if h, ok := strings.CutPrefix(num, "X"); ok {
		num, base = h, 16
	}
	if num == "" || strings.ContainsAny(num, "+-") {
		return 0, 0, false
	}
	v, err := strconv.ParseUint(num, base, 32)
	if err != nil || v == 0 || v > unicode.MaxRune || (v >= 0xD800 && v <= 0xDFFF) {
		return 0, 0, false
	}
	return rune(v), end + 1, true
}

func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func utf16RuneLen(r rune) int {
	if n := utf16.RuneLen(r); n > 0 {
		return n
	}
	return 1
}

// utf16Len is how Telegram measures text: in UTF-16 code units.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16RuneLen(r)
	}
	return n
}

// trimText strips the surrounding whitespace Telegram drops from message texts and shifts
// the entities to match.
func trimText(text string, entities []MessageEntity) (string, []MessageEntity) {
	trimmed := strings.TrimLeftFunc(text, unicode.IsSpace)
	shift := utf16Len(text[:len(text)-len(trimmed)])
	trimmed = strings.TrimRightFunc(trimmed, unicode.IsSpace)
	total := utf16Len(trimmed)
	var out []MessageEntity
	for _, e := range entities {
		start, end := e.Offset-shift, e.Offset+e.Length-shift
		start, end = max(start, 0), min(end, total)
		if end <= start {
			continue
		}
		e.Offset, e.Length = start, end-start
		out = append(out, e)
	}
	return trimmed, out
}

// commandEntities marks a leading /command or /command@bot the way Telegram clients do.
func commandEntities(text string) []MessageEntity {
	if !strings.HasPrefix(text, "/") {
		return nil
	}
	end := strings.IndexFunc(text, unicode.IsSpace)
	if end < 0 {
		end = len(text)
	}
	if end == 1 {
		return nil
	}
	return []MessageEntity{{Type: "bot_command", Offset: 0, Length: utf16Len(text[:end])}}
}
