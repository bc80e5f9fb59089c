package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// A year of a busy account (100 000 orders, about 270 a day, 10 executors,
// 5 groups) beside another account of the same size: the statistics of the
// whole year and of 30 days. `go test -run '^$' -bench StatsYear ./backend/internal/store/`
func BenchmarkStatsYear(b *testing.B) {
	for _, kind := range dbtest.Kinds(b) {
		b.Run(string(kind), func(b *testing.B) {
			ctx := context.Background()
			db := dbtest.Open(b, kind, nil)
			const perAccount = 100_000
			start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			step := 365 * 24 * time.Hour / perAccount
			ph := func(n, base int) string { // "(?,?,…)" or "($1,$2,…)"
				var sb strings.Builder
				sb.WriteString("(")
				for i := range n {
					if i > 0 {
						sb.WriteString(",")
					}
					if kind == dbtest.Postgres {
						fmt.Fprintf(&sb, "$%d", base+i+1)
					} else {
						sb.WriteString("?")
					}
				}
				return sb.String() + ")"
			}
			for acc := int64(1); acc <= 2; acc++ {
				for lo := 0; lo < perAccount; lo += 500 {
					var orders, events []string
					var oargs, eargs []any
					for i := lo; i < lo+500; i++ {
						id := fmt.Sprintf("%d-%d", acc, i)
						posted := start.Add(time.Duration(i) * step)
						status, taker := "withdrawn", int64(0)
						var taken *time.Time
						if i%5 != 0 {
							at := posted.Add(time.Duration(i%3600) * time.Second)
							taken, taker = &at, int64(1000+i%10)
							status = []string{"done", "done", "done", "released", "taken"}[i%5]
						}
						orders = append(orders, ph(14, len(oargs)))
						oargs = append(oargs, id, acc, int64(i), int64(1+i%3), int64(1), int64(-100-i%5), int64(i+1), status, false,
							taker, taken, posted, posted, posted)
						if taken != nil {
							events = append(events, ph(6, len(eargs)))
							eargs = append(eargs, id+"t", acc, id, dispatch.EventTaken, taker, *taken)
							if status == "done" {
								events = append(events, ph(6, len(eargs)))
								eargs = append(eargs, id+"d", acc, id, "done", taker, taken.Add(time.Hour))
							}
						}
					}
					q := "INSERT INTO orders (id, account_id, lead_id, pipeline_id, stage_id, chat_id, message_id, status, active, executor_id, taken_at, posted_at, created_at, updated_at) VALUES " +
						strings.Join(orders, ",")
					if _, err := db.SQL().ExecContext(ctx, q, oargs...); err != nil {
						b.Fatal(err)
					}
					if _, err := db.SQL().ExecContext(ctx, "INSERT INTO order_events (id, account_id, order_id, kind, telegram_id, at) VALUES "+
						strings.Join(events, ","), eargs...); err != nil {
						b.Fatal(err)
					}
				}
			}
			if kind == dbtest.Postgres {
				// Steady state: autovacuum keeps the visibility map, which
				// index-only scans need, and the planner's statistics.
				if _, err := db.SQL().ExecContext(ctx, "VACUUM ANALYZE"); err != nil {
					b.Fatal(err)
				}
			}
			for _, p := range []struct {
				name string
				from time.Time
			}{{"year", start}, {"30d", start.Add(335 * 24 * time.Hour)}} {
				b.Run(p.name, func(b *testing.B) {
					q := dispatch.StatsQuery{AccountID: 1, From: p.from, To: start.Add(366 * 24 * time.Hour)}
					for b.Loop() {
						st, err := db.Stats(ctx, q)
						if err != nil || st.Totals.Posted == 0 {
							b.Fatal(st.Totals, err)
						}
					}
				})
			}
		})
	}
}
