package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/amodispatch/amodispatch/backend/internal/testkit"
)

const screenshotsDir = "../../../docs/screenshots"

// browser is one headless Chromium with a fresh profile; it records the
// page's uncaught exceptions.
type browser struct {
	ctx        context.Context
	mu         sync.Mutex
	exceptions []string
}

// newBrowser starts Chromium, or skips loudly when it is not installed
// (REQUIRE_CHROMIUM=1 turns that into a failure), as the widget's browser
// tests do.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	br := &browser{}
	br.ctx = testkit.Chromium(t, 1400, 1000, br.listen)
	// The widget formats dates in the browser's locale; the screenshots are Russian.
	if _, err := chromedp.Call(br.ctx, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: "ru_RU"}); err != nil {
		t.Fatalf("locale: %v", err)
	}
	return br
}

func (br *browser) listen(ev any) {
	if ev, ok := ev.(*runtime.EventExceptionThrown); ok {
		br.mu.Lock()
		br.exceptions = append(br.exceptions, testkit.Exception(ev))
		br.mu.Unlock()
	}
}

func (br *browser) noExceptions(t testing.TB) {
	t.Helper()
	br.mu.Lock()
	defer br.mu.Unlock()
	if len(br.exceptions) > 0 {
		t.Fatalf("uncaught exceptions on the page: %q", br.exceptions)
	}
}

func (br *browser) run(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	testkit.Do(t, br.ctx, steps...)
}

func eval[T any](t testing.TB, br *browser, js string) T {
	t.Helper()
	return testkit.Eval[T](t, br.ctx, js)
}

