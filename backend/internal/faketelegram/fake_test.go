package faketelegram_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

const (
	token       = "123456789:AAE-fake-token"
	botUsername = "amo_dispatch_bot"
)

func newFake(t *testing.T, opts ...faketelegram.Option) *faketelegram.Server {
	t.Helper()
	s := faketelegram.New(token, botUsername, opts...)
	t.Cleanup(s.Close)
	return s
}

func newClient(t *testing.T, s *faketelegram.Server, opts ...bot.Option) *bot.Bot {
	t.Helper()
	b, err := bot.New(token, append([]bot.Option{bot.WithServerURL(s.URL), bot.WithSkipGetMe()}, opts...)...)
	if err != nil {
		t.Fatalf("bot.New: %v", err)
	}
	return b
}

type apiResponse struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  map[string]any  `json:"parameters"`
}

// call sends params encoded as "json", "form" (urlencoded) or "multipart"; non-string
// values in form encodings are JSON-serialised, as the Bot API expects.
func call(t *testing.T, base, tok, method, encoding string, params map[string]any) (int, apiResponse) {
	t.Helper()
	var (
		body io.Reader
		ct   string
	)
	formValue := func(v any) string {
		if s, ok := v.(string); ok {
			return s
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	switch encoding {
	case "json":
		b, _ := json.Marshal(params)
		body, ct = bytes.NewReader(b), "application/json"
	case "form":
		vals := url.Values{}
		for k, v := range params {
			vals.Set(k, formValue(v))
		}
		body, ct = strings.NewReader(vals.Encode()), "application/x-www-form-urlencoded"
	case "multipart":
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for k, v := range params {
			_ = w.WriteField(k, formValue(v))
		}
		_ = w.Close()
		body, ct = &buf, w.FormDataContentType()
	default:
		t.Fatalf("unknown encoding %q", encoding)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/bot"+tok+"/"+method, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	var r apiResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("%s: decode: %v", method, err)
	}
	if r.OK != (resp.StatusCode == http.StatusOK) || (!r.OK && r.ErrorCode != resp.StatusCode) {
		t.Fatalf("%s: HTTP %d does not match body %+v", method, resp.StatusCode, r)
	}
	return resp.StatusCode, r
}

func api(t *testing.T, s *faketelegram.Server, method string, params map[string]any) apiResponse {
	t.Helper()
	_, r := call(t, s.URL, token, method, "json", params)
	return r
}

func mustOK(t *testing.T, r apiResponse) apiResponse {
	t.Helper()
	if !r.OK {
		t.Fatalf("want ok, got %d %q", r.ErrorCode, r.Description)
	}
	return r
}

func wantErr(t *testing.T, r apiResponse, code int, desc string) {
	t.Helper()
	if r.OK || r.ErrorCode != code || r.Description != desc {
		t.Fatalf("got ok=%v %d %q, want %d %q", r.OK, r.ErrorCode, r.Description, code, desc)
	}
}

func waitFor(t *testing.T, s *faketelegram.Server, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func keyboard(data ...string) map[string]any {
	var row []any
	for _, d := range data {
		row = append(row, map[string]any{"text": "btn " + d, "callback_data": d})
	}
	return map[string]any{"inline_keyboard": []any{row}}
}

// startedUser returns a user who pressed Start, with the /start update already consumed.
func startedUser(t *testing.T, s *faketelegram.Server) faketelegram.User {
	t.Helper()
	u := s.AddUser("Ivan", "Petrov", "ivan")
	s.UserStartsBot(u.ID, "")
	drain(t, s)
	return u
}

// drain confirms every pending update and returns them.
func drain(t *testing.T, s *faketelegram.Server) []map[string]any {
	t.Helper()
	r := mustOK(t, api(t, s, "getUpdates", map[string]any{}))
	var ups []map[string]any
	if err := json.Unmarshal(r.Result, &ups); err != nil {
		t.Fatal(err)
	}
	if len(ups) > 0 {
		last := ups[len(ups)-1]["update_id"].(float64)
		mustOK(t, api(t, s, "getUpdates", map[string]any{"offset": int64(last) + 1}))
	}
	return ups
}

func TestRoutingAndAuth(t *testing.T) {
	s := newFake(t)
	code, r := call(t, s.URL, "999:wrong", "getMe", "json", nil)
	if code != 401 || r.Description != "Unauthorized" || r.ErrorCode != 401 {
		t.Fatalf("wrong token: %d %+v", code, r)
	}
	code, r = call(t, s.URL, token, "sendCarrierPigeon", "json", nil)
	if code != 404 || r.Description != "Not Found" {
		t.Fatalf("unknown method: %d %+v", code, r)
	}
	_, r = call(t, s.URL, token, "GETME", "form", nil)
	var me map[string]any
	_ = json.Unmarshal(mustOK(t, r).Result, &me)
	if me["id"] != float64(123456789) || me["is_bot"] != true || me["username"] != botUsername {
		t.Fatalf("getMe = %v", me)
	}
	// The unauthorized getMe is recorded too, under the name it was asked for.
	if got := s.Calls("getme"); len(got) != 2 || got[0].Status != 401 || got[1].Method != "getMe" || !got[1].OK {
		t.Fatalf("recorded getMe calls = %+v", got)
	}
	if got := s.AllCalls(); len(got) != 3 || got[0].Status != 401 || got[1].Status != 404 {
		t.Fatalf("all calls = %+v", got)
	}
}

// The same request in all three encodings must record the same parameters.
func TestParamsAreNormalisedAcrossEncodings(t *testing.T) {
	s := newFake(t)
	u := startedUser(t, s)
	params := map[string]any{"chat_id": u.ID, "text": "hi", "disable_notification": true, "reply_markup": keyboard("a")}
	for _, enc := range []string{"json", "form", "multipart"} {
		_, r := call(t, s.URL, token, "sendMessage", enc, params)
		mustOK(t, r)
	}
	calls := s.Calls("sendMessage")
	if len(calls) != 3 {
		t.Fatalf("got %d calls", len(calls))
	}
	want := map[string]any{"chat_id": u.ID, "text": "hi", "disable_notification": true,
		"reply_markup": map[string]any{"inline_keyboard": []any{[]any{map[string]any{"text": "btn a", "callback_data": "a"}}}}}
	for i, c := range calls {
		if !reflect.DeepEqual(c.Params, want) {
			t.Errorf("call %d params = %#v", i, c.Params)
		}
		if id, ok := c.Int("chat_id"); !ok || id != u.ID || c.String("text") != "hi" {
			t.Errorf("call %d accessors: %d %v %q", i, id, ok, c.String("text"))
		}
	}
}

// The real client sends multipart/form-data with reply_markup as a JSON string.
func TestRealClientMultipartFlow(t *testing.T) {
	s := newFake(t)
	ctx := context.Background()
	b := newClient(t, s)
	u := s.AddUser("Анна", "", "anna")

	_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: u.ID, Text: "hi"})
	if !errors.Is(err, bot.ErrorForbidden) || !strings.Contains(err.Error(), "bot can't initiate conversation with a user") {
		t.Fatalf("before /start: %v", err)
	}
	s.UserStartsBot(u.ID, "deal_42")

	kb := models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{
		{Text: "Взять", CallbackData: "take:42"}, {Text: "Открыть", URL: "https://example.amocrm.ru/leads/detail/42"},
	}}}
	msg, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: u.ID, Text: "<b>Сделка</b> №42 &amp; co",
		ParseMode: models.ParseModeHTML, ReplyMarkup: kb})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	if msg.Text != "Сделка №42 & co" || len(msg.Entities) != 1 || msg.Entities[0].Type != models.MessageEntityTypeBold ||
		msg.Chat.ID != u.ID || msg.From == nil || !msg.From.IsBot {
		t.Fatalf("returned message = %+v", msg)
	}
	if msg.ReplyMarkup == nil || len(msg.ReplyMarkup.InlineKeyboard[0]) != 2 {
		t.Fatalf("returned markup = %+v", msg.ReplyMarkup)
	}
	rec := s.Calls("sendMessage")[1]
	if _, isMap := rec.Params["reply_markup"].(map[string]any); !isMap {
		t.Fatalf("reply_markup recorded as %T, want decoded JSON", rec.Params["reply_markup"])
	}

	qid, err := s.PressButton(u.ID, msg.ID, u.ID, "take:42")
	if err != nil {
		t.Fatal(err)
	}
	edited, err := b.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: u.ID, MessageID: msg.ID,
		Text: "Взята вами", ReplyMarkup: models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{}}})
	if err != nil {
		t.Fatalf("EditMessageText: %v", err)
	}
	if edited.Text != "Взята вами" || edited.EditDate == 0 || edited.ReplyMarkup != nil {
		t.Fatalf("edited = %+v", edited)
	}
	ok, err := b.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: qid, Text: "Готово", ShowAlert: true})
	if err != nil || !ok {
		t.Fatalf("AnswerCallbackQuery: %v %v", ok, err)
	}
	_, err = b.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: qid})
	if !errors.Is(err, bot.ErrorBadRequest) || !strings.Contains(err.Error(), "query is too old and response timeout expired or query ID is invalid") {
		t.Fatalf("second answer: %v", err)
	}
	if got := s.CallbackAnswers(qid); len(got) != 1 || got[0].Text != "Готово" || !got[0].ShowAlert {
		t.Fatalf("answers = %+v", got)
	}

	stored, _ := s.Message(u.ID, msg.ID)
	if stored.Text != "Взята вами" || stored.ReplyMarkup != nil || len(stored.History) != 1 ||
		stored.History[0].RawText != "<b>Сделка</b> №42 &amp; co" || stored.History[0].ParseMode != "HTML" {
		t.Fatalf("stored = %+v", stored)
	}
}

