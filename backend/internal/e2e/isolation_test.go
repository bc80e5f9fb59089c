package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// routeKeys are the backend's routes as "METHOD /path" (fiber's own
// spelling, params included), those under prefix with one of methods (any
// method when none is given), sorted.
func routeKeys(b *backend, prefix string, methods ...string) []string {
	var keys []string
	for _, r := range b.Routes() {
		if strings.HasPrefix(r.Path, prefix) && (len(methods) == 0 || slices.Contains(methods, r.Method)) {
			keys = append(keys, r.Method+" "+r.Path)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// checkCovered fails the test when the router has a route the table lacks
// (a new endpoint must join the walk) or the table names a route that is gone.
func checkCovered[V any](t *testing.T, routes []string, table map[string]V) {
	t.Helper()
	for _, k := range routes {
		if _, ok := table[k]; !ok {
			t.Errorf("route %q is not covered by this test's table: add it", k)
		}
	}
	for k := range table {
		if !slices.Contains(routes, k) {
			t.Errorf("table covers %q, which the router no longer has", k)
		}
	}
}

// widgetRaw is widgetCall returning the body as sent.
func widgetRaw(t testing.TB, b *backend, method, path, token, body string) (int, []byte) {
	t.Helper()
	status, raw, _ := exchange(t, method, b.URL+path, []byte(body), "X-Auth-Token", token, "Content-Type", jsonIf(body))
	return status, raw
}

// jsonLeaves are the keys, strings and numbers of a JSON document, minus
// those that identify nothing: empty strings and numbers below 1000 (message
// ids, counts), which two accounts share by chance.
func jsonLeaves(raw []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if dec.Decode(&doc) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				out = append(out, k)
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case string:
			if v != "" {
				out = append(out, v)
			}
		case json.Number:
			if n, err := v.Int64(); err != nil || n >= 1000 || n <= -1000 {
				out = append(out, v.String())
			}
		}
	}
	walk(doc)
	return out
}

var numberRe = regexp.MustCompile(`-?\d+`)

func TestWidgetTenantIsolation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		ta := newTenant(t, e, b, 43000000, "sierra", "ru", 3000)
		tb := newTenant(t, e, b, 44000000, "zulu", "en", 4000)
		tokA := widgetToken(t, b, ta.acc.ID, "sierra", nil)
		tokB := widgetToken(t, b, tb.acc.ID, "zulu", nil)

		// B: a second chat, an open order, a taken one and a fresh deal
		// aimed at the second chat; A: an open order and a fresh deal.
		nightB := e.tg.NewGroup("Zulu night shift")
		e.tg.AddBotToGroup(nightB.ID, tb.boss, tb.linkCode(t, b))
		eventually(t, "B's second chat linked", func() bool {
			c, err := b.Store().Chat(ctx, nightB.ID)
			return err == nil && c.AccountID == tb.acc.ID && c.Active
		})
		aOpen, aFresh := ta.newLead(t, e, "Sierra open sofa"), ta.newLead(t, e, "Sierra fresh lamp")
		bOpen, bTaken, bFresh := tb.newLead(t, e, "Zulu open piano"), tb.newLead(t, e, "Zulu taken fridge"), tb.newLead(t, e, "Zulu fresh desk")
		for _, m := range []struct {
			tn   *tenant
			lead int64
		}{{ta, aOpen.ID}, {tb, bOpen.ID}, {tb, bTaken.ID}} {
			if err := e.amo.MoveLead(m.tn.acc.ID, m.lead, m.tn.statusByIndex(1)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "order posted", func() bool {
				o, err := b.Store().ActiveOrder(ctx, m.tn.acc.ID, m.lead)
				return err == nil && o.MessageID != 0
			})
		}
		if s, _ := widgetRaw(t, b, "PUT", fmt.Sprintf("/api/widget/deals/%d/chat", bFresh.ID), tokB, fmt.Sprintf(`{"chat_id":%d}`, nightB.ID)); s != 200 {
			t.Fatalf("B aims its fresh deal at its night chat: %d", s)
		}
		courier := e.tg.AddUser("Zoltan", "Zulu-Courier", "zoltan_zulu")
		e.tg.UserStartsBot(courier.ID, "")
		eventually(t, "courier registered", func() bool { x, err := b.Store().Executor(ctx, courier.ID); return err == nil && x.Started })
		taken, _ := b.Store().ActiveOrder(ctx, tb.acc.ID, bTaken.ID)
		post, _ := e.tg.Message(tb.group.ID, taken.MessageID)
		if _, err := e.tg.PressButton(tb.group.ID, post.MessageID, courier.ID, buttonsOf(t, post)[1].CallbackData); err != nil {
			t.Fatal(err)
		}
		eventually(t, "B's order taken and the deal moved on", func() bool {
			o, err := b.Store().LatestOrder(ctx, tb.acc.ID, bTaken.ID)
			return err == nil && o.ExecutorID == courier.ID && len(backendLeadUpdates(e, tb.acc.ID, bTaken.ID)) > 0
		})
		settle := func() {
			t.Helper()
			if err := e.amo.WaitDeliveries(5e9); err != nil {
				t.Fatal(err)
			}
			waitJobsIdle(t, b)
		}
		settle()

		// What each account sees of itself, through its own token.
		view := func(tok string, leads ...int64) [][]byte {
			var out [][]byte
			for _, p := range append([]string{"/api/widget/state"}, dealPaths(leads...)...) {
				s, raw := widgetRaw(t, b, "GET", p, tok, "")
				if s != 200 {
					t.Fatalf("own view %s: %d %s", p, s, raw)
				}
				out = append(out, raw)
			}
			return out
		}
		bLeads := []int64{bOpen.ID, bTaken.ID, bFresh.ID}
		bSnapshot := func() string {
			var sb strings.Builder
			for _, raw := range view(tokB, bLeads...) {
				sb.Write(raw)
			}
			st, _ := b.Store().Settings(ctx, tb.acc.ID)
			chats, _ := b.Store().Chats(ctx, tb.acc.ID)
			n, _ := b.Store().CountOrders(ctx, tb.acc.ID)
			fmt.Fprintf(&sb, "\n%+v\n%+v\norders=%d updates=%d\n", st, chats, n, len(e.amo.LeadUpdates(tb.acc.ID)))
			for _, l := range bLeads {
				target, _ := b.Store().DealTarget(ctx, tb.acc.ID, l)
				fmt.Fprintf(&sb, "lead %d: target %d notes %d\n", l, target, len(e.amo.Notes(tb.acc.ID, l)))
			}
			for _, c := range []int64{tb.group.ID, nightB.ID} {
				for _, m := range e.tg.Messages(c) {
					fmt.Fprintf(&sb, "%d/%d %q %s edits=%d\n", c, m.MessageID, m.Text, m.ReplyMarkup, len(m.History))
				}
			}
			return sb.String()
		}
		aSnapshot := func() string {
			var sb strings.Builder
			for _, raw := range view(tokA, aOpen.ID, aFresh.ID)[1:] {
				sb.Write(raw)
			}
			st, _ := b.Store().Settings(ctx, ta.acc.ID)
			n, _ := b.Store().CountOrders(ctx, ta.acc.ID)
			fmt.Fprintf(&sb, "\n%+v\norders=%d updates=%d msgs=%d\n", st, n, len(e.amo.LeadUpdates(ta.acc.ID)), len(e.tg.Messages(ta.group.ID)))
			return sb.String()
		}

		// B's data: every value B's own views show that A's own views do not,
		// plus what the views never show (deal names, the link code, people).
		aOwn := map[string]bool{}
		for _, raw := range view(tokA, aOpen.ID, aFresh.ID) {
			for _, v := range jsonLeaves(raw) {
				aOwn[v] = true
			}
		}
		// The statistics' field names are A's too (its own answer's keys,
		// not its values): B's deal card says "taken" as a value.
		_, ownStats := widgetRaw(t, b, "GET", "/api/widget/stats?period=30d", tokA, "")
		var statsDoc map[string]any
		_ = json.Unmarshal(ownStats, &statsDoc)
		var keys func(any)
		keys = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					aOwn[k] = true
					keys(x)
				}
			case []any:
				for _, x := range v {
					keys(x)
				}
			}
		}
		keys(statsDoc)
		keys(map[string]any{"executors": []any{map[string]any{"telegram_id": 0, "name": "", "username": "", "taken": 0, "done": 0,
			"released": 0, "done_median_s": 0, "last_activity": ""}}})
		bOnly := map[string]bool{}
		for _, raw := range view(tokB, bLeads...) {
			for _, v := range jsonLeaves(raw) {
				if !aOwn[v] {
					bOnly[v] = true
				}
			}
		}
		for _, id := range []int64{tb.group.ID, nightB.ID, tb.acc.ID + 1, tb.amoUser, courier.ID, bFresh.ID} {
			if !bOnly[fmt.Sprint(id)] {
				t.Fatalf("B's own views do not show %d; the leak check would be blind to it", id)
			}
		}
		sentinels := []string{bOpen.Name, bTaken.Name, bFresh.Name, tb.group.Title, nightB.Title, "zulu LLC", tb.linkCode(t, b),
			courier.FirstName, courier.LastName, courier.Username, "Клиент zulu", "client@zulu.test"}

		bBefore, aBefore := bSnapshot(), aSnapshot()

		// The walk: every widget route, called with A's token and B's ids.
		// Deals are amoCRM's ids, unknown to the backend until it sees them, so
		// the panel opens on any id: B's deal must answer exactly like a deal
		// that exists nowhere (its twin), which makes it a 404 where the API
		// asks amoCRM (post, repost), and where it does not (read, withdraw,
		// choosing an own chat for it) an empty, A-scoped answer with no B data.
		type probe struct {
			what string
			lead int64 // B's deal in the path; 0: none
			path string
			body string
			want int
		}
		twinOf := map[int64]int64{}
		for i, l := range bLeads {
			twinOf[l] = 8_000_000_001 + int64(i) // above every id the fake hands out
		}
		perLead := func(what, suffix, body string, want int) []probe {
			var ps []probe
			for _, l := range bLeads {
				ps = append(ps, probe{what, l, fmt.Sprintf("/api/widget/deals/%d%s", l, suffix), body, want})
			}
			return ps
		}
		rule := func(pipeline, trigger, found, chat int64) string {
			return fmt.Sprintf(`{"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d],"found_stage_id":%d,"default_chat_id":%d}]}`, pipeline, trigger, found, chat)
		}
		table := map[string][]probe{
			"GET /api/widget/state":  {{"A's state", 0, "/api/widget/state", "", 200}},
			"HEAD /api/widget/state": {{"A's state", 0, "/api/widget/state", "", 200}},
			"PUT /api/widget/settings": {
				{"B's pipeline and stage", 0, "/api/widget/settings", rule(tb.pipeline, tb.statusByIndex(1), 0, 0), 400},
				{"B's trigger stage", 0, "/api/widget/settings", rule(ta.pipeline, tb.statusByIndex(1), 0, 0), 400},
				{"B's found stage", 0, "/api/widget/settings", rule(ta.pipeline, ta.statusByIndex(1), tb.statusByIndex(2), 0), 400},
				{"B's chat as default", 0, "/api/widget/settings", rule(ta.pipeline, ta.statusByIndex(1), 0, tb.group.ID), 400},
				{"B's second chat as default", 0, "/api/widget/settings", rule(ta.pipeline, ta.statusByIndex(1), 0, nightB.ID), 400},
				{"B's stage for a status", 0, "/api/widget/settings", fmt.Sprintf(`{"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d],"status_stages":{"on_way":%d}}]}`,
					ta.pipeline, ta.statusByIndex(1), tb.statusByIndex(2)), 400},
				{"B's deal field", 0, "/api/widget/settings", fmt.Sprintf(`{"order_field_ids":[%d]}`, tb.acc.ID+10), 400},
				{"B's deal field as the job time", 0, "/api/widget/settings", fmt.Sprintf(`{"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d],"job_time_field_id":%d}]}`,
					ta.pipeline, ta.statusByIndex(1), tb.acc.ID+10), 400},
				{"B's amoCRM user", 0, "/api/widget/settings", fmt.Sprintf(`{"executor_users":{"%d":%d}}`, courier.ID, tb.amoUser), 400},
				{"B's chat for the weekly digest", 0, "/api/widget/settings", fmt.Sprintf(`{"digest_chat_id":%d}`, tb.group.ID), 400},
			},
			// A's own code: its answer must hold nothing of B, B's code must stay.
			"POST /api/widget/link-code/rotate": {{"A rotates its link code", 0, "/api/widget/link-code/rotate", "", 200}},
			"GET /api/widget/deals/:lead":       perLead("B's deal", "", "", 200),
			"HEAD /api/widget/deals/:lead":      perLead("B's deal", "", "", 200),
			"PUT /api/widget/deals/:lead/chat": slices.Concat(
				[]probe{
					{"B's chat for A's deal", 0, fmt.Sprintf("/api/widget/deals/%d/chat", aFresh.ID), fmt.Sprintf(`{"chat_id":%d}`, tb.group.ID), 400},
					{"B's second chat for A's deal", 0, fmt.Sprintf("/api/widget/deals/%d/chat", aFresh.ID), fmt.Sprintf(`{"chat_id":%d}`, nightB.ID), 400},
				},
				perLead("B's chat for B's deal", "/chat", fmt.Sprintf(`{"chat_id":%d}`, tb.group.ID), 400),
				perLead("B's second chat for B's deal", "/chat", fmt.Sprintf(`{"chat_id":%d}`, nightB.ID), 400),
				perLead("A's chat for B's deal", "/chat", fmt.Sprintf(`{"chat_id":%d}`, ta.group.ID), 200),
			),
			"POST /api/widget/deals/:lead/post":     perLead("post B's deal", "/post", "", 404),
			"POST /api/widget/deals/:lead/withdraw": perLead("withdraw B's deal", "/withdraw", "", 200),
			"POST /api/widget/deals/:lead/repost":   perLead("repost B's deal", "/repost", "", 404),
			"POST /api/widget/deals/:lead/unassign": perLead("unassign B's deal", "/unassign", "", 404),
		}
		// A's statistics, also asked for B's pipeline: B's orders never count.
		for _, path := range []string{"/api/widget/stats", "/api/widget/stats.csv"} {
			ps := []probe{{"A's statistics", 0, path + "?period=30d", "", 200},
				{"A's statistics of B's pipeline", 0, fmt.Sprintf("%s?period=30d&pipeline_id=%d", path, tb.pipeline), "", 200}}
			table["GET "+path], table["HEAD "+path] = ps, ps
		}
		routes := routeKeys(b, "/api/widget")
		// Preflights are answered by widgetCORS before routing and carry no token.
		routes = slices.DeleteFunc(routes, func(k string) bool { return strings.HasPrefix(k, "OPTIONS ") })
		checkCovered(t, routes, table)

		for _, route := range routes {
			method := strings.Fields(route)[0]
			for _, p := range table[route] {
				name := fmt.Sprintf("%s %s (%s)", method, p.path, p.what)
				s, raw := widgetRaw(t, b, method, p.path, tokA, p.body)
				if s != p.want {
					t.Errorf("%s: HTTP %d, want %d: %s", name, s, p.want, raw)
				}
				if s >= 400 && method != "HEAD" {
					var out map[string]any
					if json.Unmarshal(raw, &out) != nil || out["error"] == nil || out["error"] == "" {
						t.Errorf("%s: a %d without an error message: %s", name, s, raw)
					}
				}
				if p.lead != 0 {
					twin := twinOf[p.lead]
					ts, traw := widgetRaw(t, b, method, strings.Replace(p.path, fmt.Sprint(p.lead), fmt.Sprint(twin), 1), tokA, p.body)
					traw = bytes.ReplaceAll(traw, []byte(fmt.Sprint(twin)), []byte(fmt.Sprint(p.lead)))
					if ts != s || !bytes.Equal(traw, raw) {
						t.Errorf("%s: B's deal answers unlike a deal that exists nowhere:\n B's:    %d %s\n nowhere: %d %s", name, s, raw, ts, traw)
					}
				}
				var leaked []string
				echoed := numberRe.FindAllString(p.path+" "+p.body, -1)
				for _, v := range jsonLeaves(raw) {
					if bOnly[v] && !slices.Contains(echoed, v) {
						leaked = append(leaked, v)
					}
				}
				for _, v := range sentinels {
					if bytes.Contains(raw, []byte(v)) {
						leaked = append(leaked, v)
					}
				}
				if len(leaked) > 0 {
					t.Errorf("%s: B's data %q in the answer: %s", name, leaked, raw)
				}
			}
		}

		settle()
		if after := bSnapshot(); after != bBefore {
			t.Errorf("A's calls changed B's state:\nbefore:\n%s\nafter:\n%s", bBefore, after)
		}
		if after := aSnapshot(); after != aBefore {
			t.Errorf("the walk changed A's own deals or settings:\nbefore:\n%s\nafter:\n%s", aBefore, after)
		}
		aSettings, _ := b.Store().Settings(ctx, ta.acc.ID)
		for _, id := range numberRe.FindAllString(fmt.Sprintf("%+v", aSettings), -1) {
			if bOnly[id] {
				t.Errorf("A's settings hold B's id %s: %+v", id, aSettings)
			}
		}

		// A may map any Telegram id to its own amoCRM user (executors are
		// mapped before they ever press), but that does not reveal who B's
		// courier is.
		if s, raw := widgetRaw(t, b, "PUT", "/api/widget/settings", tokA,
			fmt.Sprintf(`{"executor_users":{"%d":%d}}`, courier.ID, ta.amoUser)); s != 200 {
			t.Fatalf("mapping an id in A's own settings: HTTP %d: %s", s, raw)
		}
		_, raw := widgetRaw(t, b, "GET", "/api/widget/state", tokA, "")
		for _, v := range []string{courier.FirstName, courier.LastName, courier.Username} {
			if bytes.Contains(raw, []byte(v)) {
				t.Errorf("mapping B's courier's id showed A the courier's %q: %s", v, raw)
			}
		}
	})
}

func dealPaths(leads ...int64) []string {
	var out []string
	for _, l := range leads {
		out = append(out, "/api/widget/deals/"+strconv.FormatInt(l, 10))
	}
	return out
}
