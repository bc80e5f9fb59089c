// Package telegram is the bot's adapter to the Telegram Bot API: it receives
// updates (long polling or webhook), stores each before acknowledging it,
// processes stored updates, and sends the bot's messages through
// github.com/go-telegram/bot.
package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tgbot "github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// AllowedUpdates are the update kinds the bot asks Telegram for.
var AllowedUpdates = []string{"message", "my_chat_member", "callback_query"}

// Inbox is the durable store of received updates.
type Inbox interface {
	SaveUpdates(ctx context.Context, updates []store.StoredUpdate) (int, error)
	ClaimUpdates(ctx context.Context, owner string, limit int, lease time.Duration) ([]store.StoredUpdate, error)
	FinishUpdate(ctx context.Context, id int64, owner string, procErr error, backoff time.Duration) error
	MaxUpdateID(ctx context.Context) (int64, error)
	AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, owner string) error
}

// Chats is what update handling needs from the product's use cases.
type Chats interface {
	LinkChat(ctx context.Context, code string, chat dispatch.Chat) (dispatch.Account, dispatch.Chat, error)
	ChatRemoved(ctx context.Context, chatID int64) error
	ChatMigrated(ctx context.Context, oldID, newID int64) error
	ChatAccount(ctx context.Context, chatID int64) (dispatch.Account, dispatch.Chat, error)
	RegisterExecutor(ctx context.Context, e dispatch.Executor) error
}

// Options configure a Bot.
type Options struct {
	Token      string
	APIURL     string
	HTTPClient *http.Client
	Inbox      Inbox
	Chats      Chats
	Orders     Orders // nil until the dispatch flow is wired
	Owner      string // this process's lease identity
	Logger     *slog.Logger
	// PollTimeout is getUpdates' long-poll timeout (default 25s).
	PollTimeout time.Duration
	// CallTimeout bounds one sending call (default 15s).
	CallTimeout time.Duration
}

// Bot receives, stores and processes updates and sends messages.
type Bot struct {
	o      Options
	api    *tgbot.Bot
	log    *slog.Logger
	wake   chan struct{}
	me     atomic.Pointer[models.User]
	meOnce sync.Mutex
	pace   *pacer
}

func New(o Options) (*Bot, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if o.PollTimeout == 0 {
		o.PollTimeout = 25 * time.Second
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 15 * time.Second
	}
	api, err := tgbot.New(o.Token,
		tgbot.WithServerURL(o.APIURL),
		tgbot.WithSkipGetMe(),
		tgbot.WithHTTPClient(o.PollTimeout+10*time.Second, o.HTTPClient),
	)
	if err != nil {
		return nil, fmt.Errorf("telegram: %w", err)
	}
	return &Bot{o: o, api: api, log: o.Logger, wake: make(chan struct{}, 1), pace: newPacer()}, nil
}

// SetOrders connects the dispatch flow, which itself sends through the bot.
func (b *Bot) SetOrders(o Orders) { b.o.Orders = o }

// Username returns the bot's @username (without @), asking Telegram once.
func (b *Bot) Username(ctx context.Context) (string, error) {
	if me := b.me.Load(); me != nil {
		return me.Username, nil
	}
	b.meOnce.Lock()
	defer b.meOnce.Unlock()
	if me := b.me.Load(); me != nil {
		return me.Username, nil
	}
	me, err := b.api.GetMe(ctx)
	if err != nil {
		return "", fmt.Errorf("telegram getMe: %w", err)
	}
	b.me.Store(me)
	return me.Username, nil
}

// StartGroupLink is the deep link that adds the bot to a group and links it.
func (b *Bot) StartGroupLink(ctx context.Context, code string) (string, error) {
	u, err := b.Username(ctx)
	if err != nil {
		return "", err
	}
	return "https://t.me/" + u + "?startgroup=" + code, nil
}