// Updates produced by the fake must decode with the real client's models.
func TestRealClientReceivesUpdates(t *testing.T) {
	s := newFake(t)
	var (
		mu  sync.Mutex
		got []*models.Update
	)
	b := newClient(t, s, bot.WithDefaultHandler(func(_ context.Context, _ *bot.Bot, u *models.Update) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, u)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	u := s.AddUser("Oleg", "", "")
	s.UserStartsBot(u.ID, "inv_abc")
	g := s.NewGroup("Исполнители")
	s.AddBotToGroup(g.ID, u.ID, "link_7")
	m, err := b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: g.ID, Text: "deal", ReplyMarkup: models.InlineKeyboardMarkup{
		InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "take", CallbackData: "t1"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PressButton(g.ID, m.ID, u.ID, "t1"); err != nil {
		t.Fatal(err)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitFor(t, s, "5 updates", func() bool { return count() == 5 })

	mu.Lock()
	defer mu.Unlock()
	// The client runs handlers concurrently; the wire order is the update_id order.
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	if m := got[0].Message; m == nil || m.Text != "/start inv_abc" || m.Chat.Type != models.ChatTypePrivate ||
		len(m.Entities) != 1 || m.Entities[0].Type != models.MessageEntityTypeBotCommand || m.Entities[0].Length != 6 {
		t.Fatalf("update 0 = %+v", got[0].Message)
	}
	if mc := got[1].MyChatMember; mc == nil || mc.Chat.ID != g.ID || mc.From.ID != u.ID ||
		mc.OldChatMember.Type != models.ChatMemberTypeLeft || mc.NewChatMember.Type != models.ChatMemberTypeMember ||
		mc.NewChatMember.Member.User.ID != s.Bot().ID {
		t.Fatalf("update 1 = %+v", got[1].MyChatMember)
	}
	if m := got[2].Message; m == nil || len(m.NewChatMembers) != 1 || m.NewChatMembers[0].ID != s.Bot().ID {
		t.Fatalf("update 2 = %+v", got[2].Message)
	}
	if m := got[3].Message; m == nil || m.Text != "/start@"+botUsername+" link_7" || m.Chat.Type != models.ChatTypeGroup ||
		m.Entities[0].Length != len("/start@"+botUsername) {
		t.Fatalf("update 3 = %+v", got[3].Message)
	}
	cq := got[4].CallbackQuery
	if cq == nil || cq.Data != "t1" || cq.From.ID != u.ID || cq.ChatInstance == "" || cq.Message.Message == nil ||
		cq.Message.Message.ID != m.ID || cq.Message.Message.Chat.ID != g.ID {
		t.Fatalf("update 4 = %+v", cq)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID != got[i-1].ID+1 {
			t.Fatalf("update ids not consecutive: %d then %d", got[i-1].ID, got[i].ID)
		}
	}
}

func TestSendMessageValidation(t *testing.T) {
	s := newFake(t)
	u := startedUser(t, s)
	longButton := strings.Repeat("ж", 33) // 66 bytes, 33 characters
	tests := []struct {
		name   string
		params map[string]any
		desc   string // "" = success
	}{
		{"plain", map[string]any{"text": "hello"}, ""},
		{"missing text", map[string]any{}, "Bad Request: message text is empty"},
		{"whitespace text", map[string]any{"text": " \n "}, "Bad Request: message text is empty"},
		{"only tags", map[string]any{"text": "<b> </b>", "parse_mode": "HTML"}, "Bad Request: message text is empty"},
		{"4096 chars", map[string]any{"text": strings.Repeat("a", 4096)}, ""},
		{"4097 chars", map[string]any{"text": strings.Repeat("a", 4097)}, "Bad Request: message is too long"},
		{"4096 visible chars plus tags", map[string]any{"text": "<b>" + strings.Repeat("a", 4096) + "</b>", "parse_mode": "HTML"}, ""},
		{"escapes count once", map[string]any{"text": strings.Repeat("&amp;", 4096), "parse_mode": "HTML"}, ""},
		{"2048 emoji are 4096 UTF-16 units", map[string]any{"text": strings.Repeat("😀", 2048)}, ""},
		{"2049 emoji", map[string]any{"text": strings.Repeat("😀", 2049)}, "Bad Request: message is too long"},
		{"4096 cyrillic", map[string]any{"text": strings.Repeat("ж", 4096)}, ""},
		{"html ok", map[string]any{"text": `<b>a</b> <i>b</i> <a href="https://x.y/?q=1&amp;r=2">c</a> <pre><code class="language-go">d</code></pre>`, "parse_mode": "HTML"}, ""},
		{"html parse mode is case-insensitive", map[string]any{"text": "<b>a</b>", "parse_mode": "html"}, ""},
		{"html unsupported tag", map[string]any{"text": "Deal <foo> here", "parse_mode": "HTML"},
			`Bad Request: can't parse entities: Unsupported start tag "foo" at byte offset 5`},
		{"html unclosed", map[string]any{"text": "<b>bold", "parse_mode": "HTML"},
			`Bad Request: can't parse entities: Can't find end tag corresponding to start tag "b"`},
		{"html raw less-than", map[string]any{"text": "1 < 2", "parse_mode": "HTML"},
			`Bad Request: can't parse entities: Unsupported start tag "" at byte offset 2`},
		{"html bare ampersand", map[string]any{"text": "A & B", "parse_mode": "HTML"},
			"Bad Request: can't parse entities: Unsupported HTML entity at byte offset 2; escape '&' as &amp;"},
		{"raw markup is fine without parse_mode", map[string]any{"text": "1 < 2 & <foo>"}, ""},
		{"unknown parse_mode", map[string]any{"text": "x", "parse_mode": "BBCode"}, "Bad Request: unsupported parse_mode"},
		{"callback_data 64 bytes", map[string]any{"text": "x", "reply_markup": keyboard(strings.Repeat("ж", 32))}, ""},
		{"callback_data 65+ bytes", map[string]any{"text": "x", "reply_markup": keyboard(longButton)}, "Bad Request: BUTTON_DATA_INVALID"},
		{"callback_data empty", map[string]any{"text": "x", "reply_markup": map[string]any{"inline_keyboard": [][]map[string]any{{{"text": "a", "callback_data": ""}}}}},
			"Bad Request: BUTTON_DATA_INVALID"},
		{"url button", map[string]any{"text": "x", "reply_markup": map[string]any{"inline_keyboard": [][]map[string]any{{{"text": "a", "url": "https://t.me/x"}}}}}, ""},
		{"bad url", map[string]any{"text": "x", "reply_markup": map[string]any{"inline_keyboard": [][]map[string]any{{{"text": "a", "url": "not a url"}}}}},
			"Bad Request: BUTTON_URL_INVALID"},
		{"ftp url", map[string]any{"text": "x", "reply_markup": map[string]any{"inline_keyboard": [][]map[string]any{{{"text": "a", "url": "ftp://x.y/"}}}}},
			"Bad Request: BUTTON_URL_INVALID"},
		{"button without action", map[string]any{"text": "x", "reply_markup": map[string]any{"inline_keyboard": [][]map[string]any{{{"text": "a"}}}}},
			"Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"},
		{"button without text", map[string]any{"text": "x", "reply_markup": map[string]any{"inline_keyboard": [][]map[string]any{{{"callback_data": "a"}}}}},
			`Bad Request: can't parse inline keyboard button: Field "text" must be of type String`},
		{"markup not JSON", map[string]any{"text": "x", "reply_markup": "{nope"}, "Bad Request: can't parse reply keyboard markup JSON object"},
		{"reply keyboard accepted", map[string]any{"text": "x", "reply_markup": map[string]any{"keyboard": [][]map[string]any{{{"text": "a"}}}}}, ""},
		{"unknown chat", map[string]any{"chat_id": 42, "text": "x"}, "Bad Request: chat not found"},
		{"missing chat", map[string]any{"chat_id": "", "text": "x"}, "Bad Request: chat_id is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := map[string]any{"chat_id": u.ID}
			for k, v := range tt.params {
				p[k] = v
			}
			for _, enc := range []string{"json", "multipart"} {
				_, r := call(t, s.URL, token, "sendMessage", enc, p)
				if tt.desc == "" {
					mustOK(t, r)
				} else {
					wantErr(t, r, 400, tt.desc)
				}
			}
		})
	}
}

// go-telegram/bot serialises copy_text on every button; the fake must accept that like
// the real server does (first action field wins), and still check callback_data length.
func TestRealClientButtonsWithCopyText(t *testing.T) {
	s := newFake(t)
	u := startedUser(t, s)
	b := newClient(t, s)
	_, err := b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: u.ID, Text: "x",
		ReplyMarkup: models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "a", CallbackData: strings.Repeat("x", 65)}}}}})
	if !errors.Is(err, bot.ErrorBadRequest) || !strings.Contains(err.Error(), "BUTTON_DATA_INVALID") {
		t.Fatalf("65-byte callback_data: %v", err)
	}
	_, err = b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: u.ID, Text: "x",
		ReplyMarkup: models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "a", CallbackData: "ok"}}}}})
	if err != nil {
		t.Fatalf("valid button from the real client: %v", err)
	}
	markup := s.Calls("sendMessage")[1].Params["reply_markup"].(map[string]any)
	button := markup["inline_keyboard"].([]any)[0].([]any)[0].(map[string]any)
	if _, ok := button["copy_text"]; !ok {
		t.Logf("note: this go-telegram/bot version no longer sends copy_text: %v", button)
	}
}

