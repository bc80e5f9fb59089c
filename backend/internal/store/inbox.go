package store

import (
	"cmp"
	"context"
	"slices"
	"time"

	"gorm.io/gorm/clause"
)

type updateRow struct {
	UpdateID     int64 `gorm:"primaryKey;autoIncrement:false"`
	Payload      string
	ReceivedAt   time.Time
	ClaimedBy    string
	ClaimedUntil int64
	Attempts     int
	LastError    string
	ProcessedAt  *time.Time
}

func (updateRow) TableName() string { return "telegram_updates" }

// StoredUpdate is a Telegram update waiting to be processed.
type StoredUpdate struct {
	ID         int64
	Payload    []byte
	Attempts   int
	ReceivedAt time.Time
}

// SaveUpdates stores Telegram updates, ignoring ids already stored, in one
// transaction: when it returns nil every update is durable and may be confirmed.
func (db *DB) SaveUpdates(ctx context.Context, updates []StoredUpdate) (inserted int, err error) {
	if len(updates) == 0 {
		return 0, nil
	}
	now := db.utcNow()
	rows := make([]updateRow, len(updates))
	for i, u := range updates {
		rows[i] = updateRow{UpdateID: u.ID, Payload: string(u.Payload), ReceivedAt: now}
	}
	res := db.gorm.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&rows)
	if res.Error != nil {
		return 0, translate(res.Error, "save updates")
	}
	return int(res.RowsAffected), nil
}

// ClaimUpdates leases up to limit unprocessed updates to owner, oldest first,
// in one conditional UPDATE: two processes never work the same update at
// once, and an expired lease (crashed worker) is taken over.
func (db *DB) ClaimUpdates(ctx context.Context, owner string, limit int, lease time.Duration) ([]StoredUpdate, error) {
	now := db.nowMillis()
	// On PostgreSQL concurrent claimers (workers, replicas) otherwise lock
	// the same rows in different orders and deadlock (SQLSTATE 40P01);
	// SKIP LOCKED lets each take rows no other claim holds. SQLite
	// serialises writers and has no row locks.
	lock := ""
	if db.dialect == Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	var rows []updateRow
	err := db.gorm.WithContext(ctx).Raw(`UPDATE telegram_updates
		SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1
		WHERE update_id IN (SELECT update_id FROM telegram_updates
		                    WHERE processed_at IS NULL AND claimed_until <= ? ORDER BY update_id LIMIT ?`+lock+`)
		  AND processed_at IS NULL AND claimed_until <= ?
		RETURNING update_id, payload, attempts, received_at`,
		owner, now+lease.Milliseconds(), now, limit, now).Scan(&rows).Error
	if err != nil {
		return nil, translate(err, "claim updates")
	}
	slices.SortFunc(rows, func(a, b updateRow) int { return cmp.Compare(a.UpdateID, b.UpdateID) })
	out := make([]StoredUpdate, len(rows))
	for i, r := range rows {
		out[i] = StoredUpdate{ID: r.UpdateID, Payload: []byte(r.Payload), Attempts: r.Attempts, ReceivedAt: r.ReceivedAt}
	}
	return out, nil
}

// FinishUpdate marks an update processed, or records the error and releases
// it for a retry after backoff.
func (db *DB) FinishUpdate(ctx context.Context, id int64, owner string, procErr error, backoff time.Duration) error {
	updates := map[string]any{}
	if procErr == nil {
		updates["processed_at"] = db.utcNow()
		updates["last_error"] = ""
	} else {
		updates["last_error"] = truncate(procErr.Error(), 500)
		updates["claimed_until"] = db.nowMillis() + backoff.Milliseconds()
	}
	err := db.gorm.WithContext(ctx).Model(&updateRow{}).Where("update_id = ? AND claimed_by = ?", id, owner).Updates(updates).Error
	return translate(err, "finish update")
}

// FinishUpdates marks several updates this owner claimed processed, with
// one statement: a storm of presses costs one commit per batch, not one
// per press.
func (db *DB) FinishUpdates(ctx context.Context, ids []int64, owner string) error {
	if len(ids) == 0 {
		return nil
	}
	err := db.gorm.WithContext(ctx).Model(&updateRow{}).Where("update_id IN ? AND claimed_by = ?", ids, owner).
		Updates(map[string]any{"processed_at": db.utcNow(), "last_error": ""}).Error
	return translate(err, "finish updates")
}

// UpdatesKept is how long processed updates stay stored: long enough to look
// into a recent incident, short enough that the table stays small.
const UpdatesKept = 3 * 24 * time.Hour

// pruneBatch bounds one DELETE, so a first prune of a large backlog never
// holds the table for long.
const pruneBatch = 1000

// PruneUpdates deletes updates processed longer than UpdatesKept ago, in
// batches that the (processed_at, update_id) index finds. The highest stored
// update is kept whatever its age: polling resumes after it.
func (db *DB) PruneUpdates(ctx context.Context) (int64, error) {
	before := db.utcNow().Add(-UpdatesKept)
	var total int64
	for {
		res := db.gorm.WithContext(ctx).Exec(`DELETE FROM telegram_updates WHERE update_id IN (
			SELECT update_id FROM telegram_updates
			WHERE processed_at IS NOT NULL AND processed_at < ?
			  AND update_id < (SELECT MAX(update_id) FROM telegram_updates)
			ORDER BY processed_at LIMIT ?)`, before, pruneBatch)
		if res.Error != nil {
			return total, translate(res.Error, "prune updates")
		}
		total += res.RowsAffected
		if res.RowsAffected < pruneBatch {
			return total, nil
		}
	}
}

// MaxUpdateID is the highest stored update id: polling resumes after it.
func (db *DB) MaxUpdateID(ctx context.Context) (int64, error) {
	var max *int64
	err := db.gorm.WithContext(ctx).Model(&updateRow{}).Select("MAX(update_id)").Scan(&max).Error
	if err != nil || max == nil {
		return 0, translate(err, "max update id")
	}
	return *max, nil
}

// PendingUpdates counts stored updates not yet processed.
func (db *DB) PendingUpdates(ctx context.Context) (int64, error) {
	var n int64
	err := db.gorm.WithContext(ctx).Model(&updateRow{}).Where("processed_at IS NULL").Count(&n).Error
	return n, translate(err, "pending updates")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
