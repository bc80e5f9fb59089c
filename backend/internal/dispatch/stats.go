package dispatch

import (
	"time"
)

// The statistics an account's admin sees in the widget (issue #15).
//
// Which orders count: an order belongs to a period by the moment its post
// went out (Order posted_at), whatever happened to it later. Every figure of
// a period is about that cohort of orders: "taken" counts those of them
// taken since, at any time; an order posted last week and done today counts
// in last week. So the figures of two periods never count one order twice,
// and a period's figures only grow while its orders are worked on.
//
// Each order is one round of a deal's search: a released order is one order
// (posted, taken, released) and the deal's next post is another.

// StatsQuery selects the orders the figures count: the account's, posted in
// [From, To), of one pipeline when PipelineID is not 0.
type StatsQuery struct {
	AccountID  int64
	From, To   time.Time
	PipelineID int64
}

// Stats are an account's figures for a period.
type Stats struct {
	Query StatsQuery
	// Zone is the time zone the period's days were cut in (the account's).
	Zone      string
	Totals    StatTotals
	Executors []ExecutorStats // most orders taken first
	Chats     []ChatStats     // most orders posted first
}

// StatTotals are the figures of every order in the period.
type StatTotals struct {
	Posted    int64
	Taken     int64 // won by an executor, whatever happened next
	Done      int64
	Released  int64 // the executor dropped out or was unassigned
	Withdrawn int64 // ended without an executor (the deal left the search)
	// NeverTaken is Posted - Taken: withdrawn, or still waiting.
	NeverTaken int64
	// TakeMedian and TakeP90 are the time from post to take of the taken
	// orders (nil when none was taken); see Percentile.
	TakeMedian, TakeP90 *time.Duration
	// Within5m, Within15m and Within60m count the posted orders taken
	// within 5, 15 and 60 minutes of the post; shares are of Posted.
	Within5m, Within15m, Within60m int64
}

// ExecutorStats are one executor's figures: the orders of the period they took.
type ExecutorStats struct {
	TelegramID int64
	Name       string
	Username   string
	Taken      int64
	Done       int64
	Released   int64
	// DoneMedian is the median time from take to done of their done orders.
	DoneMedian *time.Duration
	// LastActivity is their latest step on any of the account's orders (a
	// contact asked for, a take, a status, a release) before the period's
	// end: when they were last seen working, even on an older order.
	LastActivity *time.Time
}

// ChatStats are one chat's figures: the orders of the period posted there.
type ChatStats struct {
	ChatID     int64
	Title      string
	Posted     int64
	Taken      int64
	TakeMedian *time.Duration
}

// Durations are whole seconds: each moment is cut to its second, then
// subtracted, so PostgreSQL and SQLite compute the same numbers.

// PercentileRank is the nearest-rank percentile: of n durations sorted
// ascending, the p-th percentile is the one at 1-based rank ⌈p·n/100⌉. The
// median (p = 50) of an even count is the lower middle value; no value is
// ever interpolated, so every figure is a duration that occurred. The store
// computes the same rank in SQL as (n·p + 99) / 100 in integers.
func PercentileRank(p, n int64) int64 {
	if n <= 0 {
		return 0
	}
	return (n*p + 99) / 100
}

// Periods the widget offers.
const (
	PeriodToday  = "today"
	Period7Days  = "7d"
	Period30Days = "30d"
	PeriodCustom = "custom"
)

// MaxStatsDays bounds a custom period.
const MaxStatsDays = 366

// StatsPeriod turns the widget's period into [from, to) in the account's
// time zone: "today" is since today's midnight there, "7d" and "30d" are
// today and the 6 or 29 days before, and a custom period runs from the start
// of its first day (YYYY-MM-DD) to the end of its last. Every period ends at
// the next midnight after its last day.
func StatsPeriod(period, first, last string, now time.Time, loc *time.Location) (time.Time, time.Time, error) {
	now = now.In(loc)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	tomorrow := today.AddDate(0, 0, 1)
	switch period {
	case PeriodToday, "":
		return today, tomorrow, nil
	case Period7Days:
		return today.AddDate(0, 0, -6), tomorrow, nil
	case Period30Days:
		return today.AddDate(0, 0, -29), tomorrow, nil
	case PeriodCustom:
		from, err := time.ParseInLocation(time.DateOnly, first, loc)
		if err != nil {
			return time.Time{}, time.Time{}, Invalid("from must be a date YYYY-MM-DD")
		}
		to, err := time.ParseInLocation(time.DateOnly, last, loc)
		if err != nil {
			return time.Time{}, time.Time{}, Invalid("to must be a date YYYY-MM-DD")
		}
		if to.Before(from) {
			return time.Time{}, time.Time{}, Invalid("the period ends before it begins")
		}
		end := to.AddDate(0, 0, 1)
		if end.After(from.AddDate(0, 0, MaxStatsDays)) {
			return time.Time{}, time.Time{}, Invalid("a period is at most %d days", MaxStatsDays)
		}
		return from, end, nil
	}
	return time.Time{}, time.Time{}, Invalid("period must be today, 7d, 30d or custom")
}