func TestPrivateChatAccess(t *testing.T) {
	s := newFake(t)
	send := func(id int64) apiResponse {
		return api(t, s, "sendMessage", map[string]any{"chat_id": id, "text": "x"})
	}

	fresh := s.AddUser("A", "", "")
	wantErr(t, send(fresh.ID), 403, "Forbidden: bot can't initiate conversation with a user")
	s.UserStartsBot(fresh.ID, "")
	mustOK(t, send(fresh.ID))

	s.BlockBot(fresh.ID)
	wantErr(t, send(fresh.ID), 403, "Forbidden: bot was blocked by the user")
	s.UserStartsBot(fresh.ID, "") // Restart unblocks
	mustOK(t, send(fresh.ID))

	s.DeactivateUser(fresh.ID)
	wantErr(t, send(fresh.ID), 403, "Forbidden: user is deactivated")

	talker := s.AddUser("B", "", "")
	s.SendPrivateMessage(talker.ID, "hello?")
	mustOK(t, send(talker.ID))

	ups := drain(t, s)
	var kinds []string
	for _, u := range ups {
		for k := range u {
			if k != "update_id" {
				kinds = append(kinds, k)
			}
		}
	}
	want := []string{"message", "my_chat_member", "my_chat_member", "message", "message"}
	if !reflect.DeepEqual(kinds, want) {
		t.Fatalf("update kinds = %v, want %v", kinds, want)
	}
	block := ups[1]["my_chat_member"].(map[string]any)["new_chat_member"].(map[string]any)
	if block["status"] != "kicked" || block["until_date"] != float64(0) {
		t.Fatalf("block update = %v", block)
	}
	msgs := s.Messages(fresh.ID)
	if len(msgs) != 4 || msgs[0].MessageID != 1 || msgs[3].MessageID != 4 {
		t.Fatalf("message ids per chat = %+v", msgs)
	}
}

