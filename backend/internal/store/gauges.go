package store

import (
	"context"
)

// QueueDepth counts the jobs waiting or running in River's queue, by kind
// and state, for the operator's metrics.
func (db *DB) QueueDepth(ctx context.Context) (map[[2]string]int64, error) {
	var rows []struct {
		Kind, State string
		N           int64
	}
	err := db.gorm.WithContext(ctx).Raw(`SELECT kind, state, COUNT(*) AS n FROM river_job
		WHERE state IN ('available', 'scheduled', 'retryable', 'running') GROUP BY kind, state`).Scan(&rows).Error
	if err != nil {
		return nil, translate(err, "queue depth")
	}
	out := make(map[[2]string]int64, len(rows))
	for _, r := range rows {
		out[[2]string{r.Kind, r.State}] = r.N
	}
	return out, nil
}

// AccountsByStatus counts the installed accounts by status.
func (db *DB) AccountsByStatus(ctx context.Context) (map[string]int64, error) {
	var rows []struct {
		Status string
		N      int64
	}
	err := db.gorm.WithContext(ctx).Raw(`SELECT status, COUNT(*) AS n FROM accounts GROUP BY status`).Scan(&rows).Error
	if err != nil {
		return nil, translate(err, "accounts by status")
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}
