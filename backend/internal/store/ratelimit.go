package store

import (
	"context"
	"errors"
	"time"
)

// AmoRateLimiter books amoCRM request slots per account in PostgreSQL, one
// statement per request, on the database's own clock so that replicas'
// clocks need not agree.
type AmoRateLimiter struct{ db *DB }

// AmoRateLimiter returns the shared limiter; nil on SQLite, whose single
// process limits itself.
func (db *DB) AmoRateLimiter() *AmoRateLimiter {
	if db.dialect != Postgres {
		return nil
	}
	return &AmoRateLimiter{db: db}
}

// Reserve books the account's next slot, gap after the previous one or now,
// whichever is later, and returns how long until it. With maxWait > 0 a slot
// further away is not booked (booked false, the wait until the next slot):
// a job refused this way is snoozed, and booking slots it will not use would
// push every later request of the account further out.
func (l *AmoRateLimiter) Reserve(ctx context.Context, accountID int64, gap, maxWait time.Duration) (time.Duration, bool, error) {
	if gap <= 0 {
		return 0, false, errors.New("store: rate limit gap must be positive")
	}
	limit := maxWait.Seconds()
	if maxWait <= 0 {
		limit = 1e9 // no bound
	}
	var waits []float64
	err := l.db.gorm.WithContext(ctx).Raw(`
		INSERT INTO amo_rate_limits AS r (account_id, next_at) VALUES (?, clock_timestamp() + make_interval(secs => ?))
		ON CONFLICT (account_id) DO UPDATE SET next_at = GREATEST(r.next_at, clock_timestamp()) + make_interval(secs => ?)
		WHERE r.next_at <= clock_timestamp() + make_interval(secs => ?)
		RETURNING EXTRACT(EPOCH FROM (r.next_at - clock_timestamp()))::float8 - ?`,
		accountID, gap.Seconds(), gap.Seconds(), limit, gap.Seconds()).Scan(&waits).Error
	if err != nil {
		return 0, false, translate(err, "reserve amoCRM slot")
	}
	if len(waits) == 1 {
		return time.Duration(waits[0] * float64(time.Second)), true, nil
	}
	var wait float64
	err = l.db.gorm.WithContext(ctx).Raw(`SELECT EXTRACT(EPOCH FROM (next_at - clock_timestamp()))::float8 FROM amo_rate_limits WHERE account_id = ?`,
		accountID).Scan(&wait).Error
	if err != nil {
		return 0, false, translate(err, "read amoCRM slot")
	}
	return time.Duration(wait * float64(time.Second)), false, nil
}

// Hold keeps every process from the account's API for d.
func (l *AmoRateLimiter) Hold(ctx context.Context, accountID int64, d time.Duration) error {
	err := l.db.gorm.WithContext(ctx).Exec(`
		INSERT INTO amo_rate_limits AS r (account_id, next_at) VALUES (?, clock_timestamp() + make_interval(secs => ?))
		ON CONFLICT (account_id) DO UPDATE SET next_at = GREATEST(r.next_at, clock_timestamp() + make_interval(secs => ?))`,
		accountID, d.Seconds(), d.Seconds()).Error
	return translate(err, "hold amoCRM slots")
}
