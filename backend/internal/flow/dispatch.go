package flow

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/orderview"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// workEvent turns one webhook delivery into dispatch_lead jobs for the deals
// it may concern. Webhooks are only hints: dispatch_lead re-reads the deal.
func (f *Flow) workEvent(ctx context.Context, args EventArgs) error {
	payload, err := amocrm.ParseWebhook([]byte(args.Body))
	if err != nil {
		f.log.Warn("amoCRM webhook not understood, skipped", "account_id", args.AccountID, "err", err)
		return nil
	}
	rules, err := f.db.Rules(ctx, args.AccountID)
	if err != nil {
		return err
	}
	settings := dispatch.Settings{AccountID: args.AccountID, Rules: rules} // the trigger stages alone
	var leads []DispatchLeadArgs
	seen := map[int64]bool{}
	for _, ev := range payload.Leads {
		if seen[ev.LeadID] {
			continue
		}
		relevant := settings.IsTriggerStage(ev.StatusID) || settings.IsTriggerStage(ev.OldStatusID)
		if !relevant {
			// Leaving the search, deletion, or an update of a deal with a
			// current order or an executor at work: the order may need
			// closing, its post or card an edit.
			if relevant, err = f.db.HasCurrentOrder(ctx, args.AccountID, ev.LeadID); err != nil {
				return err
			}
		}
		if relevant {
			seen[ev.LeadID] = true
			leads = append(leads, DispatchLeadArgs{AccountID: args.AccountID, LeadID: ev.LeadID, Reason: "webhook", HintStageID: ev.StatusID,
				Refresh: ev.Kind == amocrm.WebhookUpdate})
		}
	}
	// Deals are dispatched right here, not through further jobs, to keep
	// "webhook → post" short; a failure retries the whole event, which is
	// harmless because dispatching is idempotent.
	if len(leads) == 1 {
		return outcome(f.dispatchLead(ctx, leads[0]))
	}
	// A bulk edit lists many deals in one delivery: they are read a page of
	// up to 250 at a time (one request instead of one each), and a bulk
	// larger than a page becomes one job per page.
	if len(leads) <= leadPage {
		return outcome(f.dispatchLeads(ctx, args.AccountID, leads))
	}
	var params []river.InsertManyParams
	for p := range slices.Chunk(leads, leadPage) {
		params = append(params, river.InsertManyParams{Args: DispatchLeadsArgs{AccountID: args.AccountID, Leads: p}})
	}
	_, err = f.river.InsertMany(ctx, params)
	return err
}

// leadPage is amoCRM's largest page of deals.
const leadPage = 250

