// Package tgbot handles what Telegram sends the bot: updates arrive by long
// polling or webhook, are stored before they are acknowledged, and are then
// routed to the use cases (chat linking in service, presses and start links
// in flow). It answers through the telegram client.
package tgbot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/flow"
)

// Update is a received update as the inbox keeps it.
type Update struct {
	ID       int64
	Payload  []byte
	Attempts int // processing attempts so far, this one included
	// ReceivedAt is when the update was stored (set by ClaimUpdates): a
	// press's answer latency counts from here.
	ReceivedAt time.Time
}

// Inbox is the durable store of received updates; the poller's lease lives
// there too, so that one process polls at a time.
type Inbox interface {
	SaveUpdates(ctx context.Context, updates []Update) (int, error)
	ClaimUpdates(ctx context.Context, owner string, limit int, lease time.Duration) ([]Update, error)
	FinishUpdate(ctx context.Context, id int64, owner string, procErr error, backoff time.Duration) error
	// FinishUpdates marks updates processed without error, at once.
	FinishUpdates(ctx context.Context, ids []int64, owner string) error
	MaxUpdateID(ctx context.Context) (int64, error)
	AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, owner string) error
}

// Chats is what update handling needs from the account use cases.
type Chats interface {
	LinkChat(ctx context.Context, code string, chat dispatch.Chat) (dispatch.Account, dispatch.Chat, error)
	ChatRemoved(ctx context.Context, chatID int64) error
	ChatMigrated(ctx context.Context, oldID, newID int64) error
	ChatAccount(ctx context.Context, chatID int64) (dispatch.Account, dispatch.Chat, error)
	RegisterExecutor(ctx context.Context, e dispatch.Executor) error
}

// Orders is what button presses and contact deep links need from the flow.
type Orders interface {
	// messageID is the pressed post: a press proves the post exists even if
	// the process that sent it died before recording it. 0: the press came
	// from a message the bot cannot access, which is never recorded or edited.
	Take(ctx context.Context, chatID int64, messageID int, orderID string, user dispatch.Executor) (flow.PressResult, error)
	RequestContact(ctx context.Context, chatID int64, messageID int, orderID string, user dispatch.Executor) (flow.PressResult, error)
	StartToken(ctx context.Context, user dispatch.Executor, token string) error
	// StatusPress is a button of the executor's private card (data after
	// flow.ActionStatus); Mine answers /my.
	StatusPress(ctx context.Context, data string, user dispatch.Executor) (flow.PressResult, error)
	// ReminderPress is a button of a reminder before the job time (data
	// after flow.ActionRemind) on messageID of the private chat.
	ReminderPress(ctx context.Context, data string, messageID int, user dispatch.Executor) (flow.PressResult, error)
	Mine(ctx context.Context, user dispatch.Executor, messageID int) error
}

// Client is the part of the Telegram client that handling uses.
type Client interface {
	Username(ctx context.Context) (string, error)
	StartLink(ctx context.Context, payload string) (string, error)
	Reply(ctx context.Context, chatID int64, text string, paceWait time.Duration) error
	AnswerCallback(ctx context.Context, queryID, text, url string, alert bool) error
	GetUpdates(ctx context.Context, offset int64) ([]json.RawMessage, error)
	DeleteWebhook(ctx context.Context) error
	PollTimeout() time.Duration
}

// Options configure a Handler. Every field but Logger is required.
type Options struct {
	Client Client
	Inbox  Inbox
	Chats  Chats
	Orders Orders
	Owner  string // this process's lease identity
	Logger *slog.Logger
	// Metrics receives the time from a press to its answer (nil: none).
	Metrics Metrics
}

// Metrics is what the handler reports to the operator's metrics.
type Metrics interface {
	Answered(sincePress time.Duration)
}

type noMetrics struct{}

func (noMetrics) Answered(time.Duration) {}

// Handler receives, stores and processes updates.
type Handler struct {
	o    Options
	log  *slog.Logger
	wake chan struct{}
}

// New builds a handler; Poll and Process run it.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	return &Handler{o: o, log: o.Logger, wake: make(chan struct{}, 1)}
}

// Accept stores raw updates (webhook body or a getUpdates batch) and wakes
// the processor. Only a nil return allows acknowledging them to Telegram.
func (b *Handler) Accept(ctx context.Context, raws []json.RawMessage) error {
	batch := make([]Update, 0, len(raws))
	for _, raw := range raws {
		var head struct {
			UpdateID *int64 `json:"update_id"`
		}
		if err := json.Unmarshal(raw, &head); err != nil || head.UpdateID == nil {
			return fmt.Errorf("telegram update without update_id: %w", dispatch.ErrInvalid)
		}
		batch = append(batch, Update{ID: *head.UpdateID, Payload: raw})
	}
	if _, err := b.o.Inbox.SaveUpdates(ctx, batch); err != nil {
		return err
	}
	b.Wake()
	return nil
}

// Wake nudges the processor to look for stored updates now.
func (b *Handler) Wake() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

const pollerLease = "telegram-poller"

