package tgbot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/flow"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
)

// fakeClient records what the handler sends; Username and StartLink answer
// as a bot called "testbot".
type fakeClient struct {
	answers []answer
	replies []reply
}

type answer struct{ text, url string }
type reply struct {
	chatID int64
	text   string
}

func (c *fakeClient) Username(context.Context) (string, error) { return "testbot", nil }
func (c *fakeClient) StartLink(_ context.Context, p string) (string, error) {
	return "https://t.me/testbot?start=" + p, nil
}
func (c *fakeClient) Reply(_ context.Context, chatID int64, text string, _ time.Duration) error {
	c.replies = append(c.replies, reply{chatID, text})
	return nil
}
func (c *fakeClient) AnswerCallback(_ context.Context, _, text, url string, _ bool) error {
	c.answers = append(c.answers, answer{text, url})
	return nil
}
func (c *fakeClient) GetUpdates(context.Context, int64) ([]json.RawMessage, error) { return nil, nil }
func (c *fakeClient) DeleteWebhook(context.Context) error                          { return nil }
func (c *fakeClient) PollTimeout() time.Duration                                   { return time.Second }

// fakeOrders is the flow as func fields; a nil field fails the test if called.
type fakeOrders struct {
	t             *testing.T
	take, contact func(orderID string) (flow.PressResult, error)
	startToken    func(token string) error
	status        func(data string) (flow.PressResult, error)
	mine          func(telegramID int64) error
	remind        func(data string, messageID int) (flow.PressResult, error)
}

func (o fakeOrders) ReminderPress(_ context.Context, data string, messageID int, _ dispatch.Executor) (flow.PressResult, error) {
	if o.remind == nil {
		o.t.Fatal("ReminderPress called")
	}
	return o.remind(data, messageID)
}

func (o fakeOrders) StatusPress(_ context.Context, data string, _ dispatch.Executor) (flow.PressResult, error) {
	if o.status == nil {
		o.t.Fatal("StatusPress called")
	}
	return o.status(data)
}
func (o fakeOrders) Mine(_ context.Context, u dispatch.Executor, _ int) error {
	if o.mine == nil {
		o.t.Fatal("Mine called")
	}
	return o.mine(u.TelegramID)
}

func (o fakeOrders) Take(_ context.Context, _ int64, _ int, id string, _ dispatch.Executor) (flow.PressResult, error) {
	if o.take == nil {
		o.t.Fatal("Take called")
	}
	return o.take(id)
}
func (o fakeOrders) RequestContact(_ context.Context, _ int64, _ int, id string, _ dispatch.Executor) (flow.PressResult, error) {
	if o.contact == nil {
		o.t.Fatal("RequestContact called")
	}
	return o.contact(id)
}
func (o fakeOrders) StartToken(_ context.Context, _ dispatch.Executor, token string) error {
	if o.startToken == nil {
		o.t.Fatal("StartToken called")
	}
	return o.startToken(token)
}

// fakeChats is the account use cases as func fields.
type fakeChats struct {
	link     func(code string) (dispatch.Account, dispatch.Chat, error)
	linkedTo *dispatch.Account // ChatAccount's answer; nil: the chat is linked nowhere
}

func (c fakeChats) LinkChat(_ context.Context, code string, _ dispatch.Chat) (dispatch.Account, dispatch.Chat, error) {
	return c.link(code)
}
func (fakeChats) ChatRemoved(context.Context, int64) error         { return nil }
func (fakeChats) ChatMigrated(context.Context, int64, int64) error { return nil }
func (c fakeChats) ChatAccount(_ context.Context, chatID int64) (dispatch.Account, dispatch.Chat, error) {
	if c.linkedTo == nil {
		return dispatch.Account{}, dispatch.Chat{}, dispatch.ErrNotFound
	}
	return *c.linkedTo, dispatch.Chat{ID: chatID, AccountID: c.linkedTo.ID, Active: true}, nil
}
func (fakeChats) RegisterExecutor(context.Context, dispatch.Executor) error { return nil }

func press(data string, buttons ...string) []byte {
	var row []models.InlineKeyboardButton
	for _, b := range buttons {
		row = append(row, models.InlineKeyboardButton{Text: b, CallbackData: b})
	}
	u := models.Update{ID: 1, CallbackQuery: &models.CallbackQuery{ID: "q1", Data: data,
		From: models.User{ID: 42, FirstName: "Ivan", LanguageCode: "en"},
		Message: models.MaybeInaccessibleMessage{Type: models.MaybeInaccessibleMessageTypeMessage, Message: &models.Message{
			ID: 10, Date: 1700000000, Chat: models.Chat{ID: -100, Type: models.ChatTypeSupergroup},
			ReplyMarkup: &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{row}}}}}}
	raw, _ := json.Marshal(u)
	return raw
}

