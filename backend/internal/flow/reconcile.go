package flow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// reconcile schedules a pass over every account that dispatches.
func (f *Flow) reconcile(ctx context.Context) error {
	// The reconciler's period suits the inbox too, and River runs periodic
	// jobs in one process at a time. A failed prune waits for the next pass.
	if n, err := f.db.PruneUpdates(ctx); err != nil {
		f.log.Warn("pruning processed Telegram updates failed", "err", err)
	} else if n > 0 {
		f.log.Info("pruned processed Telegram updates", "count", n)
	}
	accounts, err := f.db.ActiveAccounts(ctx)
	if err != nil {
		return err
	}
	since := reconcileSince(time.Now(), f.o.ReconcileInterval)
	var params []river.InsertManyParams
	for _, a := range accounts {
		s, err := f.db.Settings(ctx, a.ID)
		if err != nil {
			return err
		}
		if s.HasTriggers() {
			// One pass per account at a time; a new one once it finished.
			once := onceLive()
			params = append(params, river.InsertManyParams{Args: ReconcileAccountArgs{AccountID: a.ID, Since: since}, InsertOpts: &once})
		}
	}
	if len(params) == 0 {
		return nil
	}
	_, err = f.river.InsertMany(ctx, params)
	return err
}

// fullReconcileEvery: the pass that crosses such a boundary lists every deal
// in the search stages (a deal whose dispatch failed without a change in
// amoCRM since); the others list only deals changed in the last three
// intervals, one cheap request for an idle account.
const fullReconcileEvery = 30 * time.Minute

// reconcileSince is the updated_at bound of the pass at now (Unix seconds),
// 0 for a full pass. Three intervals cover a missed pass and clock skew.
func reconcileSince(now time.Time, interval time.Duration) int64 {
	if now.Truncate(fullReconcileEvery) != now.Add(-interval).Truncate(fullReconcileEvery) {
		return 0
	}
	return now.Add(-3 * interval).Unix()
}

// reconcileAccount lists the deals in the trigger stages and dispatches the
// ones without a current order: amoCRM loses some webhooks.
func (f *Flow) reconcileAccount(ctx context.Context, args ReconcileAccountArgs) error {
	accountID := args.AccountID
	s, err := f.db.Settings(ctx, accountID)
	if err != nil {
		return err
	}
	var filter amocrm.LeadFilter
	for _, r := range s.Rules {
		for _, st := range r.TriggerStageIDs {
			filter.Statuses = append(filter.Statuses, amocrm.StatusFilter{PipelineID: r.PipelineID, StatusID: st})
		}
	}
	if len(filter.Statuses) == 0 {
		return nil
	}
	api, err := f.o.CRM.API(ctx, accountID)
	if err != nil {
		return err
	}
	if err := f.resume(ctx, accountID); err != nil {
		return err
	}
	if err := f.reconcileReminders(ctx, api, s, args.Since); err != nil {
		return err
	}
	if args.Since != 0 {
		filter.UpdatedFrom = time.Unix(args.Since, 0)
	}
	leads, err := api.ListLeads(ctx, filter)
	if err != nil {
		return err
	}
	for _, l := range leads {
		if _, err := f.db.ActiveOrder(ctx, accountID, l.ID); err == nil {
			continue
		} else if !errors.Is(err, dispatch.ErrNotFound) {
			return err
		}
		f.log.Info("reconciler found a deal without an order", "account_id", accountID, "lead_id", l.ID)
		f.o.Metrics.Caught("lost_deal", 1)
		// Dispatched from the list just read: no second read per deal.
		unlock := f.lockLead(l.ID)
		err := f.matchLead(ctx, api, DispatchLeadArgs{AccountID: accountID, LeadID: l.ID, Reason: "reconcile"}, l, false)
		unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// unfinishedWindow is how far back the reconciler looks for taken orders
// whose write-back to amoCRM never finished.
const unfinishedWindow = 30 * 24 * time.Hour

// resume queues again the work of orders whose jobs gave up: a post or a
// write-back cancelled while the account's tokens were revoked, or retried
// past its last attempt in a long outage. The account works again when this
// runs (its API was just obtained). A job still alive is not doubled; one
// that finishes meanwhile makes its repeat a read that changes nothing.
func (f *Flow) resume(ctx context.Context, accountID int64) error {
	todo, err := f.db.UnfinishedOrders(ctx, accountID, time.Now().Add(-unfinishedWindow))
	if err != nil {
		return err
	}
	events, err := f.db.UnfinishedEvents(ctx, accountID, time.Now().Add(-unfinishedWindow))
	if err != nil || len(todo)+len(events) == 0 {
		return err
	}
	var params []river.InsertManyParams
	for _, ev := range events {
		if ev.Kind == string(dispatch.OrderReleased) {
			params = append(params, river.InsertManyParams{Args: ReleaseLeadArgs{AccountID: accountID, EventID: ev.ID, ByManager: ev.TelegramID == 0}})
		} else {
			params = append(params, river.InsertManyParams{Args: EventWriteArgs{AccountID: accountID, EventID: ev.ID}})
		}
	}
	for _, u := range todo {
		if u.Post {
			params = append(params, river.InsertManyParams{Args: PostOrderArgs{AccountID: accountID, OrderID: u.OrderID}})
		}
		if u.UpdateLead {
			params = append(params, river.InsertManyParams{Args: UpdateLeadArgs{AccountID: accountID, OrderID: u.OrderID}})
		}
		if u.AddNote {
			params = append(params, river.InsertManyParams{Args: AddNoteArgs{AccountID: accountID, OrderID: u.OrderID}})
		}
	}
	res, err := f.river.InsertMany(ctx, params)
	if err != nil {
		return fmt.Errorf("resume unfinished orders: %w", err)
	}
	queued := 0
	for _, r := range res {
		if !r.UniqueSkippedAsDuplicate {
			queued++
		}
	}
	if queued > 0 {
		f.log.Info("reconciler resumed unfinished orders", "account_id", accountID, "jobs", queued)
		f.o.Metrics.Caught("resumed_job", queued)
	}
	return nil
}
