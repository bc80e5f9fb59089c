package httpapi

import (
	"bytes"
	"encoding/csv"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

// The statistics page's JSON. Durations are whole seconds (null when there is
// nothing to measure); moments are RFC 3339 in the account's time zone.
type (
	StatsView struct {
		From string `json:"from"`
		To   string `json:"to"` // the next midnight after the last day
		// FirstDay and LastDay are the period's days (YYYY-MM-DD), both included.
		FirstDay   string              `json:"first_day"`
		LastDay    string              `json:"last_day"`
		Zone       string              `json:"zone"`
		PipelineID int64               `json:"pipeline_id"`
		Totals     StatTotalsView      `json:"totals"`
		Executors  []ExecutorStatsView `json:"executors"`
		Chats      []ChatStatsView     `json:"chats"`
	}
	StatTotalsView struct {
		Posted      int64  `json:"posted"`
		Taken       int64  `json:"taken"`
		Done        int64  `json:"done"`
		Released    int64  `json:"released"`
		Withdrawn   int64  `json:"withdrawn"`
		NeverTaken  int64  `json:"never_taken"`
		TakeMedianS *int64 `json:"take_median_s"`
		TakeP90S    *int64 `json:"take_p90_s"`
		Within5m    int64  `json:"taken_within_5m"`
		Within15m   int64  `json:"taken_within_15m"`
		Within60m   int64  `json:"taken_within_60m"`
	}
	ExecutorStatsView struct {
		TelegramID   int64   `json:"telegram_id"`
		Name         string  `json:"name"`
		Username     string  `json:"username"`
		Taken        int64   `json:"taken"`
		Done         int64   `json:"done"`
		Released     int64   `json:"released"`
		DoneMedianS  *int64  `json:"done_median_s"`
		LastActivity *string `json:"last_activity"`
	}
	ChatStatsView struct {
		ChatID      int64  `json:"chat_id"`
		Title       string `json:"title"`
		Posted      int64  `json:"posted"`
		Taken       int64  `json:"taken"`
		TakeMedianS *int64 `json:"take_median_s"`
	}
)

func seconds(d *time.Duration) *int64 {
	if d == nil {
		return nil
	}
	s := int64(*d / time.Second)
	return &s
}

func statsView(st dispatch.Stats) StatsView {
	loc, err := time.LoadLocation(st.Zone)
	if err != nil {
		loc = time.UTC
	}
	t := st.Totals
	v := StatsView{From: st.Query.From.In(loc).Format(time.RFC3339), To: st.Query.To.In(loc).Format(time.RFC3339),
		FirstDay: st.Query.From.In(loc).Format(time.DateOnly), LastDay: st.Query.To.In(loc).AddDate(0, 0, -1).Format(time.DateOnly),
		Zone: loc.String(), PipelineID: st.Query.PipelineID,
		Totals: StatTotalsView{Posted: t.Posted, Taken: t.Taken, Done: t.Done, Released: t.Released, Withdrawn: t.Withdrawn,
			NeverTaken: t.NeverTaken, TakeMedianS: seconds(t.TakeMedian), TakeP90S: seconds(t.TakeP90),
			Within5m: t.Within5m, Within15m: t.Within15m, Within60m: t.Within60m},
		Executors: []ExecutorStatsView{}, Chats: []ChatStatsView{}}
	for _, e := range st.Executors {
		ev := ExecutorStatsView{TelegramID: e.TelegramID, Name: e.Name, Username: e.Username, Taken: e.Taken, Done: e.Done,
			Released: e.Released, DoneMedianS: seconds(e.DoneMedian)}
		if e.LastActivity != nil {
			s := e.LastActivity.In(loc).Format(time.RFC3339)
			ev.LastActivity = &s
		}
		v.Executors = append(v.Executors, ev)
	}
	for _, c := range st.Chats {
		v.Chats = append(v.Chats, ChatStatsView{ChatID: c.ChatID, Title: c.Title, Posted: c.Posted, Taken: c.Taken,
			TakeMedianS: seconds(c.TakeMedian)})
	}
	return v
}

// statsCSVHeader is the CSV's first line. One table holds the page's rows:
// the period's totals, then one row per executor, then one per chat; a
// column that does not apply to a row is empty.
var statsCSVHeader = []string{"section", "id", "name", "username", "posted", "taken", "done", "released", "withdrawn",
	"never_taken", "take_median_s", "take_p90_s", "taken_within_5m", "taken_within_15m", "taken_within_60m",
	"done_median_s", "last_activity"}

func statsCSV(v StatsView) []byte {
	n := func(i int64) string { return strconv.FormatInt(i, 10) }
	opt := func(p *int64) string {
		if p == nil {
			return ""
		}
		return n(*p)
	}
	t := v.Totals
	rows := [][]string{statsCSVHeader,
		{"total", "", "", "", n(t.Posted), n(t.Taken), n(t.Done), n(t.Released), n(t.Withdrawn), n(t.NeverTaken),
			opt(t.TakeMedianS), opt(t.TakeP90S), n(t.Within5m), n(t.Within15m), n(t.Within60m), "", ""}}
	for _, e := range v.Executors {
		last := ""
		if e.LastActivity != nil {
			last = *e.LastActivity
		}
		rows = append(rows, []string{"executor", n(e.TelegramID), cell(e.Name), cell(e.Username), "", n(e.Taken), n(e.Done),
			n(e.Released), "", "", "", "", "", "", "", opt(e.DoneMedianS), last})
	}
	for _, c := range v.Chats {
		rows = append(rows, []string{"chat", n(c.ChatID), cell(c.Title), "", n(c.Posted), n(c.Taken), "", "", "", "",
			opt(c.TakeMedianS), "", "", "", "", "", ""})
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.WriteAll(rows) // a bytes.Buffer does not fail
	return b.Bytes()
}

// cell keeps a name typed in Telegram from being a spreadsheet formula when
// the CSV is opened (CSV injection): a leading = + - @ gets a quote.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func statsRequest(c *fiber.Ctx) (service.StatsRequest, error) {
	r := service.StatsRequest{Period: c.Query("period"), From: c.Query("from"), To: c.Query("to")}
	if p := c.Query("pipeline_id"); p != "" && p != "0" {
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil || id <= 0 {
			return r, dispatch.Invalid("pipeline_id must be a positive integer")
		}
		r.PipelineID = id
	}
	return r, nil
}

// statsRoutes are the admin's statistics: the page's JSON and its CSV.
func (h *handlers) statsRoutes(g fiber.Router) {
	stats := func(c *fiber.Ctx) (StatsView, error) {
		r, err := statsRequest(c)
		if err != nil {
			return StatsView{}, err
		}
		st, err := h.d.Widget.Stats(c.UserContext(), account(c), r)
		if err != nil {
			return StatsView{}, err
		}
		return statsView(st), nil
	}
	g.Get("/stats", h.adminOnly, func(c *fiber.Ctx) error {
		v, err := stats(c)
		if err != nil {
			return err
		}
		return c.JSON(v)
	})
	g.Get("/stats.csv", h.adminOnly, func(c *fiber.Ctx) error {
		v, err := stats(c)
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
		c.Set(fiber.HeaderContentDisposition, `attachment; filename="amodispatch-stats-`+v.FirstDay+`-`+v.LastDay+`.csv"`)
		return c.Send(statsCSV(v))
	})
}
