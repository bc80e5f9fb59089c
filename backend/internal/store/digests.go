package store

import (
	"context"
	"time"

	"gorm.io/gorm/clause"
)

type digestRow struct {
	AccountID int64  `gorm:"primaryKey;autoIncrement:false"`
	Week      string `gorm:"primaryKey"`
	ChatID    int64
	CreatedAt time.Time
	SentAt    *time.Time
}

func (digestRow) TableName() string { return "stats_digests" }

// DigestTarget is an active account that asked for the weekly digest.
type DigestTarget struct {
	AccountID, ChatID int64
}

// DigestTargets lists the active accounts with a digest chat.
func (db *DB) DigestTargets(ctx context.Context) ([]DigestTarget, error) {
	var out []DigestTarget
	err := db.gorm.WithContext(ctx).Raw(`SELECT s.account_id AS account_id, s.digest_chat_id AS chat_id
		FROM account_settings s JOIN accounts a ON a.id = s.account_id
		WHERE s.digest_chat_id <> 0 AND a.status = 'active' ORDER BY s.account_id`).Scan(&out).Error
	return out, translate(err, "digest targets")
}

// ClaimDigest records an account's digest of a week, once: of any number of
// replicas checking the same Monday, one gets true and queues the sending in
// the same transaction.
func (tx *Tx) ClaimDigest(accountID int64, week string, chatID int64) (bool, error) {
	res := tx.g.Clauses(clause.OnConflict{DoNothing: true}).Create(&digestRow{AccountID: accountID, Week: week, ChatID: chatID,
		CreatedAt: tx.db.utcNow()})
	return res.RowsAffected == 1, translate(res.Error, "claim digest")
}

// Digest returns a claimed digest's chat and whether it was sent.
func (db *DB) Digest(ctx context.Context, accountID int64, week string) (chatID int64, sent bool, err error) {
	var r digestRow
	if err := db.gorm.WithContext(ctx).Where("account_id = ? AND week = ?", accountID, week).Take(&r).Error; err != nil {
		return 0, false, translate(err, "digest "+week)
	}
	return r.ChatID, r.SentAt != nil, nil
}

// MarkDigestSent records that the week's digest reached its chat.
func (db *DB) MarkDigestSent(ctx context.Context, accountID int64, week string) error {
	err := db.gorm.WithContext(ctx).Model(&digestRow{}).Where("account_id = ? AND week = ? AND sent_at IS NULL", accountID, week).
		Update("sent_at", db.utcNow()).Error
	return translate(err, "mark digest sent")
}
