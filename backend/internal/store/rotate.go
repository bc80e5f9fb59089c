package store

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/amodispatch/amodispatch/backend/internal/secret"
)

// sealedColumn is one column written with the box, with the AAD purpose its
// values are bound to (see aad).
type sealedColumn struct {
	column  string
	purpose string
	get     func(*accountRow) string
}

// sealedColumns lists every column the box seals. A new sealed column must be
// added here: rotate-keys would leave it under the old key, and dropping that
// key would then lose it.
var sealedColumns = []sealedColumn{
	{"access_token_enc", "access", func(r *accountRow) string { return r.AccessTokenEnc }},
	{"refresh_token_enc", "refresh", func(r *accountRow) string { return r.RefreshTokenEnc }},
	{"webhook_secret_enc", "webhook", func(r *accountRow) string { return r.WebhookSecretEnc }},
	{"link_code_enc", "linkcode", func(r *accountRow) string { return r.LinkCodeEnc }},
}

// RotateReport counts the sealed values RotateKeys looked at. Empty values (an
// account switched off keeps no tokens) are not counted.
type RotateReport struct {
	Accounts int // account rows read
	Rotated  int // re-sealed under the first key
	Current  int // already sealed under the first key
	// Raced values were rewritten by a running server between read and write;
	// its value was kept. A server still sealing with the old key can cause
	// this, which is why a second run must report nothing rotated.
	Raced int
	// Unreadable values open with no configured key; they were left unchanged.
	Unreadable []SealedValue
}

// SealedValue names one sealed value, never its content.
type SealedValue struct {
	AccountID int64
	Column    string
}

func (v SealedValue) String() string { return fmt.Sprintf("account %d %s", v.AccountID, v.Column) }

const rotateBatch = 200

// RotateKeys re-seals under the box's first key every value an older key
// sealed, so the older key can be dropped from ENCRYPTION_KEY afterwards. It
// walks all accounts: an operator command, not a tenant's request. Values no
// configured key opens are left as they are and reported together in the
// error, after everything else was rotated. Running it again is harmless.
func (db *DB) RotateKeys(ctx context.Context) (RotateReport, error) {
	return db.rotateKeys(ctx, rotateBatch, nil)
}

// rotateKeys reads batch rows at a time so a large table is never held in
// memory, nor a transaction open across it. beforeWrite, for tests, runs
// between reading a row and writing it, where a concurrent writer can strike.
func (db *DB) rotateKeys(ctx context.Context, batch int, beforeWrite func(accountID int64)) (RotateReport, error) {
	var rep RotateReport
	cols := []string{"id"}
	for _, c := range sealedColumns {
		cols = append(cols, c.column)
	}
	for after := int64(math.MinInt64); ; {
		var rows []accountRow
		err := db.gorm.WithContext(ctx).Select(cols).Where("id > ?", after).Order("id").Limit(batch).Find(&rows).Error
		if err != nil {
			return rep, translate(err, "rotate keys: read accounts")
		}
		for i := range rows {
			r := &rows[i]
			rep.Accounts++
			if beforeWrite != nil {
				beforeWrite(r.ID)
			}
			for _, c := range sealedColumns {
				if err := db.rotateValue(ctx, &rep, r.ID, c, c.get(r)); err != nil {
					return rep, err
				}
			}
		}
		if len(rows) < batch {
			break
		}
		after = rows[len(rows)-1].ID
	}
	if len(rep.Unreadable) > 0 {
		return rep, unreadableError(rep.Unreadable)
	}
	return rep, nil
}

func (db *DB) rotateValue(ctx context.Context, rep *RotateReport, accountID int64, c sealedColumn, old string) error {
	if old == "" {
		return nil
	}
	if !db.box.NeedsRotation(old) {
		rep.Current++
		return nil
	}
	plain, err := db.box.Open(old, aad(accountID, c.purpose))
	if err != nil {
		rep.Unreadable = append(rep.Unreadable, SealedValue{AccountID: accountID, Column: c.column})
		db.log.Warn("rotate keys: no configured key opens a sealed value; left unchanged", "account_id", accountID, "column", c.column)
		return nil
	}
	sealed, err := db.box.Seal(plain, aad(accountID, c.purpose))
	if err != nil {
		return fmt.Errorf("store: rotate keys: account %d %s: %w", accountID, c.column, err)
	}
	// Written only over the value read: a server refreshing tokens meanwhile
	// wrote a newer pair, and amoCRM refresh tokens are single-use, so its
	// value must win. UpdateColumn keeps updated_at: the account did not change.
	res := db.gorm.WithContext(ctx).Model(&accountRow{}).
		Where("id = ? AND "+c.column+" = ?", accountID, old).
		UpdateColumn(c.column, sealed)
	if res.Error != nil {
		return translate(res.Error, fmt.Sprintf("rotate keys: account %d %s", accountID, c.column))
	}
	if res.RowsAffected == 0 {
		rep.Raced++
		return nil
	}
	rep.Rotated++
	return nil
}

// unreadableError names the values (at most a screenful; the report has all)
// so the operator can find them before dropping a key.
func unreadableError(vs []SealedValue) error {
	const shown = 20
	names := make([]string, 0, min(len(vs), shown))
	for _, v := range vs[:min(len(vs), shown)] {
		names = append(names, v.String())
	}
	list := strings.Join(names, ", ")
	if len(vs) > shown {
		list += fmt.Sprintf(" and %d more", len(vs)-shown)
	}
	return fmt.Errorf("store: rotate keys: %d sealed values open with no configured key and were left unchanged: %s: %w",
		len(vs), list, secret.ErrDecrypt)
}
