package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/secret"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// StatsBase is the start of the seeded period: a Monday, 10:00 UTC.
var StatsBase = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

var (
	ivan = dispatch.Executor{TelegramID: 11, FirstName: "Иван", LastName: "Петров", Username: "ivan"}
	olga = dispatch.Executor{TelegramID: 22, FirstName: "Ольга", Username: "olga"}
)

// statsOrders are orders of account 1 (chats -100 and -200, pipelines 1 and
// 2), one of account 2 posted in the same minutes and taken by the same
// executor, one of account 1 posted before the period and one never posted.
var statsOrders = []dbtest.SeedOrder{
	dbtest.O(1, 1, 1, -100, 0, ivan, 60*time.Second, dispatch.OrderDone, 3600*time.Second),
	// Sub-second moments: 10:10:00.3 to 10:14:00.8 is 240 s, each cut to its
	// second (rounded, it would be 241).
	dbtest.O(1, 2, 1, -100, 10*time.Minute+300*time.Millisecond, ivan, 240*time.Second+500*time.Millisecond, dispatch.OrderDone, 1800*time.Second),
	dbtest.O(1, 3, 1, -100, 20*time.Minute, olga, 600*time.Second, dispatch.OrderReleased, 100*time.Second),
	dbtest.O(1, 4, 2, -200, 30*time.Minute, olga, 1200*time.Second, dispatch.OrderDone, 7200*time.Second),
	dbtest.O(1, 5, 2, -200, 40*time.Minute, ivan, 3000*time.Second, dispatch.OrderOnWay, 60*time.Second),
	dbtest.O(1, 6, 1, -200, 50*time.Minute, olga, 5400*time.Second, "", 0),
	dbtest.O(1, 7, 1, -100, 60*time.Minute, dispatch.Executor{}, 0, dispatch.OrderWithdrawn, time.Minute),
	dbtest.O(1, 8, 2, -100, 70*time.Minute, dispatch.Executor{}, 0, "", 0),
	// Not counted: another account's, one posted before the period, one never posted.
	dbtest.O(2, 1, 1, -300, 5*time.Minute, ivan, time.Second, dispatch.OrderDone, time.Second),
	dbtest.O(1, 9, 1, -100, -time.Hour, ivan, time.Second, dispatch.OrderDone, time.Second),
	dbtest.O(1, 10, 1, -100, dbtest.NeverPosted, dispatch.Executor{}, 0, "", 0),
}

