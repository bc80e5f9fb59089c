package flow

import (
	"context"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Job arguments. Each names the record it acts on; the worker reloads the
// record and checks its state first, so a retried or repeated job does
// nothing twice. Each also names its account (account_id), so the fair
// share caps every kind of an account's work (fairShare); only the
// reconciler's fan-out, chores and /my (a user's orders of any account)
// name none.

// EventArgs carries one amoCRM webhook delivery: the job row is where the
// delivery is stored durably before amoCRM gets its 2xx.
type EventArgs struct {
	AccountID int64  `json:"account_id"`
	Body      string `json:"body"`
}

func (EventArgs) Kind() string { return "amo_event" }

type DispatchLeadArgs struct {
	AccountID int64  `json:"account_id"`
	LeadID    int64  `json:"lead_id"`
	Reason    string `json:"reason"`
	// HintStageID is the stage a webhook reported, if any.
	HintStageID int64 `json:"hint_stage_id,omitempty"`
	// Refresh: the deal itself changed (update_lead): an open post and an
	// executor's card are brought up to date.
	Refresh bool `json:"refresh,omitempty"`
}

func (DispatchLeadArgs) Kind() string { return "dispatch_lead" }

// DispatchLeadsArgs dispatches a page of an account's deals from one read
// (a bulk edit larger than a page).
type DispatchLeadsArgs struct {
	AccountID int64              `json:"account_id"`
	Leads     []DispatchLeadArgs `json:"leads"`
}

func (DispatchLeadsArgs) Kind() string { return "dispatch_leads" }

type PostOrderArgs struct {
	AccountID int64  `json:"account_id" river:"unique"`
	OrderID   string `json:"order_id" river:"unique"`
	// WebhookAt is when the webhook that created the order was accepted
	// (unset for orders the reconciler or the deal card created), for the
	// webhook-to-post latency. Not part of the job's identity: the
	// reconciler's job for the same order is the same job.
	WebhookAt time.Time `json:"webhook_at,omitzero"`
}

func (PostOrderArgs) Kind() string { return "post_order" }

// InsertOpts: the reconciler queues again what a job gave up on; a job
// still queued or running is not doubled.
func (PostOrderArgs) InsertOpts() river.InsertOpts { return onceLive() }

// onceLive makes a job unique among the jobs not finished yet.
func onceLive() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

type WithdrawPostArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
}

func (WithdrawPostArgs) Kind() string { return "withdraw_post" }

type EditTakenArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
}

func (EditTakenArgs) Kind() string { return "edit_taken" }

// TidyCopyArgs names a second post of an order (see tidyCopy); ChatID is
// the post's chat when it is not the order's (0: the order's).
type TidyCopyArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
	MessageID int    `json:"message_id"`
	ChatID    int64  `json:"chat_id,omitempty"`
}

func (TidyCopyArgs) Kind() string { return "tidy_copy" }

// InsertOpts: every press on the copy asks for the same edit.
func (TidyCopyArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

type SendContactArgs struct {
	AccountID  int64  `json:"account_id"`
	RevealID   string `json:"reveal_id"`
	TelegramID int64  `json:"telegram_id"`
	Winner     bool   `json:"winner"`
}

func (SendContactArgs) Kind() string { return "send_contact" }

// InsertOpts makes a reveal's job unique: repeated presses or /start links
// cannot queue the same contact twice.
func (SendContactArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

type UpdateLeadArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
}

func (UpdateLeadArgs) Kind() string { return "amo_update_lead" }

func (UpdateLeadArgs) InsertOpts() river.InsertOpts { return onceLive() }

type AddNoteArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
}

func (AddNoteArgs) Kind() string { return "amo_add_note" }

func (AddNoteArgs) InsertOpts() river.InsertOpts { return onceLive() }

// EditCardArgs rewrites the executor's private card; Ask shows the release
// question instead of the status buttons.
type EditCardArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
	Ask       bool   `json:"ask,omitempty"`
}

func (EditCardArgs) Kind() string { return "edit_card" }

// EditOpenPostArgs brings an untaken post's text up to its deal.
type EditOpenPostArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
}

func (EditOpenPostArgs) Kind() string { return "edit_open_post" }

func (EditOpenPostArgs) InsertOpts() river.InsertOpts { return onceLive() }

// RefreshCardArgs brings the executor's card up to its deal.
type RefreshCardArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
}

func (RefreshCardArgs) Kind() string { return "refresh_card" }

func (RefreshCardArgs) InsertOpts() river.InsertOpts { return onceLive() }

// EventWriteArgs writes one timeline step (a status, a contact sent) into the deal.
type EventWriteArgs struct {
	AccountID int64  `json:"account_id"`
	EventID   string `json:"event_id"`
}

func (EventWriteArgs) Kind() string { return "amo_event_write" }