// dispatchLeads dispatches several deals of an account from one paged read.
// A deal the list leaves out is gone (deleted deals are not listed).
func (f *Flow) dispatchLeads(ctx context.Context, accountID int64, leads []DispatchLeadArgs) error {
	var ids []int64
	for _, l := range leads {
		if !f.stillSearching(ctx, l) {
			ids = append(ids, l.LeadID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	api, err := f.o.CRM.API(ctx, accountID)
	if err != nil {
		return err
	}
	read, err := api.ListLeads(ctx, amocrm.LeadFilter{IDs: ids})
	if err != nil {
		return err
	}
	byID := make(map[int64]amocrm.Lead, len(read))
	for _, l := range read {
		byID[l.ID] = l
	}
	for _, l := range leads {
		if !slices.Contains(ids, l.LeadID) {
			continue
		}
		lead, found := byID[l.LeadID]
		unlock := f.lockLead(l.LeadID)
		err := f.matchLead(ctx, api, l, lead, !found)
		unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// stillSearching: the webhook says the deal is in a search stage and it has
// a current order, so there is nothing to read.
func (f *Flow) stillSearching(ctx context.Context, args DispatchLeadArgs) bool {
	// A deal edit (update_lead) must be read: its post or card may change.
	if args.HintStageID == 0 || args.Refresh {
		return false
	}
	rules, err := f.db.Rules(ctx, args.AccountID)
	if err != nil || !(dispatch.Settings{Rules: rules}).IsTriggerStage(args.HintStageID) {
		return false
	}
	_, err = f.db.ActiveOrder(ctx, args.AccountID, args.LeadID)
	return err == nil
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
	if f.stillSearching(ctx, args) {
		return nil // already posted
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
	return f.matchLead(ctx, api, args, lead, gone)
}

// matchLead makes the deal's orders match the deal as just read (gone: not
// found, or deleted), and brings an executor's order along with it.
func (f *Flow) matchLead(ctx context.Context, api *amocrm.API, args DispatchLeadArgs, lead amocrm.Lead, gone bool) error {
	settings, err := f.db.Settings(ctx, args.AccountID)
	if err != nil {
		return err
	}
	if lead, err = f.followExecutor(ctx, api, args, settings, lead, gone || lead.IsDeleted); err != nil {
		return err
	}
	if gone || lead.IsDeleted {
		f.log.Info("deal no longer in amoCRM, skipped", "account_id", args.AccountID, "lead_id", args.LeadID)
		return f.closeRound(ctx, args.AccountID, args.LeadID)
	}
	if !settings.IsTrigger(lead.PipelineID, lead.StatusID) {
		return f.closeRound(ctx, args.AccountID, args.LeadID)
	}
	if o, err := f.db.ActiveOrder(ctx, args.AccountID, args.LeadID); err == nil {
		if args.Refresh && (o.Status == dispatch.OrderOpen || o.Status == dispatch.OrderPosting) {
			return f.refreshPost(ctx, api, settings, lead, o)
		}
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
		if err := f.planLadder(ctx, tx, settings, o); err != nil {
			return err
		}
		return f.enqueue(ctx, tx, PostOrderArgs{AccountID: o.AccountID, OrderID: o.ID, WebhookAt: webhookAt(ctx)})
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
	if cur, err := f.db.ActiveOrder(ctx, accountID, leadID); err == nil && cur.Status == dispatch.OrderWithdrawn {
		// An expired order stays the deal's current one, so the deal is
		// not posted again by itself; the manager's post starts a new round.
		if err := f.closeRound(ctx, accountID, leadID); err != nil {
			return err
		}
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
	if err != nil || !c.ActiveFor(accountID) {
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
		if was.CanWithdraw() {
			return f.enqueue(ctx, tx, WithdrawPostArgs{AccountID: was.AccountID, OrderID: was.ID})
		}
		return nil
	})
}

// followExecutor keeps an executor at work in step with the deal: a deal a
// person closed, deleted, moved to another pipeline or to a stage the flow
// never sets ends the order (the executor is told, the card's buttons go);
// moved back to the search, it ends too, since a new round begins; an edit
// of the deal reaches the card. The backend's own moves land in the flow's
// stages, so their webhooks change nothing here.
//
// It returns the deal as the rest of dispatching should see it: a deal in a
// search stage while its order is no longer the current one is read again,
// since the read may predate the take's own move to "executor found" (whose
// round closes right after it), and a stale read must neither end the
// executor's order nor post the deal again.
func (f *Flow) followExecutor(ctx context.Context, api *amocrm.API, args DispatchLeadArgs, s dispatch.Settings, lead amocrm.Lead, gone bool) (amocrm.Lead, error) {
	o, err := f.db.InProgressOrder(ctx, args.AccountID, args.LeadID)
	if errors.Is(err, dispatch.ErrNotFound) {
		return lead, nil
	}
	if err != nil {
		return lead, err
	}
	if !gone && !o.Active && s.IsTrigger(lead.PipelineID, lead.StatusID) {
		fresh, err := api.GetLead(ctx, args.LeadID, false)
		switch {
		case errors.Is(err, amocrm.ErrNotFound):
			gone, lead.IsDeleted = true, true
		case err != nil:
			return lead, err
		default:
			lead = fresh
			gone = lead.IsDeleted
		}
	}
	rule, _ := s.Rule(o.PipelineID)
	backToSearch := !o.Active && s.IsTrigger(lead.PipelineID, lead.StatusID)
	if gone || lead.PipelineID != o.PipelineID || !rule.FlowStage(lead.StatusID) || backToSearch {
		return lead, f.endUnderExecutor(ctx, o)
	}
	// A moved job time moves the reminders (the deal was just read).
	if err := f.followJobTime(ctx, api, o, s, lead); err != nil {
		return lead, err
	}
	if args.Refresh {
		return lead, f.db.InTx(ctx, func(tx *store.Tx) error {
			return f.enqueue(ctx, tx, RefreshCardArgs{AccountID: o.AccountID, OrderID: o.ID})
		})
	}
	return lead, nil
}

// refreshPost re-renders an untaken post from the deal just read and, when
// its text changed, stores it and queues the edit.
func (f *Flow) refreshPost(ctx context.Context, api *amocrm.API, s dispatch.Settings, lead amocrm.Lead, o dispatch.Order) error {
	a, err := f.db.Account(ctx, s.AccountID)
	if err != nil {
		return err
	}
	view, err := f.viewOptions(ctx, api, a, s)
	if err != nil {
		return err
	}
	text := orderview.Group(lead, view)
	if text == o.GroupText {
		return nil
	}
	return f.db.InTx(ctx, func(tx *store.Tx) error {
		changed, err := tx.SetGroupText(o.ID, text)
		if err != nil || !changed {
			return err
		}
		f.log.Info("deal changed before the take, post to be edited", "account_id", o.AccountID, "order_id", o.ID)
		return f.enqueue(ctx, tx, EditOpenPostArgs{AccountID: o.AccountID, OrderID: o.ID})
	})
}

// editOpenPost rewrites a post still open with its stored text, keeping its
// buttons; a post taken or withdrawn meanwhile has edits of its own.
func (f *Flow) editOpenPost(ctx context.Context, orderID string) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil || o.Status != dispatch.OrderOpen || o.MessageID == 0 {
		return err // a posting order is sent with the new text
	}
	a, s, err := f.accountSettings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	rows := buttons(i18n.Lang(s.Lang(a)), o.ID, s.ContactPolicy)
	return f.eachPost(ctx, o, func(p dispatch.Order) error {
		err := f.o.Sender.EditHTMLButtons(ctx, p.ChatID, p.MessageID, p.GroupText, rows)
		if errors.Is(err, telegram.ErrMessageGone) {
			return nil
		}
		return err
	})
}

// refreshCard re-renders the executor's card from the deal and edits it when
// the order's text changed.
func (f *Flow) refreshCard(ctx context.Context, orderID string) error {
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil || !o.InProgress() || o.CardMessageID == 0 {
		return err
	}
	text, _, err := f.privateText(ctx, o, f.cardLang(ctx, o.ExecutorID), true)
	if errors.Is(err, amocrm.ErrNotFound) {
		return nil
	}
	if err != nil || text == o.CardText {
		return err
	}
	if err := f.db.SetCard(ctx, o.ID, o.CardMessageID, text); err != nil {
		return err
	}
	return f.editCard(ctx, EditCardArgs{AccountID: o.AccountID, OrderID: o.ID})
}
