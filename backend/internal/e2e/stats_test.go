package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// The admin's statistics through the real backend: orders seeded with known
// times (by a second store handle on a clock of its own), read back as JSON
// and CSV for a day cut in the account's zone (the fake's Europe/Moscow);
// another account's order in the same minutes never counts, and a manager
// is refused.
func TestWidgetStats(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		ta := newTenant(t, e, b, 48100000, "stats", "ru", 8100)
		tb := newTenant(t, e, b, 48200000, "other", "ru", 8200)
		clk := &dbtest.Clock{}
		db := dbtest.OpenAt(t, e.dbURL, e.dir, clk.Now)
		const store2 = -1004242 // a second chat of the account
		if _, err := db.LinkChat(ctx, dispatch.Chat{ID: store2, AccountID: ta.acc.ID, Title: "Склад", Type: "supergroup", Active: true}); err != nil {
			t.Fatal(err)
		}
		ivan := dispatch.Executor{TelegramID: 11, FirstName: "Иван", LastName: "Петров", Username: "ivan"}
		// A name typed in Telegram that a spreadsheet would run as a formula.
		olga := dispatch.Executor{TelegramID: 22, FirstName: "=Ольга"}
		a, g, p := ta.acc.ID, ta.group.ID, ta.pipeline
		// 10:00 UTC is 13:00 in Moscow; Moscow's 2 March is 1 March 21:00 UTC
		// to 2 March 21:00 UTC.
		base := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		dbtest.SeedOrders(t, db, clk, base, []dbtest.SeedOrder{
			dbtest.O(a, 1, p, g, 0, ivan, 90*time.Second, dispatch.OrderDone, 600*time.Second),
			dbtest.O(a, 2, p, g, 5*time.Minute, olga, 30*time.Second, dispatch.OrderReleased, 120*time.Second),
			dbtest.O(a, 3, 999, store2, 10*time.Minute, ivan, 1000*time.Second, dispatch.OrderDone, 1200*time.Second),
			dbtest.O(a, 4, p, g, 15*time.Minute, dispatch.Executor{}, 0, dispatch.OrderWithdrawn, time.Minute),
			// 1 March 22:30 UTC is 2 March 01:30 in Moscow: counted; taken in
			// exactly 60 minutes.
			dbtest.O(a, 5, p, g, -11*time.Hour-30*time.Minute, olga, time.Hour, "", 0),
			// 2 March 21:30 UTC is already 3 March in Moscow: not counted.
			dbtest.O(a, 6, p, g, 11*time.Hour+30*time.Minute, ivan, 5*time.Second, "", 0),
			// Another account's order, taken by the same executor.
			dbtest.O(tb.acc.ID, 1, tb.pipeline, tb.group.ID, time.Minute, ivan, 10*time.Second, dispatch.OrderDone, time.Second),
		})
		admin := widgetToken(t, b, a, "stats", asUser(a+1))
		manager := widgetToken(t, b, a, "stats", asUser(ta.amoUser))
		const day = "/api/widget/stats?period=custom&from=2026-03-02&to=2026-03-02"

		// Take times 30, 90, 1000, 3600 s: the median is rank ⌈4·0.5⌉ = 2nd
		// (90 s), the 90th percentile rank ⌈3.6⌉ = 4th.
		want := fmt.Sprintf(`{"from":"2026-03-02T00:00:00+03:00","to":"2026-03-03T00:00:00+03:00","first_day":"2026-03-02","last_day":"2026-03-02","zone":"Europe/Moscow","pipeline_id":0,`+
			`"totals":{"posted":5,"taken":4,"done":2,"released":1,"withdrawn":1,"never_taken":1,"take_median_s":90,"take_p90_s":3600,`+
			`"taken_within_5m":2,"taken_within_15m":2,"taken_within_60m":4},`+
			`"executors":[{"telegram_id":11,"name":"Иван Петров","username":"ivan","taken":2,"done":2,"released":0,"done_median_s":600,"last_activity":"2026-03-02T13:46:40+03:00"},`+
			`{"telegram_id":22,"name":"=Ольга","username":"","taken":2,"done":0,"released":1,"done_median_s":null,"last_activity":"2026-03-02T13:07:30+03:00"}],`+
			`"chats":[{"chat_id":%d,"title":%q,"posted":4,"taken":3,"take_median_s":90},{"chat_id":%d,"title":"Склад","posted":1,"taken":1,"take_median_s":1000}]}`,
			g, ta.group.Title, store2)
		status, raw := widgetRaw(t, b, "GET", day, admin, "")
		if status != 200 || string(raw) != want {
			t.Fatalf("stats: %d\n got %s\nwant %s", status, raw, want)
		}

		status, raw, h := exchange(t, "GET", b.URL+strings.Replace(day, "/stats?", "/stats.csv?", 1), nil, "X-Auth-Token", admin)
		wantCSV := "section,id,name,username,posted,taken,done,released,withdrawn,never_taken,take_median_s,take_p90_s,taken_within_5m,taken_within_15m,taken_within_60m,done_median_s,last_activity\n" +
			"total,,,,5,4,2,1,1,1,90,3600,2,2,4,,\n" +
			"executor,11,Иван Петров,ivan,,2,2,0,,,,,,,,600,2026-03-02T13:46:40+03:00\n" +
			"executor,22,'=Ольга,,,2,0,1,,,,,,,,,2026-03-02T13:07:30+03:00\n" +
			fmt.Sprintf("chat,%d,%s,,4,3,,,,,90,,,,,,\n", g, ta.group.Title) +
			fmt.Sprintf("chat,%d,Склад,,1,1,,,,,1000,,,,,,\n", store2)
		if status != 200 || string(raw) != wantCSV || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") {
			t.Fatalf("stats CSV: %d %s\n got %s\nwant %s", status, h.Get("Content-Type"), raw, wantCSV)
		}

		// One pipeline: orders 1, 2, 4 and 5 (take times 30, 90, 3600 s).
		status, raw = widgetRaw(t, b, "GET", fmt.Sprintf("%s&pipeline_id=%d", day, p), admin, "")
		var one struct{ Totals map[string]any }
		_ = json.Unmarshal(raw, &one)
		if got := fmt.Sprint(one.Totals); status != 200 || got != "map[done:1 never_taken:1 posted:4 released:1 take_median_s:90 take_p90_s:3600 taken:3 taken_within_15m:2 taken_within_5m:2 taken_within_60m:3 withdrawn:1]" {
			t.Fatalf("one pipeline: %d %s", status, raw)
		}

		// Moscow's 3 March has order 6 only; the other account sees its own.
		if _, out, _ := widgetCall(t, b, "GET", "/api/widget/stats?period=custom&from=2026-03-03&to=2026-03-03", admin, ""); fmt.Sprint(out["totals"].(map[string]any)["posted"]) != "1" {
			t.Fatalf("3 March: %v", out)
		}
		other := widgetToken(t, b, tb.acc.ID, "other", asUser(tb.acc.ID+1))
		if _, out, _ := widgetCall(t, b, "GET", day, other, ""); fmt.Sprint(out["totals"].(map[string]any)["posted"]) != "1" ||
			len(out["executors"].([]any)) != 1 || fmt.Sprint(out["executors"].([]any)[0].(map[string]any)["taken"]) != "1" {
			t.Fatalf("the other account's stats: %v", out)
		}

		// Today (and the presets) answer; a bad period is the caller's error.
		for _, q := range []string{"period=today", "period=7d", "period=30d", ""} {
			if s, out, _ := widgetCall(t, b, "GET", "/api/widget/stats?"+q, admin, ""); s != 200 || out["zone"] != "Europe/Moscow" {
				t.Errorf("stats?%s: %d %v", q, s, out)
			}
		}
		for _, q := range []string{"period=year", "period=custom&from=2026-03-05&to=2026-03-01", "period=custom&from=2025-01-01&to=2026-03-01",
			"period=custom&from=x&to=2026-03-01", "period=today&pipeline_id=-3"} {
			if s, out, _ := widgetCall(t, b, "GET", "/api/widget/stats?"+q, admin, ""); s != 400 {
				t.Errorf("stats?%s: %d %v, want 400", q, s, out)
			}
		}

		// A manager is refused both, and learns nothing.
		for _, path := range []string{day, strings.Replace(day, "/stats?", "/stats.csv?", 1)} {
			if s, raw := widgetRaw(t, b, "GET", path, manager, ""); s != 403 || strings.Contains(string(raw), "Петров") {
				t.Errorf("manager's %s: %d %s", path, s, raw)
			}
		}
	})
}
