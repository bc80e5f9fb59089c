package store

import "context"

// RotateKeysForTest exposes rotateKeys' batch size and its hook between read
// and write, where a running server's token refresh can strike.
func (db *DB) RotateKeysForTest(ctx context.Context, batch int, beforeWrite func(accountID int64)) (RotateReport, error) {
	return db.rotateKeys(ctx, batch, beforeWrite)
}

// MigrateToForTest applies the migrations up to version only, so a test can
// write rows as an older binary did before the rest apply.
func (db *DB) MigrateToForTest(ctx context.Context, version int64) error {
	p, err := db.provider()
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}