func TestGroupMembership(t *testing.T) {
	s := newFake(t)
	owner := s.AddUser("Owner", "", "owner")
	send := func(id int64) apiResponse {
		return api(t, s, "sendMessage", map[string]any{"chat_id": id, "text": "x"})
	}

	g := s.NewGroup("Basic")
	if g.ID >= 0 || g.Type != faketelegram.ChatGroup {
		t.Fatalf("group = %+v", g)
	}
	wantErr(t, send(g.ID), 400, "Bad Request: chat not found")
	s.AddBotToGroup(g.ID, owner.ID, "")
	mustOK(t, send(g.ID))
	s.RemoveBotFromGroup(g.ID, owner.ID)
	wantErr(t, send(g.ID), 403, "Forbidden: bot was kicked from the group chat")

	sg := s.NewSupergroup("Super")
	if !strings.HasPrefix(fmt.Sprint(sg.ID), "-100") || sg.Type != faketelegram.ChatSupergroup {
		t.Fatalf("supergroup = %+v", sg)
	}
	s.AddBotToGroup(sg.ID, owner.ID, "")
	mustOK(t, send(sg.ID))
	s.RemoveBotFromGroup(sg.ID, owner.ID)
	wantErr(t, send(sg.ID), 403, "Forbidden: bot was kicked from the supergroup chat")

	g2 := s.NewSupergroup("Left")
	s.AddBotToGroup(g2.ID, owner.ID, "")
	mustOK(t, api(t, s, "leaveChat", map[string]any{"chat_id": g2.ID}))
	wantErr(t, send(g2.ID), 403, "Forbidden: bot is not a member of the supergroup chat")

	ups := drain(t, s)
	var statuses []string
	for _, u := range ups {
		if mc, ok := u["my_chat_member"].(map[string]any); ok {
			statuses = append(statuses, mc["new_chat_member"].(map[string]any)["status"].(string))
		}
	}
	if want := []string{"member", "left", "member", "kicked", "member", "left"}; !reflect.DeepEqual(statuses, want) {
		t.Fatalf("my_chat_member statuses = %v, want %v", statuses, want)
	}
}

func TestGroupPrivacyMode(t *testing.T) {
	s := newFake(t)
	u := s.AddUser("U", "", "")
	g := s.NewGroup("G")
	s.AddBotToGroup(g.ID, u.ID, "")
	drain(t, s)

	s.SendGroupMessage(g.ID, u.ID, "just chatting")
	s.SendGroupMessage(g.ID, u.ID, "/help@other_bot")
	cmd := s.SendGroupMessage(g.ID, u.ID, "/orders@"+botUsername+" today")
	bare := s.SendGroupMessage(g.ID, u.ID, "/orders")
	ups := drain(t, s)
	if len(ups) != 2 {
		t.Fatalf("privacy mode delivered %d updates, want 2: %v", len(ups), ups)
	}
	if len(cmd.Entities) != 1 || cmd.Entities[0].Length != len("/orders@"+botUsername) || bare.Entities[0].Length != 7 {
		t.Fatalf("command entities = %+v %+v", cmd.Entities, bare.Entities)
	}
	s.SetPrivacyMode(false)
	s.SendGroupMessage(g.ID, u.ID, "just chatting")
	if ups := drain(t, s); len(ups) != 1 {
		t.Fatalf("privacy off delivered %d updates, want 1", len(ups))
	}
	if len(s.Messages(g.ID)) != 6 {
		t.Fatalf("all group messages are stored, got %d", len(s.Messages(g.ID)))
	}
}

func TestMigrationToSupergroup(t *testing.T) {
	s := newFake(t)
	u := s.AddUser("U", "", "")
	g := s.NewGroup("Dispatch")
	s.AddBotToGroup(g.ID, u.ID, "")
	drain(t, s)

	newID := s.MigrateToSupergroup(g.ID)
	if !strings.HasPrefix(fmt.Sprint(newID), "-100") {
		t.Fatalf("new id %d", newID)
	}
	b := newClient(t, s)
	_, err := b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: g.ID, Text: "x"})
	var me *bot.MigrateError
	if !errors.As(err, &me) || int64(me.MigrateToChatID) != newID || !strings.Contains(me.Message, "group chat was upgraded to a supergroup chat") {
		t.Fatalf("send to old group: %v", err)
	}
	r := api(t, s, "sendMessage", map[string]any{"chat_id": g.ID, "text": "x"})
	wantErr(t, r, 400, "Bad Request: group chat was upgraded to a supergroup chat")
	if r.Parameters["migrate_to_chat_id"] != float64(newID) {
		t.Fatalf("parameters = %v", r.Parameters)
	}
	if _, err := b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: newID, Text: "x"}); err != nil {
		t.Fatalf("send to supergroup: %v", err)
	}

	ups := drain(t, s)
	if len(ups) != 2 {
		t.Fatalf("got %d updates", len(ups))
	}
	to := ups[0]["message"].(map[string]any)
	from := ups[1]["message"].(map[string]any)
	if to["migrate_to_chat_id"] != float64(newID) || to["chat"].(map[string]any)["id"] != float64(g.ID) {
		t.Fatalf("old-group message = %v", to)
	}
	if from["migrate_from_chat_id"] != float64(g.ID) || from["chat"].(map[string]any)["type"] != "supergroup" ||
		from["sender_chat"].(map[string]any)["id"] != float64(newID) || from["from"].(map[string]any)["username"] != "GroupAnonymousBot" {
		t.Fatalf("supergroup message = %v", from)
	}
}

func TestFailNextTooManyRequests(t *testing.T) {
	s := newFake(t)
	u := startedUser(t, s)
	s.FailNext("sendMessage", 2, 429, "Too Many Requests: retry after 5", 5)
	b := newClient(t, s)

	_, err := b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: u.ID, Text: "x"})
	var tm *bot.TooManyRequestsError
	if !errors.As(err, &tm) || tm.RetryAfter != 5 {
		t.Fatalf("first send: %v", err)
	}
	r := api(t, s, "sendMessage", map[string]any{"chat_id": u.ID, "text": "x"})
	wantErr(t, r, 429, "Too Many Requests: retry after 5")
	if r.Parameters["retry_after"] != float64(5) {
		t.Fatalf("parameters = %v", r.Parameters)
	}
	mustOK(t, api(t, s, "sendMessage", map[string]any{"chat_id": u.ID, "text": "x"}))
	if n := len(s.Messages(u.ID)); n != 2 { // /start + the one success
		t.Fatalf("failed sends must not create messages; have %d", n)
	}
	mustOK(t, api(t, s, "getMe", nil)) // other methods unaffected
}

func TestSetDown(t *testing.T) {
	s := newFake(t)
	u := startedUser(t, s)
	s.SetDown(true)
	wantErr(t, api(t, s, "getMe", nil), 502, "Bad Gateway")
	wantErr(t, api(t, s, "sendMessage", map[string]any{"chat_id": u.ID, "text": "x"}), 502, "Bad Gateway")
	s.SetDown(false)
	mustOK(t, api(t, s, "sendMessage", map[string]any{"chat_id": u.ID, "text": "x"}))
	if n := len(s.Messages(u.ID)); n != 2 { // /start + the one success
		t.Fatalf("a send while down created a message; have %d", n)
	}
}