// waitText polls until the text of the first element matching sel (in the
// page, or in the card frame when inFrame) contains want.
func (br *browser) waitText(t testing.TB, sel, want string, inFrame bool) {
	t.Helper()
	doc := "document"
	if inFrame {
		doc = "(document.getElementById('card-frame').contentDocument || document.createElement('div'))"
	}
	js := fmt.Sprintf(`(function(){ var el = %s.querySelector(%q); return el ? el.textContent : ''; })()`, doc, sel)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := eval[string](t, br, js)
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never contained %q; it shows %q", sel, want, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitInt polls a JavaScript expression until it yields a non-zero number.
func (br *browser) waitInt(t testing.TB, what, js string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if n := eval[int](t, br, js); n != 0 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot saves the element under sel into docs/screenshots/name.png
// when WIDGET_SCREENSHOTS=1.
func (br *browser) screenshot(t testing.TB, sel, name string) { br.screenshotScaled(t, sel, name, 1) }

// screenshotScaled is screenshot at a scale, for views too large for 200 KB.
func (br *browser) screenshotScaled(t testing.TB, sel, name string, scale float64) {
	t.Helper()
	if os.Getenv("WIDGET_SCREENSHOTS") != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(br.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.ScreenshotScale(chromedp.CSS(sel), scale))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(png) > 200<<10 {
		t.Errorf("screenshot %s is %d KB, over the README's 200 KB", name, len(png)>>10)
	}
	if err := os.MkdirAll(screenshotsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshotsDir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s.png (%d KB)", name, len(png)>>10)
}

// The manager moves a deal to "Поиск исполнителя" on the board; the post
// appears in the group; Ivan asks for the phone and gets it privately,
// takes the order, and the board, the deal's notes, the group post and the
// widget's panel all show him as the executor.
func TestSandboxBrowser(t *testing.T) {
	br := newBrowser(t)
	started := time.Now()
	sb := startSandbox(t)
	st := getState(t, sb, 0)
	lead, ivan := st.Deals[0], st.Executors[0]
	found := st.Stages[2].ID
	card := fmt.Sprintf(`.deal-card[data-id="%d"]`, lead.ID)

	br.run(t, chromedp.Navigate(sb.URL()))
	br.waitText(t, `.column[data-stage="`+strconv.FormatInt(st.Stages[0].ID, 10)+`"] `+card, lead.Name, false)
	br.run(t, chromedp.Click(chromedp.CSS(card)))
	br.waitText(t, "#deal .deal__name", lead.Name, false)
	br.waitText(t, ".amodispatch-order", "не опубликован", true)
	br.run(t, chromedp.Click(chromedp.CSS(card+" .move--next")))

	post := br.waitInt(t, "the order post with buttons in the group", `(function(){
		var m = Array.from(document.querySelectorAll('#group .msg--bot')).filter(function(m){ return m.querySelector('.kb'); }).pop();
		return m ? Number(m.getAttribute('data-id')) : 0; })()`)
	postSel := fmt.Sprintf(`#group .msg[data-id="%d"]`, post)
	br.waitText(t, postSel+" .msg__text", lead.Name, false)
	br.screenshot(t, postSel, "sandbox_group_post")
	br.waitText(t, ".amodispatch-order", "Опубликован", true)

	// Ivan asks for the phone: the toast is the bot's answer, the phone
	// comes privately.
	br.run(t, chromedp.Click(chromedp.CSS(fmt.Sprintf(`.exec-tab[data-id="%d"]`, ivan.ID))))
	br.run(t, chromedp.Click(chromedp.CSS(postSel+` .kb[data-data^="p:"]`)))
	br.waitText(t, "#toast", ivan.Name+":", false)
	contact := br.waitInt(t, "the phone in Ivan's private chat", `(function(){
		var m = Array.from(document.querySelectorAll('#private .msg--bot')).filter(function(m){ return m.textContent.indexOf('+7 916 123-45-67') >= 0; }).pop();
		return m ? Number(m.getAttribute('data-id')) : 0; })()`)
	br.screenshot(t, fmt.Sprintf(`#private .msg[data-id="%d"]`, contact), "sandbox_private_contact")
	if text := eval[string](t, br, `document.getElementById('group').textContent`); strings.Contains(text, "123-45-67") {
		t.Fatal("the phone shows in the group")
	}

	// Ivan takes the order.
	br.run(t, chromedp.Click(chromedp.CSS(postSel+` .kb[data-data^="t:"]`)))
	br.waitText(t, fmt.Sprintf(`.column[data-stage="%d"] %s .deal-card__executor`, found, card), "Иван Петров", false)
	br.waitText(t, "#deal-fields", "Исполнитель найден", false)
	br.waitText(t, "#deal-notes .note", "Иван Петров", false)
	br.waitText(t, postSel+" .msg__text", "Иван Петров", false)
	if n := eval[int](t, br, `document.querySelectorAll('`+postSel+` .kb').length`); n != 0 {
		t.Fatalf("the taken post still shows %d buttons", n)
	}
	br.waitText(t, ".amodispatch-order", "Иван Петров", true)
	// The toast would cover the views in the screenshots.
	eval[bool](t, br, `document.getElementById('toast').hidden = true`)
	br.screenshot(t, postSel, "sandbox_group_taken")

	// Ivan's card: the order with the contact and the status buttons.
	cardMsg := br.waitInt(t, "Ivan's card with status buttons", `(function(){
		var m = Array.from(document.querySelectorAll('#private .msg--bot')).filter(function(m){ return m.querySelector('.kb[data-data^="s:s"]'); }).pop();
		return m ? Number(m.getAttribute('data-id')) : 0; })()`)
	cardSel := fmt.Sprintf(`#private .msg[data-id="%d"]`, cardMsg)
	br.screenshot(t, cardSel, "sandbox_executor_card")
	// "▶️ Приступил": the card shows the status, the deal moves to "В работе"
	// and gets the note.
	br.run(t, chromedp.Click(chromedp.CSS(cardSel+` .kb[data-data^="s:s"]`)))
	br.waitText(t, "#toast", ivan.Name+":", false)
	br.waitText(t, cardSel+" .msg__text", "Статус: приступил", false)
	br.waitText(t, fmt.Sprintf(`.column[data-stage="%d"] %s`, st.Stages[3].ID, card), lead.Name, false)
	br.waitText(t, "#deal-notes", "Иван Петров (@ivan_courier): приступил", false)
	br.waitText(t, ".amodispatch-timeline", "приступил", true)
	eval[bool](t, br, `document.getElementById('toast').hidden = true`)
	br.screenshot(t, cardSel, "sandbox_executor_card_started")
	br.screenshot(t, "#deal-section", "sandbox_deal_card")
	br.screenshotScaled(t, ".layout", "sandbox", 0.8)
	if errs := eval[[]string](t, br, `document.getElementById('card-frame').contentWindow.__widgetErrors || []`); len(errs) > 0 {
		t.Fatalf("widget errors: %q", errs)
	}

	// English: the page's texts and the widget's panel switch.
	br.run(t, chromedp.Click(chromedp.CSS("#lang")))
	br.waitText(t, "#board-section h2", "Deals", false)
	br.waitText(t, "#deal-fields", "Stage", false)
	br.waitText(t, ".amodispatch-order", "Иван Петров @ivan_courier started the work", true)
	br.noExceptions(t)

	// The manager unassigns Ivan in the deal card: the deal goes back to the
	// search with its note, Ivan is told, and the group gets a new post.
	if !eval[bool](t, br, `(function(){
		var b = document.getElementById('card-frame').contentDocument.querySelector('.amodispatch-action[data-action="unassign"]');
		if (b) { b.click(); } return !!b; })()`) {
		t.Fatal("no Unassign button in the widget panel")
	}
	br.waitText(t, fmt.Sprintf(`.column[data-stage="%d"] %s`, st.Stages[1].ID, card), lead.Name, false)
	br.waitText(t, "#deal-notes", "снят с заказа", false)
	br.waitText(t, "#private", "Менеджер снял вас с заказа", false)
	br.waitInt(t, "a new post of the deal in the group", fmt.Sprintf(`(function(){
		var m = Array.from(document.querySelectorAll('#group .msg--bot')).filter(function(m){ return m.querySelector('.kb[data-data^="t:"]'); }).pop();
		var id = m ? Number(m.getAttribute('data-id')) : 0;
		return id !== %d ? id : 0; })()`, post))
	br.waitText(t, postSel+" .msg__text", "Менеджер снял исполнителя с заказа", false)
	br.noExceptions(t)

	// The admin's statistics count the demo's orders of today: the deal's
	// first order (taken, then unassigned) and its new post.
	br.run(t, chromedp.Navigate(sb.URL()+"settings?tab=stats"))
	br.waitInt(t, "the statistics drawn", `document.querySelector('.amodispatch-stats-result[data-amodispatch-ready="1"]') ? 1 : 0`)
	for cls, want := range map[string]string{"posted": "2", "taken": "1", "released": "1", "never-taken": "1"} {
		if got := eval[string](t, br, `(document.querySelector('.amodispatch-figure--`+cls+` .amodispatch-figure-value') || {}).textContent || ''`); got != want {
			t.Errorf("statistics: %s = %q, want %q", cls, got, want)
		}
	}
	br.waitText(t, ".amodispatch-stats-executor", ivan.Name, false)
	br.screenshotScaled(t, "#work-area-amodispatch", "sandbox_stats", 0.8)
	br.noExceptions(t)

	// The install confirmation page, as the demo's install got it.
	br.run(t, chromedp.Navigate(sb.URL()+"sandbox/install"))
	href := eval[string](t, br, `(document.getElementById('startgroup') || {}).href || ''`)
	if !strings.Contains(href, "https://t.me/AmoDispatchDemoBot?startgroup=") {
		t.Fatalf("install page's link to add the bot: %q", href)
	}
	br.screenshot(t, "body", "install_page")
	t.Logf("sandbox flow in the browser took %s", time.Since(started).Round(100*time.Millisecond))
}
