package sandbox

import (
	"html"
	"net/url"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

// renderHTML shows a message as a Telegram client does: from its text and
// entities (what Telegram parsed out of the bot's HTML), not from the HTML
// the bot sent, so every character is escaped and only tags chosen here
// reach the page.
func renderHTML(text string, entities []faketelegram.MessageEntity) string {
	units := utf16.Encode([]rune(text))
	ents := slices.Clone(entities)
	// Outer entities first: Telegram's entities nest, so a stack suffices.
	slices.SortStableFunc(ents, func(a, b faketelegram.MessageEntity) int {
		if a.Offset != b.Offset {
			return a.Offset - b.Offset
		}
		return b.Length - a.Length
	})
	var (
		out   strings.Builder
		stack []faketelegram.MessageEntity
		next  int
	)
	for i := 0; i <= len(units); {
		for len(stack) > 0 && stack[len(stack)-1].Offset+stack[len(stack)-1].Length <= i {
			out.WriteString(closeTag(stack[len(stack)-1]))
			stack = stack[:len(stack)-1]
		}
		if i == len(units) {
			break
		}
		for next < len(ents) && ents[next].Offset <= i {
			e := ents[next]
			next++
			if e.Length <= 0 || e.Offset < i {
				continue // empty or starting inside a surrogate pair
			}
			if n := len(stack); n > 0 && e.Offset+e.Length > stack[n-1].Offset+stack[n-1].Length {
				continue // crosses its parent's end: shown as plain text
			}
			out.WriteString(openTag(e))
			stack = append(stack, e)
		}
		n := 1
		if utf16.IsSurrogate(rune(units[i])) && i+1 < len(units) {
			n = 2
		}
		out.WriteString(html.EscapeString(string(utf16.Decode(units[i : i+n]))))
		i += n
	}
	return out.String()
}

var entityTags = map[string]string{
	"bold": "b", "italic": "i", "underline": "u", "strikethrough": "s",
	"code": "code", "pre": "pre", "blockquote": "blockquote",
}

func openTag(e faketelegram.MessageEntity) string {
	if t, ok := entityTags[e.Type]; ok {
		return "<" + t + ">"
	}
	switch e.Type {
	case "text_link":
		if u, err := url.Parse(e.URL); err == nil && (u.Scheme == "https" || u.Scheme == "http" || u.Scheme == "tg") {
			return `<a href="` + html.EscapeString(e.URL) + `" target="_blank" rel="noopener noreferrer">`
		}
		return "<span>"
	case "spoiler":
		return `<span class="tg-spoiler">`
	}
	return `<span class="tg-` + html.EscapeString(e.Type) + `">`
}

func closeTag(e faketelegram.MessageEntity) string {
	if t, ok := entityTags[e.Type]; ok {
		return "</" + t + ">"
	}
	if e.Type == "text_link" {
		if u, err := url.Parse(e.URL); err == nil && (u.Scheme == "https" || u.Scheme == "http" || u.Scheme == "tg") {
			return "</a>"
		}
	}
	return "</span>"
}