func TestHangNextStillExecutes(t *testing.T) {
	s := newFake(t)
	u := startedUser(t, s)
	s.HangNext("sendMessage", 1, 300*time.Millisecond)
	b := newClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: u.ID, Text: "slow"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want client timeout, got %v", err)
	}
	waitFor(t, s, "the timed-out send to land", func() bool { return len(s.Messages(u.ID)) == 2 })
	if _, err := b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: u.ID, Text: "fast"}); err != nil {
		t.Fatal(err)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestFloodControl(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s := newFake(t, faketelegram.WithClock(clock.Now))
	u := startedUser(t, s)
	owner := s.AddUser("O", "", "")
	g := s.NewGroup("G")
	s.AddBotToGroup(g.ID, owner.ID, "")
	send := func(id int64) apiResponse {
		return api(t, s, "sendMessage", map[string]any{"chat_id": id, "text": "x"})
	}

	for range 3 {
		mustOK(t, send(u.ID)) // off by default
	}
	s.EnableFloodControl(faketelegram.DefaultFloodLimits())
	mustOK(t, send(u.ID))
	r := send(u.ID)
	wantErr(t, r, 429, "Too Many Requests: retry after 1")
	if r.Parameters["retry_after"] != float64(1) {
		t.Fatalf("parameters = %v", r.Parameters)
	}
	clock.Advance(time.Second)
	mustOK(t, send(u.ID))

	for i := range 20 {
		clock.Advance(time.Second)
		if r := send(g.ID); !r.OK {
			t.Fatalf("group message %d: %s", i, r.Description)
		}
	}
	r = send(g.ID)
	// The oldest of the 20 went out 19 s ago, so the window frees up in 41 s.
	wantErr(t, r, 429, "Too Many Requests: retry after 41")
	clock.Advance(41 * time.Second)
	mustOK(t, send(g.ID))

	s.EnableFloodControl(faketelegram.FloodLimits{PrivateInterval: time.Nanosecond, GroupPerMinute: 1000, GlobalPerSecond: 3})
	users := []faketelegram.User{startedUser(t, s), startedUser(t, s), startedUser(t, s), startedUser(t, s)}
	for _, x := range users[:3] {
		mustOK(t, send(x.ID))
	}
	wantErr(t, send(users[3].ID), 429, "Too Many Requests: retry after 1")

	s.DisableFloodControl()
	mustOK(t, send(users[3].ID))
}

// A group allows a short burst over one message a second; a 429 holds its
// scope (the chat, or all chats for the overall rate) for retry_after, and
// a send into a held scope is refused again and counted.
func TestFloodBurstAndScopedRetryAfter(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s := newFake(t, faketelegram.WithClock(clock.Now))
	owner := s.AddUser("O", "", "")
	g, h := s.NewGroup("G"), s.NewGroup("H")
	s.AddBotToGroup(g.ID, owner.ID, "")
	s.AddBotToGroup(h.ID, owner.ID, "")
	send := func(id int64) apiResponse {
		return api(t, s, "sendMessage", map[string]any{"chat_id": id, "text": "x"})
	}
	s.EnableFloodControl(faketelegram.DefaultFloodLimits())
	for range 3 {
		mustOK(t, send(g.ID)) // a burst of three at once
	}
	wantErr(t, send(g.ID), 429, "Too Many Requests: retry after 3")
	mustOK(t, send(h.ID)) // another chat is not held
	clock.Advance(2 * time.Second)
	wantErr(t, send(g.ID), 429, "Too Many Requests: retry after 1") // still held
	if n := s.SentDuringRetryAfter(); n != 1 {
		t.Fatalf("SentDuringRetryAfter = %d, want 1", n)
	}
	clock.Advance(time.Second)
	mustOK(t, send(g.ID))

	s.EnableFloodControl(faketelegram.FloodLimits{PrivateInterval: time.Nanosecond, GroupPerMinute: 1000, GlobalPerSecond: 2})
	mustOK(t, send(g.ID))
	mustOK(t, send(h.ID))
	wantErr(t, send(g.ID), 429, "Too Many Requests: retry after 1")
	clock.Advance(500 * time.Millisecond)
	// The overall rate's 429 holds every chat, though h's own window is free.
	wantErr(t, send(h.ID), 429, "Too Many Requests: retry after 1")
	if n := s.SentDuringRetryAfter(); n != 1 {
		t.Fatalf("SentDuringRetryAfter = %d after re-enabling, want 1", n)
	}
	clock.Advance(500 * time.Millisecond)
	mustOK(t, send(h.ID))
}

func TestGetUpdatesOffsetSemantics(t *testing.T) {
	s := newFake(t)
	users := []faketelegram.User{s.AddUser("A", "", ""), s.AddUser("B", "", ""), s.AddUser("C", "", "")}
	for _, u := range users {
		s.UserStartsBot(u.ID, "")
	}
	ids := func(r apiResponse) []int64 {
		var ups []struct {
			UpdateID int64 `json:"update_id"`
		}
		_ = json.Unmarshal(mustOK(t, r).Result, &ups)
		out := []int64{}
		for _, u := range ups {
			out = append(out, u.UpdateID)
		}
		return out
	}
	all := ids(api(t, s, "getUpdates", map[string]any{}))
	if len(all) != 3 {
		t.Fatalf("got %v", all)
	}
	if got := ids(api(t, s, "getUpdates", map[string]any{})); !reflect.DeepEqual(got, all) {
		t.Fatalf("without offset nothing is confirmed: %v", got)
	}
	if got := ids(api(t, s, "getUpdates", map[string]any{"limit": 1})); !reflect.DeepEqual(got, all[:1]) {
		t.Fatalf("limit 1: %v", got)
	}
	if got := ids(api(t, s, "getUpdates", map[string]any{"offset": all[1]})); !reflect.DeepEqual(got, all[1:]) {
		t.Fatalf("offset confirms earlier updates: %v", got)
	}
	if got := ids(api(t, s, "getUpdates", map[string]any{})); !reflect.DeepEqual(got, all[1:]) {
		t.Fatalf("confirmed update came back: %v", got)
	}
	if got := ids(api(t, s, "getUpdates", map[string]any{"offset": -1})); !reflect.DeepEqual(got, all[2:]) {
		t.Fatalf("negative offset keeps the tail: %v", got)
	}
	if got := ids(api(t, s, "getUpdates", map[string]any{"offset": all[2] + 1})); len(got) != 0 {
		t.Fatalf("all confirmed: %v", got)
	}
	if len(s.PendingUpdates()) != 0 || len(s.Updates()) != 3 {
		t.Fatalf("pending %d, history %d", len(s.PendingUpdates()), len(s.Updates()))
	}

	// allowed_updates filters updates created afterwards.
	mustOK(t, api(t, s, "getUpdates", map[string]any{"allowed_updates": []string{"callback_query"}}))
	s.SendPrivateMessage(users[0].ID, "ignored")
	if n := len(s.PendingUpdates()); n != 0 {
		t.Fatalf("message not in allowed_updates was queued (%d)", n)
	}
}

func TestGetUpdatesLongPoll(t *testing.T) {
	s := newFake(t)
	start := time.Now()
	r := api(t, s, "getUpdates", map[string]any{"timeout": 1})
	if string(mustOK(t, r).Result) != "[]" || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("empty long poll returned %s after %v", r.Result, time.Since(start))
	}

	u := s.AddUser("A", "", "")
	type result struct {
		r       apiResponse
		elapsed time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		_, r := call(t, s.URL, token, "getUpdates", "form", map[string]any{"timeout": "30"})
		done <- result{r, time.Since(start)}
	}()
	waitFor(t, s, "the poll to wait", s.PollWaiting)
	s.UserStartsBot(u.ID, "")
	res := <-done
	var ups []map[string]any
	_ = json.Unmarshal(mustOK(t, res.r).Result, &ups)
	if len(ups) != 1 || res.elapsed > 10*time.Second {
		t.Fatalf("long poll returned %v after %v", ups, res.elapsed)
	}
}

