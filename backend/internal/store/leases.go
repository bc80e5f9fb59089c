package store

import (
	"context"
	"time"

	"gorm.io/gorm/clause"
)

type leaseRow struct {
	Name      string `gorm:"primaryKey"`
	Owner     string
	ExpiresAt int64
}

func (leaseRow) TableName() string { return "leases" }

// AcquireLease takes or renews the named lease for owner; it succeeds when the
// lease is free, expired, or already owner's.
func (db *DB) AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	now := db.nowMillis()
	res := db.gorm.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "name"}},
		DoUpdates: clause.AssignmentColumns([]string{"owner", "expires_at"}),
		Where: clause.Where{Exprs: []clause.Expression{
			clause.Expr{SQL: "leases.owner = ? OR leases.expires_at < ?", Vars: []any{owner, now}},
		}},
	}).Create(&leaseRow{Name: name, Owner: owner, ExpiresAt: now + ttl.Milliseconds()})
	if res.Error != nil {
		return false, translate(res.Error, "acquire lease")
	}
	return res.RowsAffected == 1, nil
}

// ReleaseLease gives the lease up if owner holds it.
func (db *DB) ReleaseLease(ctx context.Context, name, owner string) error {
	err := db.gorm.WithContext(ctx).Where("name = ? AND owner = ?", name, owner).Delete(&leaseRow{}).Error
	return translate(err, "release lease")
}
