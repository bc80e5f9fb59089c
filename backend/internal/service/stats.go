package service

import (
	"context"
	"fmt"
	"sync"
	"time"
	_ "time/tzdata" // account zones resolve on an image without /usr/share/zoneinfo

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// zoneTTL is how long an account's time zone read from amoCRM is trusted:
// admins rarely change it, and each statistics page must not cost a request.
const zoneTTL = time.Hour

type zoneEntry struct {
	loc     *time.Location
	expires time.Time
}

// zones caches accounts' time zones in this process.
type zones struct {
	mu sync.Mutex
	m  map[int64]zoneEntry
}

// StatsRequest is the period the widget asks for (see dispatch.StatsPeriod).
type StatsRequest struct {
	Period, From, To string
	PipelineID       int64
}

// Stats computes the account's order statistics for a period. Days are cut
// in the account's time zone, as amoCRM's datetime settings name it, so an
// admin's "today" is their own; a zone Go does not know counts as UTC.
// The route is the admin's (httpapi checks it before the call).
func (w *Widget) Stats(ctx context.Context, a dispatch.Account, r StatsRequest) (dispatch.Stats, error) {
	if r.PipelineID < 0 {
		return dispatch.Stats{}, dispatch.Invalid("pipeline_id must be a pipeline id")
	}
	loc, err := w.zone(ctx, a.ID)
	if err != nil {
		return dispatch.Stats{}, err
	}
	from, to, err := dispatch.StatsPeriod(r.Period, r.From, r.To, w.svc.now(), loc)
	if err != nil {
		return dispatch.Stats{}, err
	}
	st, err := w.svc.db.Stats(ctx, dispatch.StatsQuery{AccountID: a.ID, From: from, To: to, PipelineID: r.PipelineID})
	if err != nil {
		return dispatch.Stats{}, err
	}
	st.Zone = loc.String()
	return st, nil
}

func (w *Widget) zone(ctx context.Context, accountID int64) (*time.Location, error) {
	now := w.svc.now()
	w.zones.mu.Lock()
	e, ok := w.zones.m[accountID]
	w.zones.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.loc, nil
	}
	api, err := w.svc.API(ctx, accountID)
	if err != nil {
		return nil, err
	}
	name, err := api.Timezone(ctx)
	if err != nil {
		return nil, fmt.Errorf("read account %d's time zone from amoCRM: %w", accountID, err)
	}
	loc, err := time.LoadLocation(name)
	if err != nil || name == "" {
		w.svc.log.Warn("account time zone unknown, statistics use UTC", "account_id", accountID, "zone", name)
		loc = time.UTC
	}
	w.zones.mu.Lock()
	w.zones.m[accountID] = zoneEntry{loc: loc, expires: now.Add(zoneTTL)}
	w.zones.mu.Unlock()
	return loc, nil
}