// Accept stores raw updates (webhook body or a getUpdates batch) and wakes
// the processor. Only a nil return allows acknowledging them to Telegram.
func (b *Bot) Accept(ctx context.Context, raws []json.RawMessage) error {
	batch := make([]store.StoredUpdate, 0, len(raws))
	for _, raw := range raws {
		var head struct {
			UpdateID *int64 `json:"update_id"`
		}
		if err := json.Unmarshal(raw, &head); err != nil || head.UpdateID == nil {
			return fmt.Errorf("telegram update without update_id: %w", dispatch.ErrInvalid)
		}
		batch = append(batch, store.StoredUpdate{ID: *head.UpdateID, Payload: raw})
	}
	if _, err := b.o.Inbox.SaveUpdates(ctx, batch); err != nil {
		return err
	}
	b.Wake()
	return nil
}

// Wake nudges the processor to look for stored updates now.
func (b *Bot) Wake() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// SetWebhook registers the webhook URL with its secret token.
func (b *Bot) SetWebhook(ctx context.Context, url, secretToken string) error {
	_, err := b.api.SetWebhook(ctx, &tgbot.SetWebhookParams{URL: url, SecretToken: secretToken, AllowedUpdates: AllowedUpdates})
	if err != nil {
		return fmt.Errorf("telegram setWebhook: %w", err)
	}
	return nil
}

const pollerLease = "telegram-poller"

// Poll runs getUpdates while this process holds the poller lease: Telegram
// allows one poller per bot (a second gets 409). The offset moves past an
// update only after it is stored, so a crash never loses one.
func (b *Bot) Poll(ctx context.Context) error {
	if _, err := b.api.DeleteWebhook(ctx, &tgbot.DeleteWebhookParams{}); err != nil {
		b.log.Warn("telegram deleteWebhook before polling failed", "err", err)
	}
	leaseTTL := b.o.PollTimeout + 20*time.Second
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
		raws, err := b.getUpdates(ctx, offset)
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

// getUpdates is called directly rather than through the library's poller,
// which advances the offset as soon as an update is read, before it is stored.
func (b *Bot) getUpdates(ctx context.Context, offset int64) ([]json.RawMessage, error) {
	body, _ := json.Marshal(map[string]any{"offset": offset, "timeout": int(b.o.PollTimeout.Seconds()), "allowed_updates": AllowedUpdates})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.o.APIURL+"/bot"+b.o.Token+"/getUpdates", strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.o.HTTPClient.Do(req)
	if err != nil {
		// The URL holds the token; never let it reach a log line.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("getUpdates: %w", ue.Unwrap())
		}
		return nil, errors.New("getUpdates: request failed")
	}
	defer resp.Body.Close()
	var out struct {
		OK          bool              `json:"ok"`
		Result      []json.RawMessage `json:"result"`
		ErrorCode   int               `json:"error_code"`
		Description string            `json:"description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("getUpdates: HTTP %d: %w", resp.StatusCode, err)
	}
	if !out.OK {
		return nil, fmt.Errorf("getUpdates: %d %s", out.ErrorCode, out.Description)
	}
	return out.Result, nil
}

// Process works stored updates until ctx ends: woken at once by Accept, and
// every interval to pick up updates stored by other processes or left by a
// crash. Several workers claim small batches, so a burst of button presses is
// answered in parallel; each update is claimed by exactly one of them.
func (b *Bot) Process(ctx context.Context, interval time.Duration, workers int) {
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

// processBatch handles one batch; it reports whether there may be more, and
// wakes another worker to share them.
func (b *Bot) processBatch(ctx context.Context) bool {
	const batch = 8
	ups, err := b.o.Inbox.ClaimUpdates(ctx, b.o.Owner, batch, time.Minute)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Error("telegram claim updates", "err", err)
		}
		return false
	}
	if len(ups) == batch {
		b.Wake()
	}
	for _, u := range ups {
		err := b.handle(ctx, u.Payload)
		if err != nil {
			b.log.Warn("telegram update failed", "update_id", u.ID, "attempt", u.Attempts, "err", err)
		}
		backoff := min(time.Duration(u.Attempts*u.Attempts)*time.Second, 10*time.Minute)
		if ferr := b.o.Inbox.FinishUpdate(context.WithoutCancel(ctx), u.ID, b.o.Owner, err, backoff); ferr != nil {
			b.log.Error("telegram finish update", "update_id", u.ID, "err", ferr)
		}
	}
	return len(ups) == batch
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
