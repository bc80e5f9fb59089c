package store

import "context"

// RotateKeysForTest exposes rotateKeys' batch size and its hook between read
// and write, where a running server's token refresh can strike.
func (db *DB) RotateKeysForTest(ctx context.Context, batch int, beforeWrite func(accountID int64)) (RotateReport, error) {
	return db.rotateKeys(ctx, batch, beforeWrite)
}