// Poll runs getUpdates while this process holds the poller lease: Telegram
// allows one poller per bot (a second gets 409). The offset moves past an
// update only after it is stored, so a crash never loses one.
func (b *Handler) Poll(ctx context.Context) error {
	if err := b.o.Client.DeleteWebhook(ctx); err != nil {
		b.log.Warn("telegram deleteWebhook before polling failed", "err", err)
	}
	leaseTTL := b.o.Client.PollTimeout() + 20*time.Second
	var offset int64
	holding := false
	defer func() {
		if holding {
			_ = b.o.Inbox.ReleaseLease(context.WithoutCancel(ctx), pollerLease, b.o.Owner)
		}
	}()
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if backoff > 0 {
			if !sleep(ctx, backoff) {
				break
			}
		}
		ok, err := b.o.Inbox.AcquireLease(ctx, pollerLease, b.o.Owner, leaseTTL)
		if err != nil || !ok {
			if err != nil && ctx.Err() == nil {
				b.log.Warn("telegram poller lease", "err", err)
			}
			holding = false
			backoff = 2 * time.Second
			continue
		}
		if !holding {
			holding = true
			max, err := b.o.Inbox.MaxUpdateID(ctx)
			if err != nil {
				backoff = time.Second
				continue
			}
			if max > 0 {
				offset = max + 1
			}
			b.log.Info("telegram polling started", "offset", offset)
		}
		raws, err := b.o.Client.GetUpdates(ctx, offset)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			b.log.Warn("telegram getUpdates failed", "err", err)
			backoff = min(max(2*backoff, 500*time.Millisecond), 30*time.Second)
			continue
		}
		backoff = 0
		if len(raws) == 0 {
			continue
		}
		if err := b.Accept(ctx, raws); err != nil {
			b.log.Error("telegram store updates", "err", err)
			backoff = time.Second
			continue
		}
		var last struct {
			UpdateID int64 `json:"update_id"`
		}
		_ = json.Unmarshal(raws[len(raws)-1], &last)
		offset = last.UpdateID + 1
	}
	return nil
}

// Process works stored updates until ctx ends: woken at once by Accept, and
// every interval to pick up updates stored by other processes or left by a
// crash. Several workers claim small batches, so a burst of button presses is
// answered in parallel; each update is claimed by exactly one of them.
func (b *Handler) Process(ctx context.Context, interval time.Duration, workers int) {
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				for b.processBatch(ctx) {
				}
				select {
				case <-ctx.Done():
					return
				case <-b.wake:
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
}

// claimBatch is how many stored updates one worker claims at a time.
const claimBatch = 16

// processBatch handles one batch; it reports whether there may be more, and
// wakes another worker to share them. Button presses in the batch are
// handled at once (their answers are not paced, and the winner of a take
// is decided by one conditional UPDATE whatever the order); other updates
// (commands, membership changes) one after another in their order. The
// batch's processed updates are then marked with one statement.
func (b *Handler) processBatch(ctx context.Context) bool {
	ups, err := b.o.Inbox.ClaimUpdates(ctx, b.o.Owner, claimBatch, time.Minute)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Error("telegram claim updates", "err", err)
		}
		return false
	}
	if len(ups) == claimBatch {
		b.Wake()
	}
	errs := make([]error, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		if !isPress(u.Payload) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.handle(context.WithValue(ctx, receivedKey{}, u.ReceivedAt), u.Payload)
		}()
	}
	for i, u := range ups {
		if !isPress(u.Payload) {
			errs[i] = b.handle(context.WithValue(ctx, receivedKey{}, u.ReceivedAt), u.Payload)
		}
	}
	wg.Wait()
	var done []int64
	for i, u := range ups {
		if errs[i] == nil {
			done = append(done, u.ID)
			continue
		}
		b.log.Warn("telegram update failed", "update_id", u.ID, "attempt", u.Attempts, "err", errs[i])
		backoff := min(time.Duration(u.Attempts*u.Attempts)*time.Second, 10*time.Minute)
		if ferr := b.o.Inbox.FinishUpdate(context.WithoutCancel(ctx), u.ID, b.o.Owner, errs[i], backoff); ferr != nil {
			b.log.Error("telegram finish update", "update_id", u.ID, "err", ferr)
		}
	}
	if ferr := b.o.Inbox.FinishUpdates(context.WithoutCancel(ctx), done, b.o.Owner); ferr != nil {
		// Their claim runs out and they are handled again: every handler
		// is idempotent (a press answered twice, a take decided once).
		b.log.Error("telegram finish updates", "updates", len(done), "err", ferr)
	}
	return len(ups) == claimBatch
}

// isPress tells a button press from other updates without decoding it all.
func isPress(payload []byte) bool {
	return bytes.Contains(payload, []byte(`"callback_query"`))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type receivedKey struct{}

// receivedAt is when the update being handled was stored (zero when unknown).
func receivedAt(ctx context.Context) time.Time {
	t, _ := ctx.Value(receivedKey{}).(time.Time)
	return t
}
