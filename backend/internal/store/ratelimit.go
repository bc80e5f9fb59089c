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
// whichever is later, and returns how long until it.
func (l *AmoRateLimiter) Reserve(ctx context.Context, accountID int64, gap time.Duration) (time.Duration, error) {
	if gap <= 0 {
		return 0, errors.New("store: rate limit gap must be positive")
	}
	var wait float64
	err := l.db.gorm.WithContext(ctx).Raw(`
		INSERT INTO amo_rate_limits AS r (account_id, next_at) VALUES (?, clock_timestamp() + make_interval(secs => ?))
		ON CONFLICT (account_id) DO UPDATE SET next_at = GREATEST(r.next_at, clock_timestamp()) + make_interval(secs => ?)
		RETURNING EXTRACT(EPOCH FROM (r.next_at - clock_timestamp()))::float8 - ?`,
		accountID, gap.Seconds(), gap.Seconds(), gap.Seconds()).Scan(&wait).Error
	if err != nil {
		return 0, translate(err, "reserve amoCRM slot")
	}
	return time.Duration(wait * float64(time.Second)), nil
}

// Hold keeps every process from the account's API for d.
func (l *AmoRateLimiter) Hold(ctx context.Context, accountID int64, d time.Duration) error {
	err := l.db.gorm.WithContext(ctx).Exec(`
		INSERT INTO amo_rate_limits AS r (account_id, next_at) VALUES (?, clock_timestamp() + make_interval(secs => ?))
		ON CONFLICT (account_id) DO UPDATE SET next_at = GREATEST(r.next_at, clock_timestamp() + make_interval(secs => ?))`,
		accountID, d.Seconds(), d.Seconds()).Error
	return translate(err, "hold amoCRM slots")
}
