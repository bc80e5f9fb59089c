package store

import (
	"context"
	"fmt"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// The figures are computed by the database from the period's orders (the
// orders_stats index on account_id, posted_at finds them) and, for done times
// and last activity, their timeline steps (found by order id through
// order_events_once). Percentiles are picked in SQL with window functions,
// which PostgreSQL and SQLite share; see dispatch.PercentileRank.

// secs is a moment cut to its whole second, as Unix seconds, written for the
// dialect so that both databases compute the same durations.
func (db *DB) secs(col string) string {
	if db.dialect == Postgres {
		return "CAST(FLOOR(EXTRACT(EPOCH FROM " + col + ")) AS BIGINT)"
	}
	return "CAST(strftime('%s', " + col + ") AS INTEGER)"
}

// cohort is the WHERE of the period's orders (aliased o) and its arguments.
func cohort(q dispatch.StatsQuery) (string, []any) {
	where := "o.account_id = ? AND o.posted_at >= ? AND o.posted_at < ?"
	args := []any{q.AccountID, q.From.UTC(), q.To.UTC()}
	if q.PipelineID != 0 {
		where += " AND o.pipeline_id = ?"
		args = append(args, q.PipelineID)
	}
	return where, args
}

// Stats computes an account's figures for a period.
func (db *DB) Stats(ctx context.Context, q dispatch.StatsQuery) (dispatch.Stats, error) {
	out := dispatch.Stats{Query: q}
	where, args := cohort(q)
	g := db.gorm.WithContext(ctx)
	take := db.secs("o.taken_at") + " - " + db.secs("o.posted_at")

	var t struct {
		Posted, Taken, Done, Released, Withdrawn, W5, W15, W60 int64
	}
	within := func(s int) string {
		return fmt.Sprintf("COUNT(CASE WHEN o.taken_at IS NOT NULL AND %s <= %d THEN 1 END)", take, s)
	}
	err := g.Raw(`SELECT COUNT(*) AS posted,
		COUNT(o.taken_at) AS taken,
		COUNT(CASE WHEN o.status = 'done' THEN 1 END) AS done,
		COUNT(CASE WHEN o.status = 'released' THEN 1 END) AS released,
		COUNT(CASE WHEN o.status = 'withdrawn' THEN 1 END) AS withdrawn,
		`+within(5*60)+` AS w5, `+within(15*60)+` AS w15, `+within(60*60)+` AS w60
		FROM orders o WHERE `+where, args...).Scan(&t).Error
	if err != nil {
		return out, translate(err, "stats totals")
	}
	out.Totals = dispatch.StatTotals{Posted: t.Posted, Taken: t.Taken, Done: t.Done, Released: t.Released,
		Withdrawn: t.Withdrawn, NeverTaken: t.Posted - t.Taken, Within5m: t.W5, Within15m: t.W15, Within60m: t.W60}

	overall, err := db.percentiles(ctx, "0", take, "", where+" AND o.taken_at IS NOT NULL", args)
	if err != nil {
		return out, err
	}
	out.Totals.TakeMedian, out.Totals.TakeP90 = overall[0].median, overall[0].p90

	if out.Executors, err = db.executorStats(ctx, where, args); err != nil {
		return out, err
	}
	if out.Chats, err = db.chatStats(ctx, q.AccountID, where, args, take); err != nil {
		return out, err
	}
	return out, nil
}

func (db *DB) executorStats(ctx context.Context, where string, args []any) ([]dispatch.ExecutorStats, error) {
	g := db.gorm.WithContext(ctx)
	var rows []struct {
		TelegramID            int64
		Name, Username        string
		Taken, Done, Released int64
	}
	err := g.Raw(`SELECT o.executor_id AS telegram_id, MAX(o.executor_name) AS name, MAX(o.executor_username) AS username,
		COUNT(*) AS taken,
		COUNT(CASE WHEN o.status = 'done' THEN 1 END) AS done,
		COUNT(CASE WHEN o.status = 'released' THEN 1 END) AS released
		FROM orders o WHERE `+where+` AND o.taken_at IS NOT NULL
		GROUP BY o.executor_id ORDER BY taken DESC, o.executor_id`, args...).Scan(&rows).Error
	if err != nil {
		return nil, translate(err, "stats per executor")
	}
	done, err := db.percentiles(ctx, "o.executor_id", db.secs("d.at")+" - "+db.secs("o.taken_at"),
		"JOIN order_events d ON d.order_id = o.id AND d.kind = 'done'", where+" AND o.taken_at IS NOT NULL", args)
	if err != nil {
		return nil, err
	}
	var last []struct{ TelegramID, At int64 }
	err = g.Raw(`SELECT e.telegram_id AS telegram_id, `+db.secs("MAX(e.at)")+` AS at
		FROM orders o JOIN order_events e ON e.order_id = o.id
		WHERE `+where+` AND e.account_id = o.account_id AND e.telegram_id <> 0 AND e.kind IN ?
		GROUP BY e.telegram_id`, append(append([]any{}, args...), []string{dispatch.EventTaken, string(dispatch.OrderOnWay),
		string(dispatch.OrderStarted), string(dispatch.OrderDone), string(dispatch.OrderReleased)})...).Scan(&last).Error
	if err != nil {
		return nil, translate(err, "stats last activity")
	}
	lastAt := map[int64]time.Time{}
	for _, l := range last {
		lastAt[l.TelegramID] = time.Unix(l.At, 0).UTC()
	}
	out := make([]dispatch.ExecutorStats, len(rows))
	for i, r := range rows {
		out[i] = dispatch.ExecutorStats{TelegramID: r.TelegramID, Name: r.Name, Username: r.Username, Taken: r.Taken,
			Done: r.Done, Released: r.Released, DoneMedian: done[r.TelegramID].median}
		if at, ok := lastAt[r.TelegramID]; ok {
			out[i].LastActivity = &at
		}
	}
	return out, nil
}

func (db *DB) chatStats(ctx context.Context, accountID int64, where string, args []any, take string) ([]dispatch.ChatStats, error) {
	g := db.gorm.WithContext(ctx)
	var rows []struct{ ChatID, Posted, Taken int64 }
	err := g.Raw(`SELECT o.chat_id AS chat_id, COUNT(*) AS posted, COUNT(o.taken_at) AS taken
		FROM orders o WHERE `+where+` GROUP BY o.chat_id ORDER BY posted DESC, o.chat_id`, args...).Scan(&rows).Error
	if err != nil {
		return nil, translate(err, "stats per chat")
	}
	med, err := db.percentiles(ctx, "o.chat_id", take, "", where+" AND o.taken_at IS NOT NULL", args)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ChatID
	}
	titles := map[int64]string{}
	if len(ids) > 0 {
		var chats []chatRow
		// A chat re-linked to another account since keeps no title here.
		if err := g.Where("account_id = ? AND id IN ?", accountID, ids).Find(&chats).Error; err != nil {
			return nil, translate(err, "stats chat titles")
		}
		for _, c := range chats {
			titles[c.ID] = c.Title
		}
	}
	out := make([]dispatch.ChatStats, len(rows))
	for i, r := range rows {
		out[i] = dispatch.ChatStats{ChatID: r.ChatID, Title: titles[r.ChatID], Posted: r.Posted, Taken: r.Taken,
			TakeMedian: med[r.ChatID].median}
	}
	return out, nil
}

