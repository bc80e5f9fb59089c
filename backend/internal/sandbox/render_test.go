package sandbox

import (
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

func TestRenderHTML(t *testing.T) {
	e := func(typ string, off, n int) faketelegram.MessageEntity {
		return faketelegram.MessageEntity{Type: typ, Offset: off, Length: n}
	}
	for _, tc := range []struct {
		name, text string
		ents       []faketelegram.MessageEntity
		want       string
	}{
		{"plain text is escaped", `<b>"x" & y</b>`, nil, `&lt;b&gt;&#34;x&#34; &amp; y&lt;/b&gt;`},
		{"bold", "Заказ 1", []faketelegram.MessageEntity{e("bold", 0, 5)}, "<b>Заказ</b> 1"},
		{"nested", "ab cd", []faketelegram.MessageEntity{e("bold", 0, 5), e("italic", 3, 2)}, "<b>ab <i>cd</i></b>"},
		// Offsets count UTF-16 units: the emoji is two.
		{"after an emoji", "📦 Заказ", []faketelegram.MessageEntity{e("bold", 3, 5)}, "📦 <b>Заказ</b>"},
		{"link", "тут", []faketelegram.MessageEntity{{Type: "text_link", Offset: 0, Length: 3, URL: "https://t.me/x?start=a&b"}},
			`<a href="https://t.me/x?start=a&amp;b" target="_blank" rel="noopener noreferrer">тут</a>`},
		{"a script link stays text", "x", []faketelegram.MessageEntity{{Type: "text_link", Offset: 0, Length: 1, URL: "javascript:alert(1)"}},
			"<span>x</span>"},
		{"overlap shows as text", "abcd", []faketelegram.MessageEntity{e("bold", 0, 3), e("italic", 2, 2)}, "<b>abc</b>d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := renderHTML(tc.text, tc.ents); got != tc.want {
				t.Fatalf("renderHTML(%q) = %q, want %q", tc.text, got, tc.want)
			}
		})
	}
}
