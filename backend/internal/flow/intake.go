package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/orderview"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// Intake stores an authenticated amoCRM webhook delivery as the job that
// processes it; the HTTP answer waits only for this insert (shared with the
// deliveries arriving at the same moment).
func (f *Flow) Intake(ctx context.Context, accountID int64, body []byte) error {
	return f.intake.add(ctx, EventArgs{AccountID: accountID, Body: string(body)})
}

// EventsReceived counts the webhook deliveries stored for an account (the
// job rows River still keeps), for tests and diagnostics.
func (f *Flow) EventsReceived(ctx context.Context, accountID int64) (int, error) {
	res, err := f.river.JobList(ctx, river.NewJobListParams().Kinds(EventArgs{}.Kind()).First(10000))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, j := range res.Jobs {
		var a EventArgs
		if json.Unmarshal(j.EncodedArgs, &a) == nil && a.AccountID == accountID {
			n++
		}
	}
	return n, nil
}

// workEvent turns one webhook delivery into dispatch_lead jobs for the deals
// it may concern. Webhooks are only hints: dispatch_lead re-reads the deal.
func (f *Flow) workEvent(ctx context.Context, args EventArgs) error {
	payload, err := amocrm.ParseWebhook([]byte(args.Body))
	if err != nil {
		f.log.Warn("amoCRM webhook not understood, skipped", "account_id", args.AccountID, "err", err)
		return nil
	}
	settings, err := f.db.Settings(ctx, args.AccountID)
	if err != nil {
		return err
	}
	var leads []DispatchLeadArgs
	seen := map[int64]bool{}
	for _, ev := range payload.Leads {
		if seen[ev.LeadID] {
			continue
		}
		relevant := settings.IsTriggerStage(ev.StatusID) || settings.IsTriggerStage(ev.OldStatusID)
		if !relevant {
			// Leaving the search, deletion, or an update of a deal with a
			// current order: the order may need closing.
			if _, err := f.db.ActiveOrder(ctx, args.AccountID, ev.LeadID); err == nil {
				relevant = true
			} else if !errors.Is(err, dispatch.ErrNotFound) {
				return err
			}
		}
		if relevant {
			seen[ev.LeadID] = true
			leads = append(leads, DispatchLeadArgs{AccountID: args.AccountID, LeadID: ev.LeadID, Reason: "webhook", HintStageID: ev.StatusID})
		}
	}
	// Deals are dispatched right here, not through further jobs, to keep
	// "webhook → post" short; a failure retries the whole event, which is
	// harmless because dispatching is idempotent.
	for _, l := range leads {
		if err := f.dispatchLead(ctx, l); err != nil {
			return outcome(err)
		}
	}
	return nil
}

