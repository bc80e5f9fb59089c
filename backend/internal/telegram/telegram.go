// Package telegram is the bot's outbound client of the Telegram Bot API: it
// sends, edits and answers through github.com/go-telegram/bot, keeps
// Telegram's pace, fetches updates for the poller, and classifies errors. It
// knows nothing of the store or the use cases; package tgbot handles what
// Telegram sends.
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

	botapi "github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
)

// AllowedUpdates are the update kinds the bot asks Telegram for.
var AllowedUpdates = []string{"message", "my_chat_member", "callback_query"}

// Options configure a Client.
type Options struct {
	Token      string
	APIURL     string
	HTTPClient *http.Client
	Logger     *slog.Logger
	// PollTimeout is getUpdates' long-poll timeout (default 25s).
	PollTimeout time.Duration
	// CallTimeout bounds one sending call (default 15s).
	CallTimeout time.Duration
	// Ledger, when set, keeps the pace's sends and holds where replicas and
	// the next start see them (the database); nil paces this process only.
	Ledger PaceLedger
}

// Client calls the Bot API for the bot.
type Client struct {
	o      Options
	api    *botapi.Bot
	log    *slog.Logger
	me     atomic.Pointer[models.User]
	meOnce sync.Mutex
	pace   *pacer
}

// New builds a client; it calls nothing until asked.
func New(o Options) (*Client, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		// Every call goes to one host. Go's default keeps two idle
		// connections per host, so a storm of presses, answered by many
		// workers at once, would open (and drop) a connection per answer.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 128
		o.HTTPClient = &http.Client{Timeout: 60 * time.Second, Transport: t}
	}
	if o.PollTimeout == 0 {
		o.PollTimeout = 25 * time.Second
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 15 * time.Second
	}
	api, err := botapi.New(o.Token,
		botapi.WithServerURL(o.APIURL),
		botapi.WithSkipGetMe(),
		botapi.WithHTTPClient(o.PollTimeout+10*time.Second, o.HTTPClient),
	)
	if err != nil {
		return nil, fmt.Errorf("telegram: %w", err)
	}
	return &Client{o: o, api: api, log: o.Logger, pace: newPacer(o.Ledger, o.Logger)}, nil
}

// PollTimeout is getUpdates' long-poll timeout.
func (b *Client) PollTimeout() time.Duration { return b.o.PollTimeout }

// Username returns the bot's @username (without @), asking Telegram once.
func (b *Client) Username(ctx context.Context) (string, error) {
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
func (b *Client) StartGroupLink(ctx context.Context, code string) (string, error) {
	u, err := b.Username(ctx)
	if err != nil {
		return "", err
	}
	return "https://t.me/" + u + "?startgroup=" + code, nil
}

// DeleteWebhook switches the bot back to getUpdates.
func (b *Client) DeleteWebhook(ctx context.Context) error {
	if _, err := b.api.DeleteWebhook(ctx, &botapi.DeleteWebhookParams{}); err != nil {
		return fmt.Errorf("telegram deleteWebhook: %w", err)
	}
	return nil
}

// SetWebhook registers the webhook URL with its secret token.
func (b *Client) SetWebhook(ctx context.Context, url, secretToken string) error {
	_, err := b.api.SetWebhook(ctx, &botapi.SetWebhookParams{URL: url, SecretToken: secretToken, AllowedUpdates: AllowedUpdates})
	if err != nil {
		return fmt.Errorf("telegram setWebhook: %w", err)
	}
	return nil
}

// GetUpdates long-polls for updates from offset on. It is called directly
// rather than through the library's poller, which advances the offset as soon
// as an update is read, before the caller could store it.
func (b *Client) GetUpdates(ctx context.Context, offset int64) ([]json.RawMessage, error) {
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
