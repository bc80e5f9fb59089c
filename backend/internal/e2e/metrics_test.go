package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

const metricsToken = "scrape-token-0123456789"

// scrape reads /metrics at url with the token ("" for none).
func scrape(t testing.TB, url, token string) (int, string) {
	t.Helper()
	var headers []string
	if token != "" {
		headers = []string{"Authorization", "Bearer " + token}
	}
	status, body, _ := exchange(t, "GET", url, nil, headers...)
	return status, string(body)
}

// sample is one series' value in a scrape (0 when absent); series is the
// name with its labels as Prometheus prints them, sorted by label name.
func sample(t testing.TB, body, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// The operator's metrics move with a dispatch and a take, and are served on
// METRICS_ADDR behind the token only: not on the public address, not
// without the token. With the token alone they are on the public address,
// behind it.
func TestMetricsAfterDispatchAndTake(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start(func(v map[string]string) { v["METRICS_ADDR"] = "127.0.0.1:0"; v["METRICS_TOKEN"] = metricsToken })
		url := "http://" + b.MetricsAddr() + "/metrics"

		for _, tok := range []string{"", "wrong-token-0123456789"} {
			if s, body := scrape(t, url, tok); s != 401 || strings.Contains(body, "amodispatch_") {
				t.Fatalf("scrape with token %q: %d %.200s", tok, s, body)
			}
		}
		if s, body := scrape(t, b.URL+"/metrics", metricsToken); s != 404 || strings.Contains(body, "amodispatch_") {
			t.Fatalf("the public address serves metrics: %d %.200s", s, body)
		}

		tn := newTenant(t, e, b, 48300000, "metrics", "ru", 8300)
		series := []string{
			`amodispatch_webhooks_total{reason="ok",result="accepted"}`,
			`amodispatch_webhooks_total{reason="unauthorized",result="refused"}`,
			`amodispatch_jobs_total{kind="post_order",outcome="ok"}`,
			`amodispatch_jobs_total{kind="amo_update_lead",outcome="ok"}`,
			`amodispatch_telegram_requests_total{method="sendMessage",result="ok"}`,
			`amodispatch_telegram_requests_total{method="answerCallbackQuery",result="ok"}`,
			`amodispatch_amocrm_requests_total{result="ok"}`,
			`amodispatch_webhook_to_post_seconds_count`,
			`amodispatch_press_to_answer_seconds_count`,
		}
		_, before := scrape(t, url, metricsToken)

		l := tn.newLead(t, e, "Заказ для метрик")
		tn.toSearch(t, e, l.ID)
		o := tn.postedOrder(t, b, l.ID)
		ivan := e.tg.AddUser("Иван", "Петров", "ivan")
		msg, _ := e.tg.Message(tn.group.ID, o.MessageID)
		q, err := e.tg.PressButton(tn.group.ID, o.MessageID, ivan.ID, dataOf(t, msg, "t:"))
		if err != nil {
			t.Fatal(err)
		}
		answered(t, e, q)
		wroteBackOnce(t, e, b, tn.acc.ID, l.ID)
		if s, _ := post(t, fmt.Sprintf("%s/amocrm/webhook/%d/not-the-secret", b.URL, tn.acc.ID), "application/x-www-form-urlencoded", "x=1"); s != 401 {
			t.Fatalf("a forged webhook: %d", s)
		}

		var after string
		eventually(t, "every series moved", func() bool {
			_, after = scrape(t, url, metricsToken)
			for _, s := range series {
				if sample(t, after, s) <= sample(t, before, s) {
					return false
				}
			}
			return true
		})
		for _, s := range []string{`amodispatch_accounts{status="active"}`, `amodispatch_database_scrape_ok`} {
			if sample(t, after, s) != 1 {
				t.Errorf("%s = %v, want 1", s, sample(t, after, s))
			}
		}
		// Bounded labels: no account, chat or user id in any series.
		for _, id := range []int64{tn.acc.ID, tn.group.ID, ivan.ID} {
			if strings.Contains(after, strconv.FormatInt(id, 10)+`"`) {
				t.Errorf("a label carries id %d", id)
			}
		}
		if strings.Contains(after, botToken) {
			t.Error("the bot token reached a label")
		}

		// The token alone: /metrics on the public address, behind it.
		b2 := e.start(func(v map[string]string) { v["METRICS_TOKEN"] = metricsToken })
		if s, _ := scrape(t, b2.URL+"/metrics", ""); s != 401 {
			t.Fatalf("public /metrics without the token: %d", s)
		}
		if s, body := scrape(t, b2.URL+"/metrics", metricsToken); s != 200 || !strings.Contains(body, "amodispatch_accounts") {
			t.Fatalf("public /metrics with the token: %d %.200s", s, body)
		}
	})
}