// seedStats installs accounts 1 and 2 with their chats and seeds orders.
func seedStats(t *testing.T, kind dbtest.Kind, orders []dbtest.SeedOrder) *store.DB {
	t.Helper()
	clk := &dbtest.Clock{}
	db := dbtest.Open(t, kind, clk.Now)
	for _, id := range []int64{1, 2} {
		install(t, db, id)
	}
	for _, c := range []dispatch.Chat{{ID: -100, AccountID: 1, Title: "Group A"}, {ID: -200, AccountID: 1, Title: "Group B"},
		{ID: -300, AccountID: 2, Title: "Other"}} {
		if _, err := db.LinkChat(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	dbtest.SeedOrders(t, db, clk, StatsBase, orders)
	return db
}

func dur(s int64) *time.Duration { d := time.Duration(s) * time.Second; return &d }

func at(s int64) *time.Time { t := StatsBase.Add(time.Duration(s) * time.Second); return &t }

// Every figure of a seeded period, by hand: take times 60, 240, 600, 1200,
// 3000, 5400 s; median = rank ⌈6·0.5⌉ = 3rd = 600 s, p90 = rank ⌈5.4⌉ = 6th.
func TestStatsFigures(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := seedStats(t, kind, statsOrders)
		day := dispatch.StatsQuery{AccountID: 1, From: StatsBase, To: StatsBase.Add(24 * time.Hour)}
		got, err := db.Stats(ctx, day)
		if err != nil {
			t.Fatal(err)
		}
		want := dispatch.Stats{Query: day,
			Totals: dispatch.StatTotals{Posted: 8, Taken: 6, Done: 3, Released: 1, Withdrawn: 1, NeverTaken: 2,
				TakeMedian: dur(600), TakeP90: dur(5400), Within5m: 2, Within15m: 3, Within60m: 5},
			Executors: []dispatch.ExecutorStats{
				// 3600 and 1800 s to done: the lower middle, 1800. Last: order 5's
				// "on the way", 40 min + 3000 s + 60 s.
				{TelegramID: 11, Name: "Иван Петров", Username: "ivan", Taken: 3, Done: 2, DoneMedian: dur(1800), LastActivity: at(2400 + 3000 + 60)},
				{TelegramID: 22, Name: "Ольга", Username: "olga", Taken: 3, Done: 1, Released: 1, DoneMedian: dur(7200), LastActivity: at(1800 + 1200 + 7200)},
			},
			Chats: []dispatch.ChatStats{
				{ChatID: -100, Title: "Group A", Posted: 5, Taken: 3, TakeMedian: dur(240)},
				{ChatID: -200, Title: "Group B", Posted: 3, Taken: 3, TakeMedian: dur(3000)},
			},
		}
		checkStats(t, got, want)

		// Pipeline 1 only: orders 1, 2, 3, 6 (taken: 60, 240, 600, 5400 s) and 7.
		one := day
		one.PipelineID = 1
		got, err = db.Stats(ctx, one)
		if err != nil {
			t.Fatal(err)
		}
		checkStats(t, got, dispatch.Stats{Query: one,
			Totals: dispatch.StatTotals{Posted: 5, Taken: 4, Done: 2, Released: 1, Withdrawn: 1, NeverTaken: 1,
				TakeMedian: dur(240), TakeP90: dur(5400), Within5m: 2, Within15m: 3, Within60m: 3},
			Executors: []dispatch.ExecutorStats{
				// Last activity is theirs on any order of the account: the
				// same as without the filter.
				{TelegramID: 11, Name: "Иван Петров", Username: "ivan", Taken: 2, Done: 2, DoneMedian: dur(1800), LastActivity: at(2400 + 3000 + 60)},
				{TelegramID: 22, Name: "Ольга", Username: "olga", Taken: 2, Released: 1, LastActivity: at(1800 + 1200 + 7200)},
			},
			Chats: []dispatch.ChatStats{
				{ChatID: -100, Title: "Group A", Posted: 4, Taken: 3, TakeMedian: dur(240)},
				{ChatID: -200, Title: "Group B", Posted: 1, Taken: 1, TakeMedian: dur(5400)},
			},
		})

		// The other account sees its one order only.
		other := dispatch.StatsQuery{AccountID: 2, From: StatsBase, To: StatsBase.Add(24 * time.Hour)}
		got, err = db.Stats(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		checkStats(t, got, dispatch.Stats{Query: other,
			Totals: dispatch.StatTotals{Posted: 1, Taken: 1, Done: 1, TakeMedian: dur(1), TakeP90: dur(1), Within5m: 1, Within15m: 1, Within60m: 1},
			Executors: []dispatch.ExecutorStats{{TelegramID: 11, Name: "Иван Петров", Username: "ivan", Taken: 1, Done: 1,
				DoneMedian: dur(1), LastActivity: at(5*60 + 2)}},
			Chats: []dispatch.ChatStats{{ChatID: -300, Title: "Other", Posted: 1, Taken: 1, TakeMedian: dur(1)}},
		})

		// A period with nothing in it has no percentiles.
		empty := dispatch.StatsQuery{AccountID: 1, From: StatsBase.Add(48 * time.Hour), To: StatsBase.Add(72 * time.Hour)}
		got, err = db.Stats(ctx, empty)
		if err != nil {
			t.Fatal(err)
		}
		checkStats(t, got, dispatch.Stats{Query: empty})
	})
}

func checkStats(t *testing.T, got, want dispatch.Stats) {
	t.Helper()
	if g, w := show(got), show(want); g != w {
		t.Errorf("stats for %v:\n got %s\nwant %s", want.Query, g, w)
	}
}

// show prints stats with their pointers followed, for an exact comparison.
func show(s dispatch.Stats) string {
	d := func(p *time.Duration) string {
		if p == nil {
			return "-"
		}
		return p.String()
	}
	out := fmtv("totals", s.Totals.Posted, s.Totals.Taken, s.Totals.Done, s.Totals.Released, s.Totals.Withdrawn,
		s.Totals.NeverTaken, d(s.Totals.TakeMedian), d(s.Totals.TakeP90), s.Totals.Within5m, s.Totals.Within15m, s.Totals.Within60m)
	for _, e := range s.Executors {
		last := "-"
		if e.LastActivity != nil {
			last = e.LastActivity.UTC().Format(time.RFC3339Nano)
		}
		out += fmtv("\n  executor", e.TelegramID, e.Name, e.Username, e.Taken, e.Done, e.Released, d(e.DoneMedian), last)
	}
	for _, c := range s.Chats {
		out += fmtv("\n  chat", c.ChatID, c.Title, c.Posted, c.Taken, d(c.TakeMedian))
	}
	return out
}

func fmtv(label string, v ...any) string { return label + fmt.Sprintf(" %v", v) }

// Orders stored before migration 00010 get their post's moment from the
// timeline's "posted" step, else from the take (a press proved the post),
// else, for a recorded message, from their creation; unposted ones get none.
func TestPostedAtFilledByMigration(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		dbURL, dir := dbtest.NewURL(t, kind)
		box, err := secret.New([][]byte{dbtest.Key})
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(ctx, store.Options{URL: dbURL, SQLitePath: filepath.Join(dir, "dispatcher.db"), Box: box})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.MigrateToForTest(ctx, 7); err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if kind == dbtest.Postgres {
				for i := 1; strings.Contains(q, "?"); i++ {
					q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
				}
			}
			if _, err := db.SQL().ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		base := StatsBase
		order := func(id, status string, message int, taken *time.Time) {
			// Each its own deal: the message id serves as the deal's id.
			exec(`INSERT INTO orders (id, account_id, lead_id, pipeline_id, stage_id, chat_id, message_id, status, active, taken_at, created_at, updated_at)
				VALUES (?, 1, ?, 1, 1, -100, ?, ?, ?, ?, ?, ?)`, id, 100+message+len(id), message, status, false, taken, base, base)
		}
		takenAt := base.Add(3 * time.Hour)
		order("a-posted-event", "open", 5, nil)
		exec(`INSERT INTO order_events (id, account_id, order_id, kind, at) VALUES ('e1', 1, 'a-posted-event', 'posted', ?)`, base.Add(time.Hour))
		order("b-taken", "taken", 6, &takenAt)
		order("c-withdrawn", "withdrawn", 7, nil)
		order("d-posting", "posting", 0, nil)
		order("e-failed", "failed", 0, nil)
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			from, to      time.Duration
			posted, taken int64
		}{
			{-time.Hour, 4 * time.Hour, 3, 1},        // a, b and c; never d or e
			{30 * time.Minute, 2 * time.Hour, 1, 0},  // a, by its "posted" step, not its creation
			{150 * time.Minute, 4 * time.Hour, 1, 1}, // b, by its take
			{-time.Minute, time.Minute, 1, 0},        // c, by its creation
		} {
			st, err := db.Stats(ctx, dispatch.StatsQuery{AccountID: 1, From: base.Add(c.from), To: base.Add(c.to)})
			if err != nil {
				t.Fatal(err)
			}
			if st.Totals.Posted != c.posted || st.Totals.Taken != c.taken {
				t.Errorf("[%v, %v): posted %d taken %d, want %d %d", c.from, c.to, st.Totals.Posted, st.Totals.Taken, c.posted, c.taken)
			}
		}
	})
}