func (EventWriteArgs) InsertOpts() river.InsertOpts { return onceLive() }

// ReleaseLeadArgs returns a released order's deal to the search and posts it again.
type ReleaseLeadArgs struct {
	AccountID int64  `json:"account_id"`
	EventID   string `json:"event_id"`
	ByManager bool   `json:"by_manager,omitempty"`
}

func (ReleaseLeadArgs) Kind() string { return "amo_release_lead" }

func (ReleaseLeadArgs) InsertOpts() river.InsertOpts { return onceLive() }

type EditReleasedArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
}

func (EditReleasedArgs) Kind() string { return "edit_released" }

// NotifyExecutorArgs tells an order's executor privately what the manager did.
type NotifyExecutorArgs struct {
	AccountID int64  `json:"account_id"`
	OrderID   string `json:"order_id"`
	Key       string `json:"key"`
}

func (NotifyExecutorArgs) Kind() string { return "notify_executor" }

// InsertOpts: one notice of a kind per order.
func (NotifyExecutorArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// SendMineArgs answers /my: the executor's open orders, each with its buttons.
type SendMineArgs struct {
	TelegramID int64 `json:"telegram_id"`
	MessageID  int   `json:"message_id"` // the /my message: a retried update asks once
}

func (SendMineArgs) Kind() string { return "send_mine" }

func (SendMineArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

type ReconcileArgs struct{}

func (ReconcileArgs) Kind() string { return "reconcile" }

type ReconcileAccountArgs struct {
	AccountID int64 `json:"account_id" river:"unique"`
	// Since, when set (Unix seconds), lists only the deals changed since
	// then: a deal whose webhook was lost was changed when it moved.
	Since int64 `json:"since,omitempty"`
}

func (ReconcileAccountArgs) Kind() string { return "reconcile_account" }

// ChoreArgs runs one of Options.Chores.
type ChoreArgs struct {
	Name string `json:"name"`
}

func (ChoreArgs) Kind() string { return "chore" }

// InsertOpts: a chore still queued or running is not queued again.
func (ChoreArgs) InsertOpts() river.InsertOpts { return onceLive() }

// choreWorker gives chores longer than other jobs: a pass over every
// account's tokens may outlast the one-minute job timeout.
type choreWorker struct {
	river.WorkerDefaults[ChoreArgs]
	f *Flow
}

func (w *choreWorker) Timeout(*river.Job[ChoreArgs]) time.Duration { return 10 * time.Minute }

func (w *choreWorker) Work(ctx context.Context, j *river.Job[ChoreArgs]) error {
	return w.f.runChore(ctx, j.Args.Name)
}

func (f *Flow) register(w *river.Workers) {
	river.AddWorker(w, &choreWorker{f: f})
	f.registerDigests(w)
	f.registerEscalation(w)
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EventArgs]) error {
		return f.workEvent(ctx, j.Args)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[DispatchLeadArgs]) error {
		return outcome(f.dispatchLead(ctx, j.Args))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[DispatchLeadsArgs]) error {
		return outcome(f.dispatchLeads(ctx, j.Args.AccountID, j.Args.Leads))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[PostOrderArgs]) error {
		return outcome(f.postOrder(context.WithValue(ctx, webhookAtKey{}, j.Args.WebhookAt), j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[WithdrawPostArgs]) error {
		return outcome(f.withdrawPost(ctx, j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EditTakenArgs]) error {
		return outcome(f.editTaken(ctx, j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[TidyCopyArgs]) error {
		return outcome(f.tidyCopy(ctx, j.Args))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[SendContactArgs]) error {
		return outcome(f.sendContact(ctx, j.Args))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[UpdateLeadArgs]) error {
		return outcome(f.updateLead(ctx, j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[AddNoteArgs]) error {
		return outcome(f.addNote(ctx, j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EditCardArgs]) error {
		return outcome(f.editCard(ctx, j.Args))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EditOpenPostArgs]) error {
		return outcome(f.editOpenPost(ctx, j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[RefreshCardArgs]) error {
		return outcome(f.refreshCard(ctx, j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EventWriteArgs]) error {
		return outcome(f.writeEvent(ctx, j.Args.EventID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[ReleaseLeadArgs]) error {
		return outcome(f.releaseLead(ctx, j.Args))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EditReleasedArgs]) error {
		return outcome(f.editReleased(ctx, j.Args.OrderID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[NotifyExecutorArgs]) error {
		return outcome(f.notifyExecutor(ctx, j.Args))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[SendMineArgs]) error {
		return outcome(f.sendMine(ctx, j.Args.TelegramID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[ReconcileArgs]) error {
		return f.reconcile(ctx)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[ReconcileAccountArgs]) error {
		return outcome(f.reconcileAccount(ctx, j.Args))
	}))
	f.registerReminders(w)
}