// dispatchLead makes the deal's orders match the deal as amoCRM has it now:
// in a trigger stage without a current order → a new order is posted; out of
// the trigger stages (or deleted) with a current order → that order closes.
// Duplicated, late or lost webhooks therefore cannot post twice or miss a
// deal, and the backend's own stage move only closes the round.
func (f *Flow) dispatchLead(ctx context.Context, args DispatchLeadArgs) error {
	// amoCRM sends several hooks for one change (status_lead, update_lead);
	// dispatching a deal one at a time lets the later ones see the order the
	// first created instead of spending amoCRM requests on the same answer.
	defer f.lockLead(args.LeadID)()
	if args.HintStageID != 0 {
		settings, err := f.db.Settings(ctx, args.AccountID)
		if err != nil {
			return err
		}
		if settings.IsTriggerStage(args.HintStageID) {
			if _, err := f.db.ActiveOrder(ctx, args.AccountID, args.LeadID); err == nil {
				return nil // still searching, already posted
			}
		}
	}
	api, err := f.o.CRM.API(ctx, args.AccountID)
	if err != nil {
		return err
	}
	lead, err := api.GetLead(ctx, args.LeadID, false)
	gone := errors.Is(err, amocrm.ErrNotFound)
	if err != nil && !gone {
		return err
	}
	if gone || lead.IsDeleted {
		f.log.Info("deal no longer in amoCRM, skipped", "account_id", args.AccountID, "lead_id", args.LeadID)
		return f.closeRound(ctx, args.AccountID, args.LeadID)
	}
	settings, err := f.db.Settings(ctx, args.AccountID)
	if err != nil {
		return err
	}
	if !settings.IsTrigger(lead.PipelineID, lead.StatusID) {
		return f.closeRound(ctx, args.AccountID, args.LeadID)
	}
	if _, err := f.db.ActiveOrder(ctx, args.AccountID, args.LeadID); err == nil {
		return nil // already searching
	} else if !errors.Is(err, dispatch.ErrNotFound) {
		return err
	}
	err = f.openOrder(ctx, api, settings, lead, args.Reason)
	if errors.Is(err, errNoChat) {
		f.log.Warn("deal in a search stage but no chat to post to", "account_id", args.AccountID, "lead_id", args.LeadID, "err", err)
		return nil
	}
	if errors.Is(err, dispatch.ErrConflict) {
		return nil // a concurrent dispatch created it
	}
	return err
}

var errNoChat = errors.New("no chat to post to")

// lockLead serialises this process's dispatching of one deal; it returns
// the unlock.
func (f *Flow) lockLead(leadID int64) func() {
	mu := &f.leadLocks[uint64(leadID)%uint64(len(f.leadLocks))]
	mu.Lock()
	return mu.Unlock
}

// openOrder creates the deal's order and enqueues its post. The post is
// rendered now, from the deal just read, so posting needs no further amoCRM
// request. ErrConflict means the deal already has a current order.
func (f *Flow) openOrder(ctx context.Context, api *amocrm.API, settings dispatch.Settings, lead amocrm.Lead, reason string) error {
	chatID, err := f.targetChat(ctx, settings, settings.AccountID, lead)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoChat, err)
	}
	a, err := f.db.Account(ctx, settings.AccountID)
	if err != nil {
		return err
	}
	view, err := f.viewOptions(ctx, api, a, settings)
	if err != nil {
		return err
	}
	return f.db.InTx(ctx, func(tx *store.Tx) error {
		o, err := tx.CreateOrder(dispatch.Order{AccountID: a.ID, LeadID: lead.ID, PipelineID: lead.PipelineID,
			StageID: lead.StatusID, ChatID: chatID, Status: dispatch.OrderPosting, GroupText: orderview.Group(lead, view)})
		if err != nil {
			return err
		}
		f.log.Info("order created", "account_id", a.ID, "lead_id", lead.ID, "order_id", o.ID, "chat_id", chatID, "reason", reason)
		return f.enqueue(ctx, tx, PostOrderArgs{OrderID: o.ID})
	})
}

// PostNow posts a deal on the manager's request from the deal card,
// whatever its stage.
func (f *Flow) PostNow(ctx context.Context, accountID, leadID int64) error {
	defer f.lockLead(leadID)()
	api, err := f.o.CRM.API(ctx, accountID)
	if err != nil {
		return err
	}
	lead, err := api.GetLead(ctx, leadID, false)
	if errors.Is(err, amocrm.ErrNotFound) {
		return fmt.Errorf("deal %d: %w", leadID, dispatch.ErrNotFound)
	}
	if err != nil {
		return err
	}
	settings, err := f.db.Settings(ctx, accountID)
	if err != nil {
		return err
	}
	err = f.openOrder(ctx, api, settings, lead, "manager")
	switch {
	case errors.Is(err, errNoChat):
		return dispatch.Invalid("choose a chat for this deal or a default chat for its pipeline")
	case errors.Is(err, dispatch.ErrConflict):
		return fmt.Errorf("deal %d already has an order: withdraw it first: %w", leadID, dispatch.ErrConflict)
	}
	return err
}

