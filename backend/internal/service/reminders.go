package service

import (
	"context"
	"errors"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// jobTimeFields reports whether some rule names a job-time field, which
// settings are checked against the account's fields for.
func jobTimeFields(s dispatch.Settings) bool {
	for _, r := range s.Rules {
		if r.JobTimeFieldID != 0 {
			return true
		}
	}
	return false
}

// nextReminder sets the deal's next step to the order's next reminder
// before the job time, while its executor works on it.
func (w *Widget) nextReminder(ctx context.Context, o dispatch.Order, d *Deal) error {
	if !o.InProgress() {
		return nil
	}
	st, p, err := w.svc.db.NextReminder(ctx, o.ID)
	if errors.Is(err, dispatch.ErrNotFound) {
		return nil // no plan, or every reminder sent
	}
	if err != nil {
		return err
	}
	d.NextStep = &dispatch.Timer{Kind: "reminder", At: st.DueAt.In(p.Location())}
	return nil
}
