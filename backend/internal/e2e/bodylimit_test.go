package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/httpapi"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

// sendOversized sends a request for body the way an attacker would and
// returns the status the server answers. Unchunked, only the head goes out,
// with Content-Length: len(body). Chunked, all of body but its last byte goes
// out in chunks and the last chunk is only announced. Either way the server
// has read everything sent when it refuses, so it closes cleanly instead of
// resetting the connection under its answer (Go's client, still writing,
// would report the reset, not the 413); a server that waits for the rest
// fails the test.
func sendOversized(t testing.TB, method, rawURL, body string, chunked bool, headers ...string) int {
	t.Helper()
	u, _ := url.Parse(rawURL)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	w := bufio.NewWriterSize(conn, 64<<10)
	fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, u.RequestURI(), u.Host)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(w, "%s: %s\r\n", headers[i], headers[i+1])
	}
	if !chunked {
		fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", len(body))
	} else {
		fmt.Fprint(w, "Transfer-Encoding: chunked\r\n\r\n")
		for rest := body[:len(body)-1]; len(rest) > 0; {
			n := min(len(rest), 32<<10)
			fmt.Fprintf(w, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		fmt.Fprint(w, "1\r\n")
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("%s %s: the server stopped reading early: %v", method, u.Path, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: no answer to an oversized body (%v): the server waited for the rest", method, u.Path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func gzipped(t testing.TB, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// padded returns a body maker: prefix, filler, suffix, exactly n bytes long.
func padded(prefix, filler, suffix string) func(n int) string {
	return func(n int) string {
		return prefix + strings.Repeat(filler, n-len(prefix)-len(suffix)) + suffix
	}
}

func TestBodyLimitsOnEveryDoor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start(telegramWebhookMode)
		ctx := context.Background()
		eventually(t, "setWebhook", func() bool { return len(e.tg.Calls("setWebhook")) > 0 })
		tgSecret := e.tg.Calls("setWebhook")[0].String("secret_token")
		ta := newTenant(t, e, b, 47000000, "kappa", "ru", 7000)
		tok := widgetToken(t, b, ta.acc.ID, "kappa", nil)
		hook := e.amo.Webhooks(ta.acc.ID)[0].Destination
		fresh, open := ta.newLead(t, e, "Kappa fresh"), ta.newLead(t, e, "Kappa open")
		if err := e.amo.MoveLead(ta.acc.ID, open.ID, ta.statusByIndex(1)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "order posted", func() bool {
			o, err := b.Store().ActiveOrder(ctx, ta.acc.ID, open.ID)
			return err == nil && o.MessageID != 0
		})
		// A deal with an executor, for the deal card's Unassign.
		taken := ta.newLead(t, e, "Kappa taken")
		ta.toSearch(t, e, taken.ID)
		post := ta.postedOrder(t, b, taken.ID)
		courier := e.tg.AddUser("Kappa", "Courier", "kappa_courier")
		if _, err := e.tg.PressButton(ta.group.ID, post.MessageID, courier.ID, "t:"+post.ID); err != nil {
			t.Fatal(err)
		}
		eventually(t, "order taken", func() bool {
			o, err := b.Store().LatestOrder(ctx, ta.acc.ID, taken.ID)
			return err == nil && o.ExecutorID == courier.ID
		})
		settle := func() {
			t.Helper()
			if err := e.amo.WaitDeliveries(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			waitJobsIdle(t, b)
			eventually(t, "updates processed", func() bool { n, _ := b.Store().PendingUpdates(ctx); return n == 0 })
		}
		settle()

		// Everything a door could write if it let a body through.
		snapshot := func() string {
			events, _ := b.Flow().EventsReceived(ctx, ta.acc.ID)
			maxUpdate, _ := b.Store().MaxUpdateID(ctx)
			orders, _ := b.Store().CountOrders(ctx, ta.acc.ID)
			o, _ := b.Store().LatestOrder(ctx, ta.acc.ID, open.ID)
			target, _ := b.Store().DealTarget(ctx, ta.acc.ID, fresh.ID)
			st, _ := b.Store().Settings(ctx, ta.acc.ID)
			acc, _ := b.Store().Account(ctx, ta.acc.ID)
			s := fmt.Sprintf("events=%d max_update=%d orders=%d open=%s target=%d lead_updates=%d sent=%d settings=%+v link_code=%s\n",
				events, maxUpdate, orders, o.Status, target, len(e.amo.LeadUpdates(ta.acc.ID)), len(e.tg.Calls("sendMessage")), st, acc.LinkCode)
			for _, m := range e.tg.Messages(ta.group.ID) {
				s += fmt.Sprintf("%d %q %s edits=%d\n", m.MessageID, m.Text, m.ReplyMarkup, len(m.History))
			}
			return s
		}

		// Each door with its credentials and a body it would act on, padded
		// to any size; limit is the largest body it must still take.
		const serverLimit = service.MaxWebhookBody
		type door struct {
			url     string
			headers []string
			limit   int
			body    func(n int) string
		}
		// The webhook moves a deal to a non-trigger stage: stored, posts nothing.
		form := fmt.Sprintf("leads%%5Bstatus%%5D%%5B0%%5D%%5Bid%%5D=%d&leads%%5Bstatus%%5D%%5B0%%5D%%5Bstatus_id%%5D=%d&leads%%5Bstatus%%5D%%5B0%%5D%%5Bpipeline_id%%5D=%d&account%%5Bid%%5D=%d&pad=",
			fresh.ID, ta.statusByIndex(3), ta.pipeline, ta.acc.ID)
		update := `{"update_id":910000001,"message":{"message_id":1,"date":1700000000,"chat":{"id":4343,"type":"private","first_name":"Kim"},` +
			`"from":{"id":4343,"is_bot":false,"first_name":"Kim"},"text":"/start","entities":[{"type":"bot_command","offset":0,"length":6}]},"pad":"`
		widget := []string{"X-Auth-Token", tok, "Content-Type", "application/json"}
		deal := func(id int64, action string) string {
			return fmt.Sprintf("%s/api/widget/deals/%d/%s", b.URL, id, action)
		}
		doors := map[string]door{
			"POST /amocrm/webhook/:account/:secret": {hook, []string{"Content-Type", "application/x-www-form-urlencoded"}, serverLimit, padded(form, "x", "")},
			"POST /telegram/webhook": {b.URL + "/telegram/webhook", []string{"Content-Type", "application/json", "X-Telegram-Bot-Api-Secret-Token", tgSecret},
				serverLimit, padded(update, "x", `"}`)},
			"PUT /api/widget/settings":              {b.URL + "/api/widget/settings", widget, httpapi.MaxWidgetBody, padded(`{"language":"en"`, " ", "}")},
			"POST /api/widget/link-code/rotate":     {b.URL + "/api/widget/link-code/rotate", widget, httpapi.MaxWidgetBody, padded("{", " ", "}")},
			"PUT /api/widget/deals/:lead/chat":      {deal(fresh.ID, "chat"), widget, httpapi.MaxWidgetBody, padded(fmt.Sprintf(`{"chat_id":%d`, ta.group.ID), " ", "}")},
			"POST /api/widget/deals/:lead/post":     {deal(fresh.ID, "post"), widget, httpapi.MaxWidgetBody, padded("{", " ", "}")},
			"POST /api/widget/deals/:lead/withdraw": {deal(open.ID, "withdraw"), widget, httpapi.MaxWidgetBody, padded("{", " ", "}")},
			"POST /api/widget/deals/:lead/repost":   {deal(open.ID, "repost"), widget, httpapi.MaxWidgetBody, padded("{", " ", "}")},
			"POST /api/widget/deals/:lead/unassign": {deal(taken.ID, "unassign"), widget, httpapi.MaxWidgetBody, padded("{", " ", "}")},
		}
		routes := routeKeys(b, "/", "POST", "PUT", "PATCH", "DELETE")
		checkCovered(t, routes, doors)

		before := snapshot()
		for _, route := range routes {
			d, ok := doors[route]
			if !ok {
				continue
			}
			method := strings.Fields(route)[0]
			over := d.body(serverLimit + 1)
			if s := sendOversized(t, method, d.url, over, false, d.headers...); s != 413 {
				t.Errorf("%s: Content-Length over the server's limit: HTTP %d, want 413", route, s)
			}
			if s := sendOversized(t, method, d.url, over, true, d.headers...); s != 413 {
				t.Errorf("%s: chunked body over the server's limit: HTTP %d, want 413", route, s)
			}
			if d.limit < serverLimit {
				if s, body := send(t, method, d.url, []byte(d.body(d.limit+1)), d.headers...); s != 413 {
					t.Errorf("%s: body over the route's limit of %d: HTTP %d, want 413: %s", route, d.limit, s, body)
				}
			}
			// BodyLimit counts wire bytes; a small gzip must not inflate past it.
			zipped := gzipped(t, d.body(4*serverLimit))
			if s, body := send(t, method, d.url, zipped, append([]string{"Content-Encoding", "gzip"}, d.headers...)...); s != 415 {
				t.Errorf("%s: %d gzip bytes inflating to %d: HTTP %d, want 415: %s", route, len(zipped), 4*serverLimit, s, body)
			}
		}
		// The amoCRM webhook reads its body before it checks the secret: the
		// refusal must come first, so nobody gets a body inflated unasked.
		wrongSecret := hook[:strings.LastIndex(hook, "/")+1] + "wrongsecret"
		zipped := gzipped(t, doors["POST /amocrm/webhook/:account/:secret"].body(4*serverLimit))
		if s, body := send(t, "POST", wrongSecret, zipped, "Content-Encoding", "gzip", "Content-Type", "application/x-www-form-urlencoded"); s != 415 {
			t.Errorf("gzip to the amoCRM webhook with a wrong secret: HTTP %d, want 415: %s", s, body)
		}
		settle()
		if after := snapshot(); after != before {
			t.Fatalf("refused bodies wrote something:\nbefore: %s\nafter:  %s", before, after)
		}
		eventsBefore, _ := b.Flow().EventsReceived(ctx, ta.acc.ID)

		// The same doors take a body of exactly their limit.
		for _, route := range routes {
			d, ok := doors[route]
			if !ok {
				continue
			}
			method := strings.Fields(route)[0]
			if s, body := send(t, method, d.url, []byte(d.body(d.limit)), d.headers...); s != 200 {
				t.Errorf("%s: body of exactly %d bytes: HTTP %d, want 200: %s", route, d.limit, s, body)
			}
		}
		eventually(t, "the webhooks at the limit stored", func() bool {
			n, _ := b.Store().MaxUpdateID(ctx)
			events, _ := b.Flow().EventsReceived(ctx, ta.acc.ID)
			// At least: Unassign's write-back comes back from amoCRM as events too.
			return n == 910000001 && events >= eventsBefore+1
		})
		if st, _ := b.Store().Settings(ctx, ta.acc.ID); st.Language != "en" {
			t.Errorf("settings of exactly %d bytes not saved: %+v", httpapi.MaxWidgetBody, st)
		}
		if after := snapshot(); after == before {
			t.Error("bodies at the limit changed nothing")
		}
	})
}