// Withdraw ends the deal's current order on the manager's request.
func (f *Flow) Withdraw(ctx context.Context, accountID, leadID int64) error {
	return f.closeRound(ctx, accountID, leadID)
}

// targetChat is the deal's own chat if the manager chose one, else the
// pipeline's default; it must be an active chat of this account.
func (f *Flow) targetChat(ctx context.Context, s dispatch.Settings, accountID int64, lead amocrm.Lead) (int64, error) {
	chatID, err := f.db.DealTarget(ctx, accountID, lead.ID)
	if err != nil {
		return 0, err
	}
	if chatID == 0 {
		r, _ := s.Rule(lead.PipelineID)
		chatID = r.DefaultChatID
	}
	if chatID == 0 {
		return 0, errors.New("no target chat chosen and no default chat for the pipeline")
	}
	c, err := f.db.Chat(ctx, chatID)
	if err != nil || c.AccountID != accountID || !c.Active {
		return 0, fmt.Errorf("chat %d is not an active chat of the account", chatID)
	}
	return chatID, nil
}

// closeRound ends the deal's current order and tidies its group post.
func (f *Flow) closeRound(ctx context.Context, accountID, leadID int64) error {
	return f.db.InTx(ctx, func(tx *store.Tx) error {
		was, closed, err := tx.CloseOrder(accountID, leadID)
		if err != nil || !closed {
			return err
		}
		f.log.Info("order closed: deal left the search", "account_id", accountID, "lead_id", leadID, "order_id", was.ID, "status", was.Status)
		if was.Status == dispatch.OrderOpen || was.Status == dispatch.OrderPosting {
			return f.enqueue(ctx, tx, WithdrawPostArgs{OrderID: was.ID})
		}
		return nil
	})
}

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
	var params []river.InsertManyParams
	for _, a := range accounts {
		s, err := f.db.Settings(ctx, a.ID)
		if err != nil {
			return err
		}
		if s.HasTriggers() {
			// One pass per account at a time; a new one once it finished.
			once := onceLive()
			params = append(params, river.InsertManyParams{Args: ReconcileAccountArgs{AccountID: a.ID}, InsertOpts: &once})
		}
	}
	if len(params) == 0 {
		return nil
	}
	_, err = f.river.InsertMany(ctx, params)
	return err
}

// reconcileAccount lists the deals in the trigger stages and dispatches the
// ones without a current order: amoCRM loses some webhooks.
func (f *Flow) reconcileAccount(ctx context.Context, accountID int64) error {
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
	leads, err := api.ListLeads(ctx, filter)
	if err != nil {
		return err
	}
	var params []river.InsertManyParams
	for _, l := range leads {
		if _, err := f.db.ActiveOrder(ctx, accountID, l.ID); err == nil {
			continue
		} else if !errors.Is(err, dispatch.ErrNotFound) {
			return err
		}
		f.log.Info("reconciler found a deal without an order", "account_id", accountID, "lead_id", l.ID)
		params = append(params, river.InsertManyParams{Args: DispatchLeadArgs{AccountID: accountID, LeadID: l.ID, Reason: "reconcile"}})
	}
	if len(params) == 0 {
		return nil
	}
	_, err = f.river.InsertMany(ctx, params)
	return err
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
	if err != nil || len(todo) == 0 {
		return err
	}
	var params []river.InsertManyParams
	for _, u := range todo {
		if u.Post {
			params = append(params, river.InsertManyParams{Args: PostOrderArgs{OrderID: u.OrderID}})
		}
		if u.UpdateLead {
			params = append(params, river.InsertManyParams{Args: UpdateLeadArgs{OrderID: u.OrderID}})
		}
		if u.AddNote {
			params = append(params, river.InsertManyParams{Args: AddNoteArgs{OrderID: u.OrderID}})
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
	}
	return nil
}