type pct struct{ median, p90 *time.Duration }

// percentiles returns, per value of key, the median and 90th percentile of
// the duration dur (an SQL expression in whole seconds) over the period's
// orders (aliased o, joined with join). The database numbers each group's
// durations in order and returns only the rows at the two ranks.
func (db *DB) percentiles(ctx context.Context, key, dur, join, where string, args []any) (map[int64]pct, error) {
	var rows []struct{ K, S, Rn, N int64 }
	err := db.gorm.WithContext(ctx).Raw(`WITH d AS (SELECT `+key+` AS k, `+dur+` AS s FROM orders o `+join+` WHERE `+where+`),
		r AS (SELECT k, s, ROW_NUMBER() OVER (PARTITION BY k ORDER BY s) AS rn, COUNT(*) OVER (PARTITION BY k) AS n FROM d)
		SELECT k, s, rn, n FROM r WHERE rn = (n * 50 + 99) / 100 OR rn = (n * 90 + 99) / 100`, args...).Scan(&rows).Error
	if err != nil {
		return nil, translate(err, "stats percentiles")
	}
	out := map[int64]pct{}
	for _, r := range rows {
		d := time.Duration(r.S) * time.Second
		p := out[r.K]
		if r.Rn == dispatch.PercentileRank(50, r.N) {
			p.median = &d
		}
		if r.Rn == dispatch.PercentileRank(90, r.N) {
			d := d
			p.p90 = &d
		}
		out[r.K] = p
	}
	return out, nil
}