// The answer a presser reads, one row per outcome of the use case.
func TestPressAnswers(t *testing.T) {
	const link = "https://t.me/testbot?start=ctok"
	tests := []struct {
		data    string
		res     flow.PressResult
		err     error
		key     string
		url     string
		wantErr bool
	}{
		{data: "t:o1", res: flow.PressResult{Outcome: flow.Won}, key: "cb.yours"},
		{data: "t:o1", res: flow.PressResult{Outcome: flow.WonOpenBot, StartToken: "ctok"}, key: "cb.yours_start", url: link},
		{data: "t:o1", res: flow.PressResult{Outcome: flow.AlreadyYours}, key: "cb.already_yours"},
		{data: "t:o1", res: flow.PressResult{Outcome: flow.AlreadyTaken}, key: "cb.taken"},
		{data: "t:o1", res: flow.PressResult{Outcome: flow.Closed}, key: "cb.closed"},
		{data: "t:o1", err: errors.New("database down"), key: "cb.error", wantErr: true},
		{data: "p:o1", res: flow.PressResult{Outcome: flow.ContactSent}, key: "cb.contact_sent"},
		{data: "p:o1", res: flow.PressResult{Outcome: flow.ContactOpenBot, StartToken: "ctok"}, key: "cb.open_bot", url: link},
		{data: "p:o1", res: flow.PressResult{Outcome: flow.AlreadyTaken}, key: "cb.taken"},
		{data: "p:o1", res: flow.PressResult{Outcome: flow.Closed}, key: "cb.closed"},
		{data: "x:o1", key: "cb.closed"}, // a button of an older version
		{data: "s:wo1", res: flow.PressResult{Outcome: flow.StatusSaved}, key: "cb.status_saved"},
		{data: "s:wo1", res: flow.PressResult{Outcome: flow.StatusAlready}, key: "cb.status_already"},
		{data: "s:wo1", res: flow.PressResult{Outcome: flow.NotYours}, key: "cb.not_yours"},
		{data: "s:ro1", res: flow.PressResult{Outcome: flow.ReleaseAsk}, key: "cb.release_ask"},
		{data: "s:Ro1", res: flow.PressResult{Outcome: flow.Released}, key: "cb.released"},
		{data: "s:xo1", res: flow.PressResult{Outcome: flow.ReleaseKept}, key: "cb.release_kept"},
		{data: "p:o1", res: flow.PressResult{Outcome: flow.ContactExecutorOnly}, key: "cb.executor_only"},
		{data: "m:co1", res: flow.PressResult{Outcome: flow.Confirmed}, key: "cb.confirmed"},
		{data: "m:co1", res: flow.PressResult{Outcome: flow.ConfirmedAlready}, key: "cb.confirmed_already"},
		{data: "m:co1", res: flow.PressResult{Outcome: flow.NotYours}, key: "cb.not_yours"},
		{data: "m:ro1", res: flow.PressResult{Outcome: flow.ReleaseAsk}, key: "cb.release_ask"},
		{data: "m:Ro1", res: flow.PressResult{Outcome: flow.Released}, key: "cb.released"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %v %v", tc.data, tc.res.Outcome, tc.err), func(t *testing.T) {
			c := &fakeClient{}
			decide := func(id string) (flow.PressResult, error) {
				if id != "o1" {
					t.Errorf("order id %q, want o1", id)
				}
				return tc.res, tc.err
			}
			status := func(data string) (flow.PressResult, error) { return decide(data[1:]) }
			remind := func(data string, messageID int) (flow.PressResult, error) {
				if messageID != 10 {
					t.Errorf("reminder press on message %d, want the pressed 10", messageID)
				}
				return decide(data[1:])
			}
			h := New(Options{Client: c, Orders: fakeOrders{t: t, take: decide, contact: decide, status: status, remind: remind}})
			err := h.handle(context.Background(), press(tc.data, tc.data))
			if (err != nil) != tc.wantErr {
				t.Errorf("handle: %v, want error %v", err, tc.wantErr)
			}
			want := answer{i18n.T("en", tc.key), tc.url}
			if len(c.answers) != 1 || c.answers[0] != want {
				t.Errorf("answers %q, want %q", c.answers, want)
			}
		})
	}
}

