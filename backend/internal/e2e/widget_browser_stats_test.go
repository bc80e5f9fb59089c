package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// The admin's statistics tab in the real widget: the figures of seeded
// orders for 30 days, an executor's and a chat's rows, and the CSV download
// (the same rows, fetched with the widget's token); a manager has no tab.
func TestWidgetBrowserStats(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		br := newBrowser(t)
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		tn := newTenant(t, e, b, 62000000, "widgetstats", "ru", 6200)
		clk := &dbtest.Clock{}
		db := dbtest.OpenAt(t, e.dbURL, e.dir, clk.Now)
		ivan := dispatch.Executor{TelegramID: 11, FirstName: "Иван", LastName: "Петров", Username: "ivan"}
		olga := dispatch.Executor{TelegramID: 22, FirstName: "Ольга"}
		a, g, p := tn.acc.ID, tn.group.ID, tn.pipeline
		// Three hours ago is within the last 30 days in any zone.
		base := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
		dbtest.SeedOrders(t, db, clk, base, []dbtest.SeedOrder{
			dbtest.O(a, 1, p, g, 0, ivan, 120*time.Second, dispatch.OrderDone, 600*time.Second),
			dbtest.O(a, 2, p, g, time.Minute, olga, 30*time.Second, "", 0),
			dbtest.O(a, 3, p, g, 2*time.Minute, dispatch.Executor{}, 0, dispatch.OrderWithdrawn, time.Minute),
		})

		page := newWidgetPage(t, e, b, tn.acc, tn.acc.ID+1)
		br.run(t, chromedp.Navigate(page.url("advanced_settings", "ru", 0, "")))
		root := "#work-area-amodispatch .amodispatch-advanced"
		br.waitReady(t, root)
		br.click(t, `.amodispatch-tab[data-tab="stats"]`)
		result := root + " .amodispatch-stats-result"
		br.waitReady(t, result) // today's figures first
		evalAs[bool](t, br, `(function(){ document.querySelector('`+result+`').removeAttribute('data-amodispatch-ready'); return true; })()`)
		br.selectValue(t, ".amodispatch-stats-period", "30d")
		br.waitReady(t, result)

		fig := func(cls string) string {
			v := br.texts(t, result+" .amodispatch-figure--"+cls+" .amodispatch-figure-value")
			if len(v) != 1 {
				t.Fatalf("figure %s: %q", cls, v)
			}
			return v[0]
		}
		// Take times 30 and 120 s: the median is the lower one, p90 the upper.
		for cls, want := range map[string]string{"posted": "3", "taken": "2", "done": "1", "released": "0", "withdrawn": "1",
			"never-taken": "1", "median": "30 с", "p90": "2 мин 0 с", "within5": "67%", "within15": "67%", "within60": "67%"} {
			if got := fig(cls); got != want {
				t.Errorf("figure %s = %q, want %q", cls, got, want)
			}
		}
		rows := br.texts(t, result+" .amodispatch-stats-executor")
		if len(rows) != 2 || !strings.Contains(rows[0], "Иван Петров") || !strings.Contains(rows[0], "10 мин 0 с") || !strings.Contains(rows[1], "Ольга") {
			t.Fatalf("executor rows: %q", rows)
		}
		chats := br.texts(t, result+" .amodispatch-stats-chat")
		if want := tn.group.Title + "3230 с"; !slices.Equal(chats, []string{want}) {
			t.Fatalf("chat rows: %q, want %q", chats, want)
		}
		br.screenshot(t, kind, "#work-area-amodispatch", "advanced_stats")

		// The CSV button fetches the same rows with the widget's token.
		evalAs[string](t, br, `(function(){
			window.__csv = null;
			var orig = URL.createObjectURL;
			URL.createObjectURL = function (blob) { blob.text().then(function (s) { window.__csv = s; }); return orig.call(URL, blob); };
			return '';
		})()`)
		br.click(t, ".amodispatch-stats-csv")
		var got string
		eventually(t, "the CSV downloaded", func() bool {
			got = evalAs[string](t, br, `window.__csv || ''`)
			return got != ""
		})
		if !strings.HasPrefix(got, "section,id,name") || !strings.Contains(got, "\ntotal,,,,3,2,1,0,1,1,30,120,2,2,2,,\n") ||
			!strings.Contains(got, fmt.Sprintf("\nchat,%d,", g)) {
			t.Fatalf("CSV from the page:\n%s", got)
		}
		br.noScriptErrors(t)

		// A manager's page has no statistics tab.
		mpage := newWidgetPage(t, e, b, tn.acc, tn.amoUser)
		br.run(t, chromedp.Navigate(mpage.url("advanced_settings", "ru", 0, "")))
		br.waitReady(t, root)
		if tabs := br.texts(t, ".amodispatch-tab"); len(tabs) != 0 {
			t.Fatalf("a manager's page has tabs %q", tabs)
		}
	})
}