func TestGetUpdatesConflicts(t *testing.T) {
	s := newFake(t)
	older := make(chan apiResponse, 1)
	go func() {
		_, r := call(t, s.URL, token, "getUpdates", "json", map[string]any{"timeout": 30})
		older <- r
	}()
	waitFor(t, s, "the first poll to wait", s.PollWaiting)
	newer := make(chan apiResponse, 1)
	go func() {
		_, r := call(t, s.URL, token, "getUpdates", "json", map[string]any{"timeout": 30})
		newer <- r
	}()
	wantErr(t, <-older, 409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running")
	u := s.AddUser("A", "", "")
	s.UserStartsBot(u.ID, "")
	if r := mustOK(t, <-newer); !strings.Contains(string(r.Result), "/start") {
		t.Fatalf("newer poll got %s", r.Result)
	}

	mustOK(t, api(t, s, "setWebhook", map[string]any{"url": "https://example.com/hook"}))
	wantErr(t, api(t, s, "getUpdates", nil), 409,
		"Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first")
	r := mustOK(t, api(t, s, "deleteWebhook", nil))
	if r.Description != "Webhook was deleted" {
		t.Fatalf("deleteWebhook description %q", r.Description)
	}
	mustOK(t, api(t, s, "getUpdates", nil))
}

func TestWebhookDelivery(t *testing.T) {
	s := newFake(t, faketelegram.WithWebhookRetryInterval(20*time.Millisecond))
	var (
		mu       sync.Mutex
		received []int64
		secrets  []string
		failures atomic.Int32
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var u struct {
			UpdateID int64 `json:"update_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&u)
		mu.Lock()
		received = append(received, u.UpdateID)
		secrets = append(secrets, r.Header.Get("X-Telegram-Bot-Api-Secret-Token"))
		mu.Unlock()
		if r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		if failures.Add(1) <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer hook.Close()

	wantErr(t, api(t, s, "setWebhook", map[string]any{"url": hook.URL, "secret_token": "bad secret!"}), 400,
		"Bad Request: secret token contains unallowed characters")
	wantErr(t, api(t, s, "setWebhook", map[string]any{"url": hook.URL, "secret_token": strings.Repeat("a", 257)}), 400,
		"Bad Request: secret token is too long")
	wantErr(t, api(t, s, "setWebhook", map[string]any{"url": "ftp://x"}), 400,
		"Bad Request: bad webhook: An HTTPS URL must be provided for webhook")

	a, b := s.AddUser("A", "", ""), s.AddUser("B", "", "")
	s.UserStartsBot(a.ID, "")
	s.UserStartsBot(b.ID, "")
	_, r := call(t, s.URL, token, "setWebhook", "multipart", map[string]any{"url": hook.URL, "secret_token": "s3cr3t_-X"})
	if mustOK(t, r).Description != "Webhook was set" {
		t.Fatalf("description %q", r.Description)
	}
	waitFor(t, s, "both updates delivered", func() bool { return len(s.PendingUpdates()) == 0 })

	ups := s.Updates()
	var first, second struct {
		UpdateID int64 `json:"update_id"`
	}
	_ = json.Unmarshal(ups[0], &first)
	_ = json.Unmarshal(ups[1], &second)
	mu.Lock()
	if want := []int64{first.UpdateID, first.UpdateID, first.UpdateID, second.UpdateID}; !reflect.DeepEqual(received, want) {
		t.Fatalf("received %v, want %v (retries keep order)", received, want)
	}
	for _, sec := range secrets {
		if sec != "s3cr3t_-X" {
			t.Fatalf("secret header %q", sec)
		}
	}
	mu.Unlock()
	var statuses []int
	for _, d := range s.WebhookDeliveries() {
		statuses = append(statuses, d.Status)
	}
	if !reflect.DeepEqual(statuses, []int{500, 500, 200, 200}) {
		t.Fatalf("delivery statuses %v", statuses)
	}
	var info map[string]any
	_ = json.Unmarshal(mustOK(t, api(t, s, "getWebhookInfo", nil)).Result, &info)
	if info["url"] != hook.URL || info["pending_update_count"] != float64(0) ||
		info["last_error_message"] != "Wrong response from the webhook: 500 Internal Server Error" {
		t.Fatalf("webhook info %v", info)
	}
	if r := mustOK(t, api(t, s, "setWebhook", map[string]any{"url": hook.URL, "secret_token": "s3cr3t_-X"})); r.Description != "Webhook is already set" {
		t.Fatalf("repeat setWebhook: %q", r.Description)
	}

	// New updates after the queue drained are delivered too.
	s.SendPrivateMessage(a.ID, "later")
	waitFor(t, s, "the later update", func() bool { return len(s.WebhookDeliveries()) == 5 })
	if !s.WebhookDeliveries()[4].Delivered() {
		t.Fatalf("later delivery %+v", s.WebhookDeliveries()[4])
	}

	mustOK(t, api(t, s, "deleteWebhook", map[string]any{}))
	s.SendPrivateMessage(a.ID, "polled")
	if len(s.PendingUpdates()) != 1 {
		t.Fatal("after deleteWebhook the update must wait for getUpdates")
	}
	_ = json.Unmarshal(mustOK(t, api(t, s, "getWebhookInfo", nil)).Result, &info)
	if info["url"] != "" || info["pending_update_count"] != float64(1) {
		t.Fatalf("webhook info after delete %v", info)
	}
}

func TestEditAndDelete(t *testing.T) {
	s := newFake(t)
	u := startedUser(t, s)
	sent := mustOK(t, api(t, s, "sendMessage", map[string]any{"chat_id": u.ID, "text": "<b>A</b>", "parse_mode": "HTML", "reply_markup": keyboard("x")}))
	var m struct {
		MessageID int `json:"message_id"`
	}
	_ = json.Unmarshal(sent.Result, &m)
	edit := func(p map[string]any) apiResponse {
		p["chat_id"], p["message_id"] = u.ID, m.MessageID
		return api(t, s, "editMessageText", p)
	}
	notModified := "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"

	wantErr(t, edit(map[string]any{"text": "<b>A</b>", "parse_mode": "HTML", "reply_markup": keyboard("x")}), 400, notModified)
	// Same visible text and entities spelled differently is still not a modification.
	wantErr(t, edit(map[string]any{"text": "<strong>A</strong> ", "parse_mode": "HTML", "reply_markup": keyboard("x")}), 400, notModified)
	mustOK(t, edit(map[string]any{"text": "A", "reply_markup": keyboard("x")})) // entities differ
	mustOK(t, edit(map[string]any{"text": "A"}))                                // dropping the keyboard is a change
	wantErr(t, edit(map[string]any{"text": "A"}), 400, notModified)
	wantErr(t, api(t, s, "editMessageReplyMarkup", map[string]any{"chat_id": u.ID, "message_id": m.MessageID}), 400, notModified)
	mustOK(t, api(t, s, "editMessageReplyMarkup", map[string]any{"chat_id": u.ID, "message_id": m.MessageID, "reply_markup": keyboard("y")}))
	wantErr(t, api(t, s, "editMessageText", map[string]any{"chat_id": u.ID, "message_id": 999, "text": "x"}), 400, "Bad Request: message to edit not found")
	wantErr(t, api(t, s, "editMessageText", map[string]any{"chat_id": u.ID, "message_id": 1, "text": "x"}), 400, "Bad Request: message can't be edited")

	got, _ := s.Message(u.ID, m.MessageID)
	if len(got.History) != 3 || got.History[0].Text != "A" || len(got.History[0].Entities) != 1 || got.EditDate == 0 ||
		got.InlineKeyboard()[0][0].CallbackData != "y" {
		t.Fatalf("message state %+v", got)
	}

	wantErr(t, api(t, s, "deleteMessage", map[string]any{"chat_id": u.ID, "message_id": 999}), 400, "Bad Request: message to delete not found")
	mustOK(t, api(t, s, "deleteMessage", map[string]any{"chat_id": u.ID, "message_id": m.MessageID}))
	wantErr(t, api(t, s, "deleteMessage", map[string]any{"chat_id": u.ID, "message_id": m.MessageID}), 400, "Bad Request: message to delete not found")
	wantErr(t, edit(map[string]any{"text": "B"}), 400, "Bad Request: message to edit not found")
	if got, _ := s.Message(u.ID, m.MessageID); !got.Deleted {
		t.Fatal("message not marked deleted")
	}
	if _, err := s.PressButton(u.ID, m.MessageID, u.ID, "y"); err == nil {
		t.Fatal("pressing a button on a deleted message must fail")
	}

	// In groups a plain member may delete only its own messages.
	g := s.NewGroup("G")
	s.AddBotToGroup(g.ID, u.ID, "")
	theirs := s.SendGroupMessage(g.ID, u.ID, "/x")
	wantErr(t, api(t, s, "deleteMessage", map[string]any{"chat_id": g.ID, "message_id": theirs.MessageID}), 400, "Bad Request: message can't be deleted")
	s.PromoteBot(g.ID, u.ID)
	mustOK(t, api(t, s, "deleteMessage", map[string]any{"chat_id": g.ID, "message_id": theirs.MessageID}))

	gm := mustOK(t, api(t, s, "sendMessage", map[string]any{"chat_id": g.ID, "text": "order"}))
	_ = json.Unmarshal(gm.Result, &m)
	s.AdminDeletesMessage(g.ID, m.MessageID)
	wantErr(t, api(t, s, "editMessageReplyMarkup", map[string]any{"chat_id": g.ID, "message_id": m.MessageID, "reply_markup": keyboard("z")}),
		400, "Bad Request: message to edit not found")
}

func TestAnswerCallbackQueryRules(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s := newFake(t, faketelegram.WithClock(clock.Now))
	u := startedUser(t, s)
	sent := mustOK(t, api(t, s, "sendMessage", map[string]any{"chat_id": u.ID, "text": "x", "reply_markup": keyboard("a", "b")}))
	var m struct {
		MessageID int `json:"message_id"`
	}
	_ = json.Unmarshal(sent.Result, &m)
	press := func() string {
		id, err := s.PressButton(u.ID, m.MessageID, u.ID, "a")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	answer := func(p map[string]any) apiResponse { return api(t, s, "answerCallbackQuery", p) }
	invalid := "Bad Request: query is too old and response timeout expired or query ID is invalid"

	if _, err := s.PressButton(u.ID, m.MessageID, u.ID, "nope"); err == nil {
		t.Fatal("pressing a button the keyboard lacks must fail")
	}
	if _, err := s.PressButton(u.ID, m.MessageID, s.AddUser("X", "", "").ID, "a"); err == nil {
		t.Fatal("another user cannot press buttons in this private chat")
	}

	wantErr(t, answer(map[string]any{"callback_query_id": "12345"}), 400, invalid)

	old := press()
	clock.Advance(16 * time.Second)
	wantErr(t, answer(map[string]any{"callback_query_id": old}), 400, invalid)

	s.SetCallbackMaxAge(time.Minute)
	q := press()
	wantErr(t, answer(map[string]any{"callback_query_id": q, "text": strings.Repeat("я", 201)}), 400, "Bad Request: MESSAGE_TOO_LONG")
	wantErr(t, answer(map[string]any{"callback_query_id": q, "url": "https://example.com"}), 400, "Bad Request: URL_INVALID")
	wantErr(t, answer(map[string]any{"callback_query_id": q, "url": "https://t.me/other_bot?start=x"}), 400, "Bad Request: URL_INVALID")
	mustOK(t, answer(map[string]any{"callback_query_id": q, "text": strings.Repeat("я", 200), "url": "t.me/" + botUsername + "?start=deal_1"}))
	wantErr(t, answer(map[string]any{"callback_query_id": q}), 400, invalid)

	all := s.AllCallbackAnswers()
	if len(all) != 1 || all[0].QueryID != q || all[0].URL != "t.me/"+botUsername+"?start=deal_1" || !all[0].Time.Equal(clock.Now()) {
		t.Fatalf("answers %+v", all)
	}
}

// Many users pressing at once, each press answered by the real client, some twice.
func TestConcurrentPressesAndAnswers(t *testing.T) {
	s := newFake(t, faketelegram.WithCallbackMaxAge(time.Minute))
	owner := s.AddUser("Owner", "", "")
	g := s.NewSupergroup("Executors")
	s.AddBotToGroup(g.ID, owner.ID, "")
	s.SetPrivacyMode(false)
	b := newClient(t, s)
	m, err := b.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: g.ID, Text: "Deal 1",
		ReplyMarkup: models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "Take", CallbackData: "take:1"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	users := make([]faketelegram.User, n)
	for i := range users {
		users[i] = s.AddUser(fmt.Sprint("u", i), "", "")
	}
	var (
		wg       sync.WaitGroup
		accepted atomic.Int32
		rejected atomic.Int32
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qid, err := s.PressButton(g.ID, m.ID, users[i].ID, "take:1")
			if err != nil {
				t.Error(err)
				return
			}
			// Two answers race for the same query: exactly one may win.
			var inner sync.WaitGroup
			for range 2 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					_, err := b.AnswerCallbackQuery(context.Background(), &bot.AnswerCallbackQueryParams{CallbackQueryID: qid, Text: "ok"})
					if err == nil {
						accepted.Add(1)
					} else if errors.Is(err, bot.ErrorBadRequest) {
						rejected.Add(1)
					} else {
						t.Error(err)
					}
				}()
			}
			inner.Wait()
			if len(s.CallbackAnswers(qid)) != 1 {
				t.Errorf("query %s has %d answers", qid, len(s.CallbackAnswers(qid)))
			}
			_ = s.Messages(g.ID)
		}()
	}
	wg.Wait()
	if accepted.Load() != n || rejected.Load() != n || len(s.AllCallbackAnswers()) != n {
		t.Fatalf("accepted %d rejected %d answers %d", accepted.Load(), rejected.Load(), len(s.AllCallbackAnswers()))
	}
	if got := len(s.Calls("answerCallbackQuery")); got != 2*n {
		t.Fatalf("recorded %d answer calls", got)
	}
	callbacks := 0
	for _, raw := range s.PendingUpdates() {
		if bytes.Contains(raw, []byte(`"callback_query"`)) {
			callbacks++
		}
	}
	if callbacks != n {
		t.Fatalf("%d callback updates queued", callbacks)
	}
}

func TestGetChatAndMember(t *testing.T) {
	s := newFake(t)
	u := s.AddUser("Ivan", "Petrov", "ivan")
	g := s.NewGroup("Team")
	s.AddBotToGroup(g.ID, u.ID, "")
	b := newClient(t, s)
	ctx := context.Background()

	chat, err := b.GetChat(ctx, &bot.GetChatParams{ChatID: g.ID})
	if err != nil || chat.ID != g.ID || chat.Title != "Team" || chat.Type != models.ChatTypeGroup {
		t.Fatalf("getChat group: %+v %v", chat, err)
	}
	chat, err = b.GetChat(ctx, &bot.GetChatParams{ChatID: u.ID})
	if err != nil || chat.Type != models.ChatTypePrivate || chat.FirstName != "Ivan" {
		t.Fatalf("getChat private: %+v %v", chat, err)
	}
	member, err := b.GetChatMember(ctx, &bot.GetChatMemberParams{ChatID: g.ID, UserID: u.ID})
	if err != nil || member.Type != models.ChatMemberTypeOwner {
		t.Fatalf("getChatMember owner: %+v %v", member, err)
	}
	member, err = b.GetChatMember(ctx, &bot.GetChatMemberParams{ChatID: g.ID, UserID: s.Bot().ID})
	if err != nil || member.Type != models.ChatMemberTypeMember {
		t.Fatalf("getChatMember bot: %+v %v", member, err)
	}
	s.PromoteBot(g.ID, u.ID)
	member, err = b.GetChatMember(ctx, &bot.GetChatMemberParams{ChatID: g.ID, UserID: s.Bot().ID})
	if err != nil || member.Type != models.ChatMemberTypeAdministrator || !member.Administrator.CanDeleteMessages {
		t.Fatalf("getChatMember admin bot: %+v %v", member, err)
	}
	stranger := s.AddUser("S", "", "")
	member, err = b.GetChatMember(ctx, &bot.GetChatMemberParams{ChatID: g.ID, UserID: stranger.ID})
	if err != nil || member.Type != models.ChatMemberTypeLeft {
		t.Fatalf("getChatMember stranger: %+v %v", member, err)
	}
	wantErr(t, api(t, s, "getChat", map[string]any{"chat_id": -1}), 400, "Bad Request: chat not found")
}

func TestInjectUpdate(t *testing.T) {
	s := newFake(t)
	id, err := s.InjectUpdate(json.RawMessage(`{"update_id":1,"edited_message":{"message_id":5,"date":1,"chat":{"id":1,"type":"private"},"text":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	ups := drain(t, s)
	if len(ups) != 1 || ups[0]["update_id"] != float64(id) || ups[0]["edited_message"] == nil {
		t.Fatalf("updates %v (id %d)", ups, id)
	}
	if _, err := s.InjectUpdate(json.RawMessage(`[1]`)); err == nil {
		t.Fatal("non-object update accepted")
	}
}

// A callback query carries the pressed message with its current keyboard, as
// Telegram delivers it; a modified client may send any data on a message it
// sees; a message the bot cannot access arrives as an InaccessibleMessage.
func TestCallbackQueryMessages(t *testing.T) {
	s := newFake(t)
	u := startedUser(t, s)
	g := s.NewGroup("Исполнители")
	s.AddBotToGroup(g.ID, u.ID, "")
	drain(t, s)
	sent := mustOK(t, api(t, s, "sendMessage", map[string]any{"chat_id": g.ID, "text": "deal", "reply_markup": keyboard("p:1", "t:1")}))
	var m struct {
		MessageID int `json:"message_id"`
	}
	_ = json.Unmarshal(sent.Result, &m)

	if _, err := s.PressButton(g.ID, m.MessageID, u.ID, "t:2"); err == nil {
		t.Fatal("an honest press needs the button")
	}
	if _, err := s.ForgePress(g.ID, m.MessageID, u.ID, strings.Repeat("x", 65)); err == nil {
		t.Fatal("callback_data is at most 64 bytes")
	}
	for _, press := range []func() (string, error){
		func() (string, error) { return s.PressButton(g.ID, m.MessageID, u.ID, "t:1") },
		func() (string, error) { return s.ForgePress(g.ID, m.MessageID, u.ID, "t:2") },
		func() (string, error) { return s.PressInaccessible(g.ID, m.MessageID, u.ID, "t:1") },
	} {
		if _, err := press(); err != nil {
			t.Fatal(err)
		}
	}
	var got []models.Update
	for _, raw := range s.Updates()[len(s.Updates())-3:] {
		var up models.Update
		if err := json.Unmarshal(raw, &up); err != nil {
			t.Fatal(err)
		}
		got = append(got, up)
	}
	honest, forged, gone := got[0].CallbackQuery, got[1].CallbackQuery, got[2].CallbackQuery
	for i, q := range []*models.CallbackQuery{honest, forged} {
		msg := q.Message.Message
		if msg == nil || msg.ID != m.MessageID || msg.ReplyMarkup == nil || len(msg.ReplyMarkup.InlineKeyboard[0]) != 2 ||
			msg.ReplyMarkup.InlineKeyboard[0][1].CallbackData != "t:1" {
			t.Fatalf("query %d message = %+v", i, msg)
		}
	}
	if forged.Data != "t:2" {
		t.Fatalf("forged data = %q", forged.Data)
	}
	if im := gone.Message.InaccessibleMessage; gone.Message.Message != nil || im == nil || im.MessageID != m.MessageID ||
		im.Chat.ID != g.ID || im.Date != 0 {
		t.Fatalf("inaccessible query message = %+v", gone.Message)
	}
	if strings.Contains(string(s.Updates()[len(s.Updates())-1]), "reply_markup") {
		t.Fatal("an inaccessible message carries no keyboard")
	}
}

// sendChatAction meets the same 403s as sendMessage to a private chat.
func TestSendChatActionAccess(t *testing.T) {
	s := newFake(t)
	act := func(id int64, action string) apiResponse {
		return api(t, s, "sendChatAction", map[string]any{"chat_id": id, "action": action})
	}
	fresh := s.AddUser("A", "", "")
	wantErr(t, act(fresh.ID, "typing"), 403, "Forbidden: bot can't initiate conversation with a user")
	s.UserStartsBot(fresh.ID, "")
	mustOK(t, act(fresh.ID, "typing"))
	wantErr(t, act(fresh.ID, "dancing"), 400, "Bad Request: wrong parameter action in request")
	s.BlockBot(fresh.ID)
	wantErr(t, act(fresh.ID, "typing"), 403, "Forbidden: bot was blocked by the user")
	s.UserStartsBot(fresh.ID, "")
	s.DeactivateUser(fresh.ID)
	wantErr(t, act(fresh.ID, "typing"), 403, "Forbidden: user is deactivated")
	wantErr(t, act(42, "typing"), 400, "Bad Request: chat not found")

	ok, err := newClient(t, s).SendChatAction(context.Background(), &bot.SendChatActionParams{ChatID: fresh.ID, Action: models.ChatActionTyping})
	if ok || !errors.Is(err, bot.ErrorForbidden) {
		t.Fatalf("real client: %v %v", ok, err)
	}
	if n := len(s.Messages(fresh.ID)); n != 2 { // the two /start messages
		t.Fatalf("chat actions must store no message, chat has %d", n)
	}
}