// Telegram does not check that the pressed message carries the data: a
// press with another button's data is answered and goes no further.
func TestForgedPressReachesNoUseCase(t *testing.T) {
	c := &fakeClient{}
	h := New(Options{Client: c, Orders: fakeOrders{t: t}})
	if err := h.handle(context.Background(), press("t:other-order", "t:o1", "p:o1")); err != nil {
		t.Fatal(err)
	}
	// A reminder's confirmation forged onto another reminder.
	if err := h.handle(context.Background(), press("m:cother-order", "m:co1", "m:ro1")); err != nil {
		t.Fatal(err)
	}
	if len(c.answers) != 2 || c.answers[0].text != i18n.T("en", "cb.stale") || c.answers[1].text != i18n.T("en", "cb.stale") {
		t.Errorf("answers %q, want the stale-button answer twice", c.answers)
	}
}

func message(chatID int64, chatType models.ChatType, text string) []byte {
	u := models.Update{ID: 2, Message: &models.Message{ID: 5, Text: text, Chat: models.Chat{ID: chatID, Type: chatType, Title: "Group"},
		From: &models.User{ID: 42, FirstName: "Ivan", LanguageCode: "en"}}}
	raw, _ := json.Marshal(u)
	return raw
}

// What a private /start with a contact token answers, one row per outcome.
func TestStartTokenReplies(t *testing.T) {
	tests := []struct {
		err  error
		want string // "" : no reply, the contact is the answer
	}{
		{nil, ""},
		{dispatch.ErrLinkExpired, i18n.T("en", "start.expired")},
		{dispatch.ErrOrderClosed, i18n.T("en", "start.closed")},
		{dispatch.ErrNotFound, i18n.T("en", "start.private", "Ivan")},
	}
	for _, tc := range tests {
		c := &fakeClient{}
		h := New(Options{Client: c, Chats: fakeChats{}, Orders: fakeOrders{t: t, startToken: func(string) error { return tc.err }}})
		if err := h.handle(context.Background(), message(42, models.ChatTypePrivate, "/start c123")); err != nil {
			t.Fatal(err)
		}
		var got string
		if len(c.replies) > 0 {
			got = c.replies[0].text
		}
		if got != tc.want || len(c.replies) > 1 {
			t.Errorf("StartToken %v: replies %+v, want %q", tc.err, c.replies, tc.want)
		}
	}
}

// What /link answers in a group, one row per outcome of linking.
func TestLinkReplies(t *testing.T) {
	acc := dispatch.Account{ID: 7, Name: "Acme", Language: "en"}
	tests := []struct {
		err      error
		linkedTo *dispatch.Account // the chat's account before the command
		want     string
	}{
		{nil, nil, i18n.T("en", "link.ok", "Group", "Acme")},
		// A spent (single-use), rotated or made-up code.
		{dispatch.ErrNotFound, nil, i18n.T("en", "link.bad_code")},
		// The same, replayed in a group already linked: where it belongs.
		{dispatch.ErrNotFound, &dispatch.Account{ID: 8, Name: "Zulu", Language: "ru"}, i18n.T("ru", "link.already", "Zulu")},
		{dispatch.ErrChatTaken, nil, i18n.T("en", "link.taken")},
	}
	for _, tc := range tests {
		c := &fakeClient{}
		h := New(Options{Client: c, Orders: fakeOrders{t: t}, Chats: fakeChats{linkedTo: tc.linkedTo, link: func(code string) (dispatch.Account, dispatch.Chat, error) {
			if code != "CODE" {
				t.Errorf("code %q", code)
			}
			return acc, dispatch.Chat{ID: -100, Title: "Group"}, tc.err
		}}})
		if err := h.handle(context.Background(), message(-100, models.ChatTypeSupergroup, "/link@testbot CODE")); err != nil {
			t.Fatal(err)
		}
		if len(c.replies) != 1 || c.replies[0] != (reply{-100, tc.want}) {
			t.Errorf("link %v: replies %+v, want %q", tc.err, c.replies, tc.want)
		}
	}
}

// A command addressed to another bot in the group is not ours.
func TestCommandForAnotherBot(t *testing.T) {
	c := &fakeClient{}
	h := New(Options{Client: c, Orders: fakeOrders{t: t}, Chats: fakeChats{link: func(string) (dispatch.Account, dispatch.Chat, error) {
		t.Error("linked on another bot's command")
		return dispatch.Account{}, dispatch.Chat{}, nil
	}}})
	if err := h.handle(context.Background(), message(-100, models.ChatTypeSupergroup, "/link@otherbot CODE")); err != nil {
		t.Fatal(err)
	}
	if len(c.replies) != 0 {
		t.Errorf("replied %+v to another bot's command", c.replies)
	}
}

