// Package metrics is the operator's view of a running dispatcher: Prometheus
// counters, histograms and gauges in a registry of its own (never the
// client library's global one, so tests and several backends in one process
// do not collide). Labels are bounded: results, reasons, job kinds, Bot API
// methods; never an account, a chat or a user.
//
// The packages that measure declare the small interface they call; app
// passes them this package's *Metrics.
package metrics

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the dispatcher's metrics and the registry that serves them.
type Metrics struct {
	reg       *prometheus.Registry
	webhooks  *prometheus.CounterVec
	jobs      *prometheus.CounterVec
	telegram  *prometheus.CounterVec
	amocrm    *prometheus.CounterVec
	toPost    prometheus.Histogram
	toAnswer  prometheus.Histogram
	reconcile *prometheus.CounterVec
}

// latencyBuckets span a press answered in 50 ms to a post delayed minutes by
// Telegram's pace or an outage.
var latencyBuckets = []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300}

// New builds the metrics in a fresh registry, with the Go runtime's and the
// process's collectors beside them.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "amodispatch_webhooks_total",
			Help: "amoCRM webhook deliveries by result (accepted, refused) and reason."}, []string{"result", "reason"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "amodispatch_jobs_total",
			Help: "Background jobs worked, by kind and outcome (ok, error, snoozed, cancelled)."}, []string{"kind", "outcome"}),
		telegram: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "amodispatch_telegram_requests_total",
			Help: "Bot API requests by method and result (ok, 429, 4xx, 5xx, error)."}, []string{"method", "result"}),
		amocrm: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "amodispatch_amocrm_requests_total",
			Help: "amoCRM API and OAuth requests by result (ok, 401, 429, 4xx, 5xx, error)."}, []string{"result"}),
		toPost: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "amodispatch_webhook_to_post_seconds",
			Help: "Time from an amoCRM webhook's acceptance to its order's post in the group.", Buckets: latencyBuckets}),
		toAnswer: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "amodispatch_press_to_answer_seconds",
			Help: "Time from a button press's arrival to the bot's answer.", Buckets: latencyBuckets}),
		reconcile: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "amodispatch_reconciler_catches_total",
			Help: "What the reconciler caught: deals without an order (lost_deal), jobs queued again (resumed_job)."}, []string{"what"}),
	}
	m.reg.MustRegister(m.webhooks, m.jobs, m.telegram, m.amocrm, m.toPost, m.toAnswer, m.reconcile,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Webhook counts one amoCRM webhook delivery: accepted, or refused and why.
func (m *Metrics) Webhook(result, reason string) { m.webhooks.WithLabelValues(result, reason).Inc() }

// Job counts one job worked.
func (m *Metrics) Job(kind, outcome string) { m.jobs.WithLabelValues(kind, outcome).Inc() }

// Posted observes the time from a webhook to its order's post.
func (m *Metrics) Posted(sinceWebhook time.Duration) { m.toPost.Observe(sinceWebhook.Seconds()) }

// Answered observes the time from a press's arrival to its answer.
func (m *Metrics) Answered(sincePress time.Duration) { m.toAnswer.Observe(sincePress.Seconds()) }

// Caught counts the reconciler's catches.
func (m *Metrics) Caught(what string, n int) { m.reconcile.WithLabelValues(what).Add(float64(n)) }

// Gauges are read from the database at each scrape: the job queue and the
// accounts. Counts maps label values to a count.
type Gauges interface {
	QueueDepth(ctx context.Context) (map[[2]string]int64, error) // (kind, state) → jobs waiting or running
	AccountsByStatus(ctx context.Context) (map[string]int64, error)
}

// WatchDatabase adds the gauges read from g at each scrape.
func (m *Metrics) WatchDatabase(g Gauges) {
	m.reg.MustRegister(&dbCollector{g: g,
		queue: prometheus.NewDesc("amodispatch_queue_jobs", "Jobs in the queue by kind and state (available, scheduled, retryable, running).",
			[]string{"kind", "state"}, nil),
		accounts: prometheus.NewDesc("amodispatch_accounts", "Installed accounts by status (active, disabled, revoked).",
			[]string{"status"}, nil),
		up: prometheus.NewDesc("amodispatch_database_scrape_ok", "1 when the last scrape read the queue and the accounts.", nil, nil)})
}

type dbCollector struct {
	g                   Gauges
	queue, accounts, up *prometheus.Desc
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queue
	ch <- c.accounts
	ch <- c.up
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ok := 1.0
	if q, err := c.g.QueueDepth(ctx); err == nil {
		for k, n := range q {
			ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(n), k[0], k[1])
		}
	} else {
		ok = 0
	}
	if a, err := c.g.AccountsByStatus(ctx); err == nil {
		for st, n := range a {
			ch <- prometheus.MustNewConstMetric(c.accounts, prometheus.GaugeValue, float64(n), st)
		}
	} else {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, ok)
}

// Handler serves the registry in the Prometheus text format. With a token,
// a scrape must carry "Authorization: Bearer <token>" (401 otherwise).
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Transport counts the requests an HTTP client makes: service "telegram"
// labels them with the Bot API method (the last path segment; the token in
// the path is never a label), service "amocrm" with the result only.
func (m *Metrics) Transport(service string, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		result := "error"
		if err == nil {
			result = resultOf(resp.StatusCode)
		}
		if service == "telegram" {
			m.telegram.WithLabelValues(telegramMethod(r.URL.Path), result).Inc()
		} else {
			m.amocrm.WithLabelValues(result).Inc()
		}
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func resultOf(status int) string {
	switch {
	case status < 300:
		return "ok"
	case status == http.StatusUnauthorized, status == http.StatusTooManyRequests:
		return strconv.Itoa(status)
	case status < 500:
		return "4xx"
	}
	return "5xx"
}

// telegramMethods bounds the method label to the calls the bot makes.
var telegramMethods = map[string]bool{"sendMessage": true, "editMessageText": true, "editMessageReplyMarkup": true,
	"answerCallbackQuery": true, "getUpdates": true, "getMe": true, "deleteMessage": true, "sendChatAction": true,
	"setWebhook": true, "deleteWebhook": true, "getChat": true}

func telegramMethod(path string) string {
	m := path[strings.LastIndexByte(path, '/')+1:]
	if telegramMethods[m] {
		return m
	}
	return "other"
}
