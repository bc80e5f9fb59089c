package orderview

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

// valid asserts that Telegram would accept s and returns its visible length.
func valid(t testing.TB, s string) int {
	t.Helper()
	n, err := faketelegram.ValidateHTML(s)
	if err != nil {
		t.Fatalf("Telegram would reject the message: %v\n%s", err, s)
	}
	if n > MaxLen {
		t.Fatalf("visible length %d > %d", n, MaxLen)
	}
	return n
}

func cf(id int64, name, typ string, vals ...any) amocrm.CustomFieldValue {
	v := amocrm.CustomFieldValue{FieldID: id, FieldName: name, FieldType: typ}
	for _, x := range vals {
		v.Values = append(v.Values, amocrm.CustomFieldItem{Value: x})
	}
	return v
}

func msk(t testing.TB) *time.Location {
	t.Helper()
	return location(nil)
}

func TestCatalogParity(t *testing.T) {
	keys := func(lang string) []string {
		var out []string
		for k := range catalog[lang] {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if ru, en := keys("ru"), keys("en"); !slices.Equal(ru, en) {
		t.Fatalf("ru and en keys differ:\nru=%v\nen=%v", ru, en)
	}
	for k := range catalog["ru"] {
		if strings.Count(catalog["ru"][k], "%") != strings.Count(catalog["en"][k], "%") {
			t.Errorf("%s: placeholders differ", k)
		}
	}
	if normLang("EN-us") != "en" || normLang("") != "ru" || normLang("de") != "ru" {
		t.Fatal("language normalisation")
	}
}

func TestFormatField(t *testing.T) {
	loc := msk(t)
	// 1700000000 is 2023-11-14 22:13:20 UTC, already the 15th in Moscow.
	tests := []struct {
		typ    string
		vals   []any
		ru, en string // "" = field skipped
		link   bool
	}{
		{"numeric", []any{15000.0}, "15\u00a0000", "15,000", false},
		{"numeric", []any{"15000.5"}, "15\u00a0000,5", "15,000.5", false},
		{"numeric", []any{1234567.25}, "1\u00a0234\u00a0567,25", "1,234,567.25", false},
		{"numeric", []any{"-1500"}, "-1\u00a0500", "-1,500", false},
		{"numeric", []any{"999"}, "999", "999", false},
		{"numeric", []any{"0.1"}, "0,1", "0.1", false},
		{"numeric", []any{"1e3"}, "1\u00a0000", "1,000", false},
		{"numeric", []any{"много"}, "много", "много", false},
		{"monetary", []any{"2500"}, "2\u00a0500", "2,500", false},
		{"price", []any{99.99}, "99,99", "99.99", false},
		{"date", []any{1700000000.0}, "15.11.2023", "Nov 15, 2023", false},
		{"date", []any{"1700000000"}, "15.11.2023", "Nov 15, 2023", false},
		{"date", []any{"2024-03-08T10:00:00+03:00"}, "08.03.2024", "Mar 8, 2024", false},
		{"date", []any{"2024-03-08"}, "08.03.2024", "Mar 8, 2024", false},
		{"date", []any{"02.02.1978"}, "02.02.1978", "Feb 2, 1978", false},
		{"date", []any{"завтра"}, "завтра", "завтра", false},
		{"date", []any{1e300}, "1" + strings.Repeat("0", 300), "1" + strings.Repeat("0", 300), false},
		{"birthday", []any{"1990-05-17"}, "17.05.1990", "May 17, 1990", false},
		{"date_time", []any{1700000000.0}, "15.11.2023 01:13", "Nov 15, 2023 01:13", false},
		{"date_time", []any{"2024-03-08 09:05:00"}, "08.03.2024 09:05", "Mar 8, 2024 09:05", false},
		{"checkbox", []any{true}, "да", "yes", false},
		{"checkbox", []any{false}, "нет", "no", false},
		{"checkbox", []any{"1"}, "да", "yes", false},
		{"checkbox", []any{"0"}, "нет", "no", false},
		{"multiselect", []any{"Сборка", "Доставка"}, "Сборка, Доставка", "Сборка, Доставка", false},
		{"select", []any{"Москва"}, "Москва", "Москва", false},
		{"radiobutton", []any{"Наличные"}, "Наличные", "Наличные", false},
		{"textarea", []any{"  строка 1\r\nстрока 2  "}, "строка 1\nстрока 2", "строка 1\nстрока 2", false},
		{"url", []any{"https://example.com/a?b=1&c=2"}, "https://example.com/a?b=1&c=2", "https://example.com/a?b=1&c=2", true},
		{"url", []any{"javascript:alert(1)"}, "javascript:alert(1)", "javascript:alert(1)", false},
		{"url", []any{"ftp://example.com/x"}, "ftp://example.com/x", "ftp://example.com/x", false},
		{"url", []any{"example.com"}, "example.com", "example.com", false},
		{"legal_entity", []any{map[string]any{"name": "ООО Ромашка", "vat_id": "7700000000"}}, "ООО Ромашка", "ООО Ромашка", false},
		{"smart_address", []any{map[string]any{"zip": "101000", "city": "Москва"}}, "Москва, 101000", "Москва, 101000", false},
		{"text", []any{"a\x00b\x1bc"}, "abc", "abc", false},
		{"text", []any{"bad \xff utf8"}, "bad \uFFFD utf8", "bad \uFFFD utf8", false},
		{"text", []any{""}, "", "", false},
		{"text", []any{"   "}, "", "", false},
		{"text", []any{nil}, "", "", false},
		{"numeric", nil, "", "", false},
	}
	for _, tt := range tests {
		for _, lang := range []string{"ru", "en"} {
			want := tt.ru
			if lang == "en" {
				want = tt.en
			}
			t.Run(fmt.Sprintf("%s/%s/%v", tt.typ, lang, tt.vals), func(t *testing.T) {
				var items []amocrm.CustomFieldItem
				for _, v := range tt.vals {
					items = append(items, amocrm.CustomFieldItem{Value: v})
				}
				v, ok := formatField(tt.typ, items, lang, loc)
				if want == "" {
					if ok {
						t.Fatalf("got %q, want the field skipped", v.text)
					}
					return
				}
				if !ok || v.text != want {
					t.Fatalf("got %q (ok=%v), want %q", v.text, ok, want)
				}
				if (v.href != "") != tt.link {
					t.Fatalf("href %q, want link=%v", v.href, tt.link)
				}
				// The same value inside a real message must be valid too.
				lead := amocrm.Lead{ID: 1, CustomFieldsValues: []amocrm.CustomFieldValue{cf(5, "F", tt.typ, tt.vals...)}}
				out := Group(lead, Options{Lang: lang})
				valid(t, out)
				if tt.link && !strings.Contains(out, `<a href="https://example.com/a?b=1&amp;c=2">`) {
					t.Fatalf("no link in %s", out)
				}
				if !tt.link && strings.Contains(out, "<a ") {
					t.Fatalf("unexpected link in %s", out)
				}
			})
		}
	}
}

func TestFormatMoney(t *testing.T) {
	tests := []struct {
		amount         int64
		currency       string
		wantRU, wantEN string
	}{
		{15000, "RUB", "15\u00a0000\u00a0₽", "₽15,000"},
		{15000, "usd", "15\u00a0000\u00a0$", "$15,000"},
		{1500000, "EUR", "1\u00a0500\u00a0000\u00a0€", "€1,500,000"},
		{700, "KZT", "700\u00a0₸", "₸700"},
		{15000, "CHF", "15\u00a0000\u00a0CHF", "CHF\u00a015,000"},
		{-2500, "USD", "-2\u00a0500\u00a0$", "-$2,500"},
		{0, "RUB", "0\u00a0₽", "₽0"},
		{42, "", "42", "42"},
	}
	for _, tt := range tests {
		if got := formatMoney(tt.amount, tt.currency, "ru"); got != tt.wantRU {
			t.Errorf("ru %d %s = %q, want %q", tt.amount, tt.currency, got, tt.wantRU)
		}
		if got := formatMoney(tt.amount, tt.currency, "en"); got != tt.wantEN {
			t.Errorf("en %d %s = %q, want %q", tt.amount, tt.currency, got, tt.wantEN)
		}
	}
}

func sampleLead() amocrm.Lead {
	return amocrm.Lead{
		ID: 41275533, Name: "Доставка дивана", Price: 15000,
		CustomFieldsValues: []amocrm.CustomFieldValue{
			cf(3, "Комментарий", "textarea", "Позвонить за час"),
			cf(1, "Адрес", "text", "ул. Ленина, 5"),
			cf(2, "Дата доставки", "date", 1700000000.0),
			cf(4, "Пустое", "text", ""),
			cf(9, "Not in account", "checkbox", true),
		},
		Contacts: []amocrm.LeadContact{{ID: 77, IsMain: true}},
	}
}

var sampleFields = []Field{{ID: 1, Name: "Адрес", Type: "text"}, {ID: 2, Name: "Дата доставки", Type: "date"}, {ID: 3, Name: "Комментарий", Type: "textarea"}, {ID: 4, Name: "Пустое", Type: "text"}}

func TestGroupLayout(t *testing.T) {
	o := Options{Currency: "RUB", Fields: sampleFields, ShowBudget: true}
	want := "📦 <b>Заказ №41275533</b>\n<b>Доставка дивана</b>\n\n" +
		"Бюджет: 15\u00a0000\u00a0₽\nАдрес: ул. Ленина, 5\nДата доставки: 15.11.2023\nКомментарий: Позвонить за час\nNot in account: да"
	if got := Group(sampleLead(), o); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	o.Lang = "en"
	want = "📦 <b>Order #41275533</b>\n<b>Доставка дивана</b>\n\n" +
		"Budget: ₽15,000\nАдрес: ул. Ленина, 5\nДата доставки: Nov 15, 2023\nКомментарий: Позвонить за час\nNot in account: yes"
	got := Group(sampleLead(), o)
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	valid(t, got)

	// Nothing but the header when the deal has no name, budget or fields.
	if got := Group(amocrm.Lead{ID: 5}, Options{}); got != "📦 <b>Заказ №5</b>" {
		t.Fatalf("bare lead: %q", got)
	}
}

func TestFieldSelection(t *testing.T) {
	lead := sampleLead()
	fields := func(o Options) []string {
		var names []string
		for _, f := range selectFields(lead, o) {
			names = append(names, f.name)
		}
		return names
	}
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"default: account order, then unknown", Options{Fields: sampleFields}, []string{"Адрес", "Дата доставки", "Комментарий", "Пустое", "Not in account"}},
		{"no account fields: lead order", Options{}, []string{"Комментарий", "Адрес", "Дата доставки", "Пустое", "Not in account"}},
		{"selected, account order", Options{Fields: sampleFields, ShowFieldIDs: []int64{3, 9, 1}}, []string{"Адрес", "Комментарий", "Not in account"}},
		{"empty selection", Options{Fields: sampleFields, ShowFieldIDs: []int64{}}, nil},
		{"selected id the lead lacks", Options{Fields: sampleFields, ShowFieldIDs: []int64{404}}, nil},
		{"account name wins", Options{Fields: []Field{{ID: 1, Name: "Куда везти"}}, ShowFieldIDs: []int64{1}}, []string{"Куда везти"}},
	}
	for _, tt := range tests {
		if got := fields(tt.o); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	// Account type overrides the lead's (amoCRM omits field_type in some responses).
	lead.CustomFieldsValues = []amocrm.CustomFieldValue{{FieldID: 2, Values: []amocrm.CustomFieldItem{{Value: 1700000000.0}}}}
	if out := Group(lead, Options{Fields: sampleFields}); !strings.Contains(out, "Дата доставки: 15.11.2023") {
		t.Fatalf("type from account fields not used:\n%s", out)
	}
}

func TestEscaping(t *testing.T) {
	evil := `<script>&"x</script> &amp; &#39;`
	escaped := `&lt;script&gt;&amp;&quot;x&lt;/script&gt; &amp;amp; &amp;#39;`
	lead := amocrm.Lead{ID: 1, Name: evil, CustomFieldsValues: []amocrm.CustomFieldValue{
		cf(1, evil, "text", evil),
		cf(2, "multi", "multiselect", evil, evil),
		cf(3, "link", "url", `https://example.com/?q="><b>`),
	}}
	contact := &amocrm.Contact{Name: evil, CustomFieldsValues: []amocrm.CustomFieldValue{
		{FieldCode: "EMAIL", Values: []amocrm.CustomFieldItem{{Value: evil}}},
		{FieldCode: "PHONE", Values: []amocrm.CustomFieldItem{{Value: evil}}},
	}}
	e := Executor{FirstName: evil, Username: evil}
	o := Options{Lang: "ru", Currency: `<b>`, ShowBudget: true}
	for name, out := range map[string]string{
		"group":   Group(lead, o),
		"private": Private(lead, contact, o),
		"taken":   Taken(lead, e, time.Unix(1700000000, 0), o),
	} {
		valid(t, out)
		if strings.Contains(out, "<script") || strings.Contains(out, "&#39;") && !strings.Contains(out, "&amp;#39;") {
			t.Errorf("%s: unescaped input:\n%s", name, out)
		}
		if !strings.Contains(out, escaped) {
			t.Errorf("%s: want %q in\n%s", name, escaped, out)
		}
		// Only the renderer's own tags may appear.
		for _, tag := range regexp.MustCompile(`<[^>]*>`).FindAllString(out, -1) {
			if !regexp.MustCompile(`^</?(b|a)( href="[^"<>]*")?>$`).MatchString(tag) {
				t.Errorf("%s: unexpected tag %q", name, tag)
			}
		}
	}
	if got := Group(lead, o); !strings.Contains(got, `<a href="https://example.com/?q=&quot;&gt;&lt;b&gt;">`) {
		t.Errorf("url with quotes not escaped in href:\n%s", got)
	}
}

func contactWith(phones, emails []string) *amocrm.Contact {
	c := &amocrm.Contact{ID: 77, FirstName: "Иван", LastName: "Петров"}
	var p, e amocrm.CustomFieldValue
	p.FieldCode, e.FieldCode = "PHONE", "EMAIL"
	for _, s := range phones {
		p.Values = append(p.Values, amocrm.CustomFieldItem{Value: s, EnumCode: "WORK"})
	}
	for _, s := range emails {
		e.Values = append(e.Values, amocrm.CustomFieldItem{Value: s})
	}
	c.CustomFieldsValues = []amocrm.CustomFieldValue{p, e}
	return c
}

func TestPrivateContacts(t *testing.T) {
	c := contactWith(
		[]string{"8 (999) 123-45-67", "+7 999 765 43 21", "9161234567", "+44 20 7946 0958", "доб. 12", "+7 (495) 111-22-33 доб. 4567"},
		[]string{"ivan@example.com", "not an email", "a@b.c?subject=hi"},
	)
	out := Private(sampleLead(), c, Options{Fields: sampleFields})
	valid(t, out)
	for _, want := range []string{
		"👤 Клиент: Иван Петров\n",
		`📞 <a href="tel:+79991234567">+7 999 123-45-67</a>`,
		`📞 <a href="tel:+79997654321">+7 999 765-43-21</a>`,
		`📞 <a href="tel:+79161234567">+7 916 123-45-67</a>`,
		`📞 <a href="tel:+442079460958">+44 20 7946 0958</a>`,
		"📞 доб. 12\n",
		`✉️ <a href="mailto:ivan@example.com">ivan@example.com</a>`,
		"✉️ not an email\n",
		"✉️ a@b.c?subject=hi\n",
		"\n\n📦 <b>Заказ №41275533</b>\n<b>Доставка дивана</b>\n\nАдрес: ул. Ленина, 5",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	// Only the first maxContactValues phones: the sixth (with an extension) is left out.
	if strings.Contains(out, "доб. 4567") {
		t.Errorf("more than %d phones shown:\n%s", maxContactValues, out)
	}
	if got := Private(amocrm.Lead{ID: 3}, nil, Options{Lang: "en"}); got != "📦 <b>Order #3</b>" {
		t.Errorf("nil contact: %q", got)
	}
	if got := Private(amocrm.Lead{ID: 3}, &amocrm.Contact{Name: "Ann"}, Options{Lang: "en"}); got != "👤 Client: Ann\n\n📦 <b>Order #3</b>" {
		t.Errorf("contact without phones: %q", got)
	}
}

func TestGroupNeverShowsContact(t *testing.T) {
	c := contactWith([]string{"+7 999 123-45-67"}, []string{"secret@example.com"})
	lead := sampleLead()
	for _, lang := range []string{"ru", "en"} {
		o := Options{Lang: lang, Fields: sampleFields, ShowBudget: true}
		for _, out := range []string{Group(lead, o), Taken(lead, Executor{FirstName: "A"}, time.Now(), o)} {
			valid(t, out)
			for _, leak := range []string{"999", "123-45-67", "79991234567", "secret@", "tel:", "mailto:", "Петров"} {
				if strings.Contains(out, leak) {
					t.Fatalf("group message leaks %q:\n%s", leak, out)
				}
			}
		}
		if p := Private(lead, c, o); !strings.Contains(p, "tel:+79991234567") || !strings.Contains(p, "secret@example.com") {
			t.Fatalf("private message lacks the contact:\n%s", p)
		}
	}
}

func TestTaken(t *testing.T) {
	at := time.Date(2024, 1, 2, 12, 4, 0, 0, time.UTC)
	e := Executor{TelegramID: 5, FirstName: "Иван", LastName: "Петров", Username: "ivan"}
	got := Taken(sampleLead(), e, at, Options{Fields: sampleFields})
	valid(t, got)
	if !strings.HasSuffix(got, "\n\n✅ Исполнитель найден: Иван Петров (@ivan)\n🕒 Взят в работу: 02.01.2024 15:04") {
		t.Fatalf("ru:\n%s", got)
	}
	got = Taken(sampleLead(), e, at, Options{Lang: "en", Location: time.UTC})
	valid(t, got)
	if !strings.HasSuffix(got, "\n\n✅ Executor found: Иван Петров (@ivan)\n🕒 Taken: Jan 2, 2024 12:04") {
		t.Fatalf("en:\n%s", got)
	}
	if got := Taken(amocrm.Lead{ID: 1}, e, time.Time{}, Options{}); strings.Contains(got, "🕒") {
		t.Fatalf("zero time shown:\n%s", got)
	}
}

func TestExecutorLabel(t *testing.T) {
	tests := []struct {
		e    Executor
		want string
	}{
		{Executor{FirstName: "Иван", LastName: "Петров", Username: "ivan"}, "Иван Петров (@ivan)"},
		{Executor{FirstName: "Иван", Username: "@ivan"}, "Иван (@ivan)"},
		{Executor{FirstName: " Иван\n", LastName: ""}, "Иван"},
		{Executor{Username: "ivan"}, "@ivan"},
		{Executor{TelegramID: 42}, "id 42"},
		{Executor{FirstName: "<b>&", Username: "x"}, "<b>& (@x)"}, // plain text: escaping is the caller's job
	}
	for _, tt := range tests {
		if got := ExecutorLabel(tt.e); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestLongDealIsCut(t *testing.T) {
	lead := amocrm.Lead{ID: 9, Name: "Большой заказ", Price: 1}
	var fields []Field
	for i := range 300 {
		id := int64(1000 + i)
		// Cyrillic, an emoji (two UTF-16 units) and characters that escape to
		// entities, so that bytes, runes and units all differ.
		val := fmt.Sprintf("%03d %s", i, strings.Repeat("значение & <тег> 😀 ", 10))
		lead.CustomFieldsValues = append(lead.CustomFieldsValues, cf(id, fmt.Sprintf("Поле %d", i), "text", val))
		fields = append(fields, Field{ID: id, Name: fmt.Sprintf("Поле %d", i), Type: "text"})
	}
	e := Executor{FirstName: "Иван", Username: "ivan"}
	c := contactWith([]string{"+79991234567"}, []string{"a@example.com"})
	for _, lang := range []string{"ru", "en"} {
		o := Options{Lang: lang, Fields: fields, ShowBudget: true, Currency: "RUB"}
		for name, out := range map[string]string{
			"group":   Group(lead, o),
			"private": Private(lead, c, o),
			"taken":   Taken(lead, e, time.Unix(1700000000, 0), o),
		} {
			n := valid(t, out)
			if n < MaxLen-300 {
				t.Errorf("%s/%s: only %d units used, the cut wastes room", lang, name, n)
			}
			if !strings.HasPrefix(out, "📦") && name != "private" {
				t.Errorf("%s/%s: header lost", lang, name)
			}
			if !strings.Contains(out, "Поле 0: 000") || strings.Contains(out, "Поле 299") {
				t.Errorf("%s/%s: fields not kept from the top", lang, name)
			}
			if name == "taken" && !strings.Contains(out, "(@ivan)\n🕒") {
				t.Errorf("%s: executor line lost:\n%s", lang, out[len(out)-300:])
			}
			if name == "private" && !strings.Contains(out, "tel:+79991234567") {
				t.Errorf("%s: phone lost", lang)
			}
			if name != "taken" && !strings.HasSuffix(out, ellipsis) {
				t.Errorf("%s/%s: no trailing ellipsis: %q", lang, name, out[len(out)-50:])
			}
		}
	}
}

func TestSingleHugeValueIsCut(t *testing.T) {
	huge := strings.Repeat("&😀ж<", 3000) // 15000 units
	lead := amocrm.Lead{ID: 1, Name: huge, CustomFieldsValues: []amocrm.CustomFieldValue{
		cf(1, huge, "text", "short"),
		cf(2, "Описание", "textarea", huge),
		cf(3, "После", "text", "dropped"),
		cf(4, "Ссылка", "url", "https://example.com/"+strings.Repeat("a", 5000)),
	}}
	out := Taken(lead, Executor{FirstName: huge, LastName: huge, Username: huge}, time.Unix(0, 0), Options{})
	n := valid(t, out)
	if n < MaxLen-20 {
		t.Errorf("visible %d: the long value should fill the message", n)
	}
	if !strings.Contains(out, "Описание: &amp;😀ж&lt;") || strings.Contains(out, "dropped") || strings.Contains(out, "<a ") {
		t.Errorf("unexpected cut:\n%.400s", out)
	}
	if !strings.Contains(out, "…\n\n✅ Исполнитель найден: &amp;😀") {
		t.Errorf("cut value or executor line missing")
	}
	// Caps on the lines that are never dropped.
	if n := valid(t, strings.Split(out, "\n")[1]); n != maxDealName {
		t.Errorf("deal name is %d units, want the cap %d", n, maxDealName)
	}
}

func TestCutHelpers(t *testing.T) {
	if got := cutUnits("ab😀cd", 3); got != "ab" {
		t.Errorf("cutUnits split a surrogate pair: %q", got)
	}
	if got := cutUnits("ab  cd", 4); got != "ab" {
		t.Errorf("cutUnits kept trailing space: %q", got)
	}
	if got := capUnits("abcdef", 4); got != "abc…" || utf16Len(got) != 4 {
		t.Errorf("capUnits = %q", got)
	}
	if got := capUnits("abc", 4); got != "abc" {
		t.Errorf("capUnits = %q", got)
	}
}

// FuzzRender drives the three renderers with hostile deal data and checks the
// invariants the bot relies on: Telegram accepts the message, it fits, and the
// group post never carries the client's phone.
func FuzzRender(f *testing.F) {
	f.Add("Доставка дивана", "Адрес", "ул. Ленина, 5", "text", "ru", "+7 999 123-45-67", int64(41275533), int64(15000), "Иван", 1)
	f.Add(`<script>&"`, `<b>`, `&amp;`, "url", "en", "8 (916) 000-11-22", int64(1), int64(-5), "@x", 300)
	f.Add("😀😀😀", "date", "1700000000", "date", "EN", "+44 20 7946 0958", int64(0), int64(0), "", 0)
	f.Add("x", "n", "1e400", "numeric", "", "9161234567", int64(7), int64(1<<62), "\xff", 50)
	f.Add("x", "c", "javascript:alert(1)", "url", "ru", "12", int64(7), int64(1), "a", 2)
	f.Fuzz(func(t *testing.T, name, fieldName, fieldValue, fieldType, lang, phone string, id, price int64, exec string, repeat int) {
		repeat = min(max(repeat, 0), 400)
		lead := amocrm.Lead{ID: id, Name: name, Price: price}
		var fields []Field
		for i := range repeat + 1 {
			fid := int64(i + 1)
			lead.CustomFieldsValues = append(lead.CustomFieldsValues, cf(fid, fieldName, fieldType, fieldValue, fieldValue+name))
			fields = append(fields, Field{ID: fid, Name: fieldName, Type: fieldType})
		}
		contact := contactWith([]string{phone}, []string{fieldValue})
		o := Options{Lang: lang, Currency: fieldName, Fields: fields, ShowBudget: price%2 == 0}
		e := Executor{TelegramID: id, FirstName: exec, LastName: name, Username: exec}

		group := Group(lead, o)
		private := Private(lead, contact, o)
		taken := Taken(lead, e, time.Unix(price%(1<<33), 0), o)
		for _, out := range []string{group, private, taken} {
			valid(t, out)
		}
		if label := ExecutorLabel(e); label == "" {
			t.Fatal("empty executor label")
		}

		// The phone can only be in the group post if the deal data itself
		// contains it; only distinctive phones are checked.
		p := strings.TrimSpace(phone)
		digits := regexp.MustCompile(`\D`).ReplaceAllString(p, "")
		if len(digits) < 7 {
			return
		}
		inputs := strings.Join([]string{name, fieldName, fieldValue, exec, fmt.Sprint(id), fmt.Sprint(price)}, "\x00")
		inputDigits := regexp.MustCompile(`\D`).ReplaceAllString(inputs, "")
		if strings.Contains(inputs, p) || strings.Contains(inputs, escape(p)) || strings.Contains(inputDigits, digits) {
			return
		}
		for _, leak := range []string{escape(p), "tel:"} {
			if strings.Contains(group, leak) || strings.Contains(taken, leak) {
				t.Fatalf("group post leaks the contact phone %q:\n%s", phone, group)
			}
		}
	})
}

// The assertions above are only as strong as the validator; make sure it
// rejects what an escaping bug would produce.
func TestValidatorCatchesBadHTML(t *testing.T) {
	for _, bad := range []string{"<script>x</script>", "a & b", "<b>open", "a < b", "\xff", "  \n "} {
		if _, err := faketelegram.ValidateHTML(bad); err == nil {
			t.Errorf("ValidateHTML(%q) accepted invalid input", bad)
		}
	}
	if n, err := faketelegram.ValidateHTML(" <b>&lt;😀</b>\n"); err != nil || n != 3 {
		t.Errorf("ValidateHTML = %d, %v; want 3 visible units", n, err)
	}
}

func TestMaskContacts(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Входящий звонок +7 916 555-12-34", "Входящий звонок +* *** ***-**-34"},
		{"Звонок с 89165551234", "Звонок с *********34"},
		{"тел. 8 (916) 555 12 34, Иван", "тел. * (***) *** ** 34, Иван"},
		{"перезвонить 555-12-34", "перезвонить ***-**-34"},
		{"+44 20 7946 0958", "+** ** **** **58"},
		{"Заявка с сайта ivan.petrov@mail.ru", "Заявка с сайта i***@***"},
		{"почта: оля@пример.рф", "почта: о***@***"},
		// Not contacts: dates, times, prices, order numbers, flats.
		{"доставка 30.11.2026 к 14:05", "доставка 30.11.2026 к 14:05"},
		{"2026-11-30", "2026-11-30"},
		{"бюджет 150 000 ₽, заказ №41275533", "бюджет 150 000 ₽, заказ №41275533"},
		{"ул. Ленина, д. 5, кв. 12", "ул. Ленина, д. 5, кв. 12"},
		{"", ""},
	} {
		if got := maskContacts(c.in); got != c.want {
			t.Errorf("maskContacts(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// A deal created by telephony or a site form carries the caller's contact in
// its name and text fields; the group sees neither, the executor sees both.
func TestGroupMasksClientContacts(t *testing.T) {
	const executorField = 99
	lead := amocrm.Lead{ID: 7, Name: "Входящий звонок +7 916 555-12-34", CustomFieldsValues: []amocrm.CustomFieldValue{
		cf(1, "Комментарий", "textarea", "перезвонить на 8 916 555 12 34 или ivan@example.com"),
		cf(2, "Сайт", "url", "https://wa.me/79165551234"),
		{FieldID: 3, FieldName: "Телефон", FieldType: "multitext", FieldCode: "PHONE", Values: []amocrm.CustomFieldItem{{Value: "+79160000001"}}},
		cf(4, "Реквизиты", "legal_entity", map[string]any{"name": "ООО Ромашка", "vat_id": "7700000000"}),
		cf(5, "Адрес", "text", "ул. Ленина, 5"),
		cf(executorField, "Исполнитель (amoDispatch)", "text", "Пётр (@petr), Telegram ID 1001"),
	}}
	o := Options{HiddenFieldIDs: []int64{executorField}}
	for name, out := range map[string]string{
		"group": Group(lead, o),
		"taken": Taken(lead, Executor{FirstName: "Пётр"}, time.Unix(1700000000, 0), o),
	} {
		valid(t, out)
		for _, leak := range []string{"555-12-34", "555 12 34", "79165551234", "ivan@example.com", "+79160000001", "Ромашка", "Телефон", "Telegram ID 1001"} {
			if strings.Contains(out, leak) {
				t.Errorf("%s: %q reaches the group:\n%s", name, leak, out)
			}
		}
		for _, want := range []string{"<b>Входящий звонок +* *** ***-**-34</b>", "Комментарий: перезвонить на * *** *** ** 34 или i***@***", "Сайт: https://wa.me/*********34\n", "Адрес: ул. Ленина, 5"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: want %q in\n%s", name, want, out)
			}
		}
	}
	priv := Private(lead, nil, o)
	for _, want := range []string{"Входящий звонок +7 916 555-12-34", "8 916 555 12 34 или ivan@example.com", "+79160000001", "ООО Ромашка"} {
		if !strings.Contains(priv, want) {
			t.Errorf("private: want %q in\n%s", want, priv)
		}
	}
	if strings.Contains(priv, "Telegram ID 1001") {
		t.Errorf("private: the executor field is shown:\n%s", priv)
	}
	// An account field's code counts when the deal's value omits it.
	lead.CustomFieldsValues = []amocrm.CustomFieldValue{{FieldID: 3, Values: []amocrm.CustomFieldItem{{Value: "не звонить"}}}}
	if out := Group(lead, Options{Fields: []Field{{ID: 3, Name: "Телефон", Type: "text", Code: "PHONE"}}}); strings.Contains(out, "не звонить") {
		t.Errorf("a PHONE-coded field reaches the group:\n%s", out)
	}
}