// A press from a message the bot cannot read acts on the order in its own
// chat with no message: its keyboard cannot be checked, so it is neither
// recorded as the post nor edited.
func TestPressFromInaccessibleMessage(t *testing.T) {
	c := &fakeClient{}
	var gotChat int64
	gotMessage := -1
	orders := takeRecorder{take: func(chatID int64, messageID int) { gotChat, gotMessage = chatID, messageID }}
	h := New(Options{Client: c, Orders: orders})
	u := models.Update{ID: 3, CallbackQuery: &models.CallbackQuery{ID: "q", Data: "t:o1", From: models.User{ID: 42},
		Message: models.MaybeInaccessibleMessage{Type: models.MaybeInaccessibleMessageTypeInaccessibleMessage,
			InaccessibleMessage: &models.InaccessibleMessage{Chat: models.Chat{ID: -100}, MessageID: 10}}}}
	raw, _ := json.Marshal(u)
	if err := h.handle(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if gotChat != -100 || gotMessage != 0 {
		t.Errorf("Take in chat %d with message %d, want chat -100 and message 0", gotChat, gotMessage)
	}
}

type takeRecorder struct {
	fakeOrders
	take func(chatID int64, messageID int)
}

func (r takeRecorder) Take(_ context.Context, chatID int64, messageID int, _ string, _ dispatch.Executor) (flow.PressResult, error) {
	r.take(chatID, messageID)
	return flow.PressResult{Outcome: flow.Won}, nil
}

// /my in the private chat asks the flow for the user's open orders; in a
// group it is not a command of this bot.
func TestMyCommand(t *testing.T) {
	var asked []int64
	h := New(Options{Client: &fakeClient{}, Chats: fakeChats{}, Orders: fakeOrders{t: t, mine: func(id int64) error {
		asked = append(asked, id)
		return nil
	}}})
	if err := h.handle(context.Background(), message(42, models.ChatTypePrivate, "/my")); err != nil {
		t.Fatal(err)
	}
	if err := h.handle(context.Background(), message(-100, models.ChatTypeSupergroup, "/my")); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 {
		t.Errorf("/my asked the flow %d times, want once (private only)", len(asked))
	}
}

// fakeInbox hands out its updates once and records how they were finished.
type fakeInbox struct {
	Inbox
	mu       sync.Mutex
	ups      []Update
	finished [][]int64 // FinishUpdates calls
	failed   []int64   // FinishUpdate calls
}

func (i *fakeInbox) ClaimUpdates(context.Context, string, int, time.Duration) ([]Update, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	ups := i.ups
	i.ups = nil
	return ups, nil
}

func (i *fakeInbox) FinishUpdates(_ context.Context, ids []int64, _ string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.finished = append(i.finished, ids)
	return nil
}

func (i *fakeInbox) FinishUpdate(_ context.Context, id int64, _ string, _ error, _ time.Duration) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failed = append(i.failed, id)
	return nil
}

type lockedClient struct {
	fakeClient
	mu sync.Mutex
}

func (c *lockedClient) AnswerCallback(ctx context.Context, id, text, url string, alert bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fakeClient.AnswerCallback(ctx, id, text, url, alert)
}

// A storm of presses: the presses of a claimed batch are handled at once (a
// press is not answered after the others' round trips), and the batch is
// marked processed with one statement.
func TestPressBatchHandledAtOnce(t *testing.T) {
	inbox := &fakeInbox{}
	for i := range claimBatch {
		inbox.ups = append(inbox.ups, Update{ID: int64(i + 1), Payload: press("t:order", "t:order")})
	}
	var arrived sync.WaitGroup
	arrived.Add(claimBatch)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	client := &lockedClient{}
	b := New(Options{Client: client, Inbox: inbox, Chats: fakeChats{}, Orders: fakeOrders{t: t, take: func(string) (flow.PressResult, error) {
		arrived.Done()
		select {
		case <-all: // every press of the batch is being handled
		case <-time.After(5 * time.Second):
			return flow.PressResult{}, errors.New("the presses were handled one after another")
		}
		return flow.PressResult{Outcome: flow.AlreadyTaken}, nil
	}}})
	b.processBatch(context.Background())
	if len(inbox.failed) > 0 {
		t.Fatalf("%d presses failed: handled one after another", len(inbox.failed))
	}
	if len(inbox.finished) != 1 || len(inbox.finished[0]) != claimBatch {
		t.Fatalf("finished as %v, want one statement for the batch of %d", inbox.finished, claimBatch)
	}
	if len(client.answers) != claimBatch {
		t.Fatalf("%d answers, want %d", len(client.answers), claimBatch)
	}
}
