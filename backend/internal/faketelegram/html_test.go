package faketelegram

import (
	"slices"
	"testing"
)

func TestParseHTML(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		text     string
		entities []MessageEntity
		err      string
	}{
		{name: "plain", in: "hello", text: "hello"},
		{name: "bold and strong", in: "<b>a</b><strong>b</strong>", text: "ab",
			entities: []MessageEntity{{Type: "bold", Offset: 0, Length: 1}, {Type: "bold", Offset: 1, Length: 1}}},
		{name: "nested keeps outer first", in: "<b>x<i>y</i></b>", text: "xy",
			entities: []MessageEntity{{Type: "bold", Offset: 0, Length: 2}, {Type: "italic", Offset: 1, Length: 1}}},
		{name: "upper-case tags", in: "<B>x</B>", text: "x", entities: []MessageEntity{{Type: "bold", Length: 1}}},
		{name: "all simple tags", in: "<u>1</u><ins>2</ins><s>3</s><strike>4</strike><del>5</del><em>6</em><tg-spoiler>7</tg-spoiler><code>8</code><blockquote>9</blockquote>",
			text: "123456789", entities: []MessageEntity{{Type: "underline", Offset: 0, Length: 1}, {Type: "underline", Offset: 1, Length: 1},
				{Type: "strikethrough", Offset: 2, Length: 1}, {Type: "strikethrough", Offset: 3, Length: 1}, {Type: "strikethrough", Offset: 4, Length: 1},
				{Type: "italic", Offset: 5, Length: 1}, {Type: "spoiler", Offset: 6, Length: 1}, {Type: "code", Offset: 7, Length: 1},
				{Type: "blockquote", Offset: 8, Length: 1}}},
		{name: "link", in: `<a href="https://example.com/?a=1&amp;b=2">go</a>`, text: "go",
			entities: []MessageEntity{{Type: "text_link", Length: 2, URL: "https://example.com/?a=1&b=2"}}},
		{name: "single-quoted and unquoted attributes", in: `<a href='http://x.y'>1</a><span class=tg-spoiler>2</span>`, text: "12",
			entities: []MessageEntity{{Type: "text_link", Length: 1, URL: "http://x.y"}, {Type: "spoiler", Offset: 1, Length: 1}}},
		{name: "pre with language", in: `<pre><code class="language-go">x := 1</code></pre>`, text: "x := 1",
			entities: []MessageEntity{{Type: "pre", Length: 6, Language: "go"}}},
		{name: "expandable blockquote", in: `<blockquote expandable>q</blockquote>`, text: "q",
			entities: []MessageEntity{{Type: "expandable_blockquote", Length: 1}}},
		{name: "custom emoji", in: `<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>`, text: "👍",
			entities: []MessageEntity{{Type: "custom_emoji", Length: 2, CustomEmojiID: "5368324170671202286"}}},
		{name: "entities", in: "&lt;&gt;&amp;&quot;&#65;&#x42;&#X43;", text: `<>&"ABC`},
		{name: "utf16 offsets after astral chars", in: "😀<b>é</b>", text: "😀é",
			entities: []MessageEntity{{Type: "bold", Offset: 2, Length: 1}}},
		{name: "raw > is allowed", in: "a > b", text: "a > b"},
		{name: "empty tag makes no entity", in: "<b></b>x", text: "x"},
		{name: "short end tag closes innermost", in: "<b>x</>", text: "x", entities: []MessageEntity{{Type: "bold", Length: 1}}},

		{name: "unsupported tag", in: "Order <foo>", err: `Unsupported start tag "foo" at byte offset 6`},
		{name: "raw less-than", in: "1 < 2", err: `Unsupported start tag "" at byte offset 2`},
		{name: "byte offsets count bytes", in: "ж<br>", err: `Unsupported start tag "br" at byte offset 2`},
		{name: "unclosed start tag", in: "x <b", err: "Unclosed start tag at byte offset 2"},
		{name: "missing end tag", in: "<b>bold", err: `Can't find end tag corresponding to start tag "b"`},
		{name: "missing inner end tag", in: "<b><i>x</b>", err: `Unmatched end tag at byte offset 7, expected "</i>", found "</b>"`},
		{name: "stray end tag", in: "x</b>", err: "Unexpected end tag at byte offset 1"},
		{name: "unclosed end tag", in: "<b>x</b", err: "Unclosed end tag at byte offset 4"},
		{name: "span needs spoiler class", in: `<span class="x">y</span>`, err: `Tag "span" must have class "tg-spoiler" at byte offset 0`},
		{name: "attribute without value", in: `<a href>x</a>`, err: `Expected equal sign in declaration of an attribute of the tag "a" at byte offset 0`},
		{name: "bad name token", in: `<a href=x/y>x</a>`, err: "Unexpected end of name token at byte offset 8"},
		{name: "bare ampersand", in: "Tom & Jerry", err: "Unsupported HTML entity at byte offset 4; escape '&' as &amp;"},
		{name: "unknown named entity", in: "&nbsp;", err: "Unsupported HTML entity at byte offset 0; escape '&' as &amp;"},
		{name: "entity without semicolon", in: "&lt", err: "Unsupported HTML entity at byte offset 0; escape '&' as &amp;"},
		{name: "zero code point", in: "&#0;", err: "Unsupported HTML entity at byte offset 0; escape '&' as &amp;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, entities, err := parseHTML(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("parseHTML(%q) error = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseHTML(%q): %v", tt.in, err)
			}
			if text != tt.text || !slices.Equal(entities, tt.entities) {
				t.Fatalf("parseHTML(%q) = %q %+v, want %q %+v", tt.in, text, entities, tt.text, tt.entities)
			}
		})
	}
}

func TestTrimTextShiftsEntities(t *testing.T) {
	text, ents := trimText("  <b>", []MessageEntity{{Type: "bold", Offset: 1, Length: 4}})
	if text != "<b>" || !slices.Equal(ents, []MessageEntity{{Type: "bold", Offset: 0, Length: 3}}) {
		t.Fatalf("trimText = %q %+v", text, ents)
	}
	if text, _ := trimText(" \n\t ", nil); text != "" {
		t.Fatalf("whitespace-only text should trim to empty, got %q", text)
	}
}

func TestCommandEntities(t *testing.T) {
	for in, want := range map[string]int{"/start": 6, "/start@my_bot abc": 13, "hello": 0, "/": 0, "/старт x": 6} {
		got := commandEntities(in)
		if want == 0 {
			if got != nil {
				t.Errorf("%q: got %+v, want none", in, got)
			}
			continue
		}
		if len(got) != 1 || got[0].Type != "bot_command" || got[0].Offset != 0 || got[0].Length != want {
			t.Errorf("%q: got %+v, want bot_command 0..%d", in, got, want)
		}
	}
}
