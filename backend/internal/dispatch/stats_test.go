package dispatch

import (
	"errors"
	"testing"
	"time"
)

func TestPercentileRank(t *testing.T) {
	for _, c := range []struct{ p, n, want int64 }{
		{50, 0, 0}, {50, 1, 1}, {90, 1, 1}, {50, 2, 1}, {90, 2, 2}, {50, 3, 2}, {50, 4, 2}, {90, 4, 4},
		{50, 6, 3}, {90, 6, 6}, {90, 10, 9}, {90, 11, 10}, {50, 100, 50}, {90, 100, 90}, {90, 101, 91},
	} {
		if got := PercentileRank(c.p, c.n); got != c.want {
			t.Errorf("PercentileRank(%d, %d) = %d, want %d", c.p, c.n, got, c.want)
		}
	}
}

// Periods are cut at midnight in the account's zone, whatever the server's.
func TestStatsPeriod(t *testing.T) {
	msk := time.FixedZone("MSK", 3*3600)
	now := time.Date(2026, 3, 2, 22, 30, 0, 0, time.UTC) // 3 March 01:30 in Moscow
	day := func(m time.Month, d int) time.Time { return time.Date(2026, m, d, 0, 0, 0, 0, msk) }
	for _, c := range []struct {
		period, from, to string
		want             [2]time.Time
	}{
		{"today", "", "", [2]time.Time{day(3, 3), day(3, 4)}},
		{"", "", "", [2]time.Time{day(3, 3), day(3, 4)}},
		{"7d", "", "", [2]time.Time{day(2, 25), day(3, 4)}},
		{"30d", "", "", [2]time.Time{day(2, 2), day(3, 4)}},
		{"custom", "2026-03-02", "2026-03-02", [2]time.Time{day(3, 2), day(3, 3)}},
		{"custom", "2025-03-03", "2026-03-02", [2]time.Time{day(3, 3).AddDate(-1, 0, 0), day(3, 3)}},
	} {
		from, to, err := StatsPeriod(c.period, c.from, c.to, now, msk)
		if err != nil || !from.Equal(c.want[0]) || !to.Equal(c.want[1]) {
			t.Errorf("%s %s %s: [%v, %v) %v, want [%v, %v)", c.period, c.from, c.to, from, to, err, c.want[0], c.want[1])
		}
	}
	for _, c := range [][3]string{{"year", "", ""}, {"custom", "", "2026-03-01"}, {"custom", "2026-03-02", "x"},
		{"custom", "2026-03-05", "2026-03-01"}, {"custom", "2025-03-01", "2026-03-02"}} {
		if _, _, err := StatsPeriod(c[0], c[1], c[2], now, msk); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", c, err)
		}
	}
}
