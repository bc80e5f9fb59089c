package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func scrape(t *testing.T, h http.Handler, auth string) (int, string) {
	t.Helper()
	r := httptest.NewRequest("GET", "/metrics", nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

type gauges struct{}

func (gauges) QueueDepth(context.Context) (map[[2]string]int64, error) {
	return map[[2]string]int64{{"post_order", "available"}: 3}, nil
}
func (gauges) AccountsByStatus(context.Context) (map[string]int64, error) {
	return map[string]int64{"active": 2, "revoked": 1}, nil
}

// The transports label requests by Bot API method (never the token in the
// path) and by result, 429 on its own; the handler demands the token.
func TestTransportsAndHandler(t *testing.T) {
	answer := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(answer) }))
	defer srv.Close()
	m := New()
	m.WatchDatabase(gauges{})
	tg := &http.Client{Transport: m.Transport("telegram", nil)}
	amo := &http.Client{Transport: m.Transport("amocrm", nil)}
	for _, c := range []struct {
		client *http.Client
		path   string
		status int
	}{
		{tg, "/bot123:SECRET/sendMessage", 200}, {tg, "/bot123:SECRET/sendMessage", 429}, {tg, "/bot123:SECRET/answerCallbackQuery", 200},
		{tg, "/bot123:SECRET/madeUpMethod", 400}, {amo, "/api/v4/leads/1", 200}, {amo, "/api/v4/leads/1", 429}, {amo, "/oauth2/access_token", 401},
		{amo, "/api/v4/account", 503},
	} {
		answer = c.status
		resp, err := c.client.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	m.Webhook("refused", "unauthorized")
	m.Job("post_order", "ok")
	m.Caught("lost_deal", 2)

	h := m.Handler("tok-0123456789abcdef")
	for _, auth := range []string{"", "Bearer wrong", "tok-0123456789abcdef"} {
		if code, body := scrape(t, h, auth); code != 401 || strings.Contains(body, "amodispatch") {
			t.Errorf("scrape with %q: %d", auth, code)
		}
	}
	code, body := scrape(t, h, "Bearer tok-0123456789abcdef")
	if code != 200 {
		t.Fatalf("scrape: %d", code)
	}
	for _, want := range []string{
		`amodispatch_telegram_requests_total{method="sendMessage",result="ok"} 1`,
		`amodispatch_telegram_requests_total{method="sendMessage",result="429"} 1`,
		`amodispatch_telegram_requests_total{method="answerCallbackQuery",result="ok"} 1`,
		`amodispatch_telegram_requests_total{method="other",result="4xx"} 1`,
		`amodispatch_amocrm_requests_total{result="ok"} 1`, `amodispatch_amocrm_requests_total{result="429"} 1`,
		`amodispatch_amocrm_requests_total{result="401"} 1`, `amodispatch_amocrm_requests_total{result="5xx"} 1`,
		`amodispatch_webhooks_total{reason="unauthorized",result="refused"} 1`,
		`amodispatch_jobs_total{kind="post_order",outcome="ok"} 1`, `amodispatch_reconciler_catches_total{what="lost_deal"} 2`,
		`amodispatch_queue_jobs{kind="post_order",state="available"} 3`, `amodispatch_accounts{status="revoked"} 1`,
		`amodispatch_database_scrape_ok 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(body, "SECRET") || strings.Contains(body, "madeUpMethod") {
		t.Error("a path reached a label")
	}
}
