package store

import (
	"context"
	"database/sql"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// The figures are computed by the database from the period's orders (the
// orders_stats index on account_id, posted_at finds them) and, for done
// times, their timeline steps (found by order id through order_events_once);
// last activity comes from order_events_actor. The durations are computed in
// SQL, each moment cut to its second, and their ranks picked here; see
// dispatch.PercentileRank.

// secs is a moment cut to its whole second, as Unix seconds, written for the
// dialect so that both databases compute the same durations.
func (db *DB) secs(col string) string {
	if db.dialect == Postgres {
		return "CAST(FLOOR(EXTRACT(EPOCH FROM " + col + ")) AS BIGINT)"
	}
	return "unixepoch(" + col + ")" // an integer: the second, cut
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

// Stats computes an account's figures for a period. On PostgreSQL its
// queries share one read-only snapshot, so the figures agree with each other
// while orders are being taken (SQLite's single connection has no other
// writer between them worth a write lock: its transactions take one).
func (db *DB) Stats(ctx context.Context, q dispatch.StatsQuery) (dispatch.Stats, error) {
	if db.dialect != Postgres {
		return db.stats(db.gorm.WithContext(ctx), q)
	}
	var out dispatch.Stats
	err := db.gorm.WithContext(ctx).Transaction(func(g *gorm.DB) error {
		var err error
		out, err = db.stats(g, q)
		return err
	}, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	return out, err
}

func (db *DB) stats(g *gorm.DB, q dispatch.StatsQuery) (dispatch.Stats, error) {
	out := dispatch.Stats{Query: q}
	where, args := cohort(q)
	take := db.secs("o.taken_at") + " - " + db.secs("o.posted_at")

	var t struct {
		Posted, Taken, Done, Released, Withdrawn int64
	}
	err := g.Raw(`SELECT COUNT(*) AS posted, COUNT(o.taken_at) AS taken,
		COUNT(CASE WHEN o.status = 'done' THEN 1 END) AS done,
		COUNT(CASE WHEN o.status = 'released' THEN 1 END) AS released,
		COUNT(CASE WHEN o.status = 'withdrawn' THEN 1 END) AS withdrawn
		FROM orders o WHERE `+where, args...).Scan(&t).Error
	if err != nil {
		return out, translate(err, "stats totals")
	}
	out.Totals = dispatch.StatTotals{Posted: t.Posted, Taken: t.Taken, Done: t.Done, Released: t.Released,
		Withdrawn: t.Withdrawn, NeverTaken: t.Posted - t.Taken}

	d, err := db.durations(g, where, args, take)
	if err != nil {
		return out, err
	}
	overall := percentiles(d.take)
	out.Totals.TakeMedian, out.Totals.TakeP90 = overall.median, overall.p90
	for _, s := range d.take {
		out.Totals.Within5m += within(s, 5*60)
		out.Totals.Within15m += within(s, 15*60)
		out.Totals.Within60m += within(s, 60*60)
	}
	done := map[int64]pct{}
	for ex, ds := range d.doneByExecutor {
		done[ex] = percentiles(ds)
	}
	if out.Executors, err = db.executorStats(g, q.AccountID, q.To, where, args, done); err != nil {
		return out, err
	}
	med := map[int64]pct{}
	for chat, ds := range d.takeByChat {
		med[chat] = percentiles(ds)
	}
	if out.Chats, err = db.chatStats(g, q.AccountID, where, args, med); err != nil {
		return out, err
	}
	return out, nil
}

func (db *DB) executorStats(g *gorm.DB, accountID int64, to time.Time, where string, args []any, done map[int64]pct) ([]dispatch.ExecutorStats, error) {
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
	// Each executor's latest step, from the newest entry of theirs in
	// order_events_actor: one index probe per executor, where joining the
	// period's orders to their steps read the whole period again.
	lastAt := map[int64]time.Time{}
	for _, r := range rows {
		var at []int64
		err := g.Raw(`SELECT `+db.secs("MAX(at)")+` FROM order_events WHERE account_id = ? AND telegram_id = ? AND at < ?`,
			accountID, r.TelegramID, to.UTC()).Scan(&at).Error
		if err != nil {
			return nil, translate(err, "stats last activity")
		}
		if len(at) == 1 && at[0] != 0 {
			lastAt[r.TelegramID] = time.Unix(at[0], 0).UTC()
		}
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

func (db *DB) chatStats(g *gorm.DB, accountID int64, where string, args []any, med map[int64]pct) ([]dispatch.ChatStats, error) {
	var rows []struct{ ChatID, Posted, Taken int64 }
	err := g.Raw(`SELECT o.chat_id AS chat_id, COUNT(*) AS posted, COUNT(o.taken_at) AS taken
		FROM orders o WHERE `+where+` GROUP BY o.chat_id ORDER BY posted DESC, o.chat_id`, args...).Scan(&rows).Error
	if err != nil {
		return nil, translate(err, "stats per chat")
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

// periodDurations are the taken orders' durations in whole seconds.
type periodDurations struct {
	take           []int64           // post to take, every taken order
	takeByChat     map[int64][]int64 // the same by chat
	doneByExecutor map[int64][]int64 // take to done, by executor
}

// durations reads each taken order's durations, computed by the database
// (each moment cut to its second there), in one pass over the period's
// orders; the ranks are then picked here. A window function picking them in
// SQL sorted the period once per figure and took several times as long on
// SQLite.
func (db *DB) durations(g *gorm.DB, where string, args []any, take string) (periodDurations, error) {
	out := periodDurations{takeByChat: map[int64][]int64{}, doneByExecutor: map[int64][]int64{}}
	rows, err := g.Raw(`SELECT o.chat_id, o.executor_id, `+take+`, `+db.secs("d.at")+` - `+db.secs("o.taken_at")+`
		FROM orders o LEFT JOIN order_events d ON d.order_id = o.id AND d.kind = 'done'
		WHERE `+where+` AND o.taken_at IS NOT NULL`, args...).Rows()
	if err != nil {
		return out, translate(err, "stats durations")
	}
	defer rows.Close()
	for rows.Next() {
		var (
			chat, executor, s int64
			done              *int64
		)
		if err := rows.Scan(&chat, &executor, &s, &done); err != nil {
			return out, translate(err, "stats durations")
		}
		out.take = append(out.take, s)
		out.takeByChat[chat] = append(out.takeByChat[chat], s)
		if done != nil {
			out.doneByExecutor[executor] = append(out.doneByExecutor[executor], *done)
		}
	}
	return out, translate(rows.Err(), "stats durations")
}

func within(secs, limit int64) int64 {
	if secs <= limit {
		return 1
	}
	return 0
}

// percentiles picks the median and the 90th percentile of durations in
// seconds by rank (dispatch.PercentileRank); none of no durations.
func percentiles(secs []int64) pct {
	n := int64(len(secs))
	if n == 0 {
		return pct{}
	}
	slices.Sort(secs)
	at := func(p int64) *time.Duration {
		d := time.Duration(secs[dispatch.PercentileRank(p, n)-1]) * time.Second
		return &d
	}
	return pct{median: at(50), p90: at(90)}
}
