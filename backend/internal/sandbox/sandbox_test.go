package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/app"
	"github.com/amodispatch/amodispatch/backend/internal/config"
	"github.com/amodispatch/amodispatch/backend/internal/sandbox"
	"github.com/amodispatch/amodispatch/backend/internal/testkit"
)

// startSandbox runs a sandbox (backend on SQLite in a temporary folder) on
// a free port; the backend's log is shown if the test fails.
func startSandbox(t testing.TB) *sandbox.Sandbox {
	t.Helper()
	logs := &testkit.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("backend logs:\n%s", logs.String())
		}
	})
	start := func(ctx context.Context, cfg config.Config, log *slog.Logger) (sandbox.Backend, error) {
		a, err := app.Start(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		return a, nil
	}
	sb, err := sandbox.Start(context.Background(), sandbox.Options{Addr: "127.0.0.1:0", LogLevel: "debug",
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Start: start})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := sb.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return sb
}

// The page's JSON as the tests read it.
type (
	state struct {
		Stages []struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"stages"`
		Deals []struct {
			ID       int64  `json:"id"`
			Name     string `json:"name"`
			StageID  int64  `json:"stage_id"`
			Contact  string `json:"contact"`
			Executor string `json:"executor"`
		} `json:"deals"`
		Group     chat `json:"group"`
		Executors []struct {
			ID        int64  `json:"id"`
			Name      string `json:"name"`
			OpenedBot bool   `json:"opened_bot"`
			Chat      chat   `json:"chat"`
		} `json:"executors"`
		Deal *struct {
			ID          int64  `json:"id"`
			Stage       string `json:"stage"`
			Responsible string `json:"responsible"`
			Fields      []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"fields"`
			Notes []struct {
				Text string `json:"text"`
			} `json:"notes"`
			Order *struct {
				Status string `json:"status"`
			} `json:"order"`
		} `json:"deal"`
	}
	chat struct {
		ID       int64     `json:"id"`
		Messages []message `json:"messages"`
	}
	message struct {
		ID      int    `json:"id"`
		Bot     bool   `json:"bot"`
		HTML    string `json:"html"`
		Edited  bool   `json:"edited"`
		Buttons [][]struct {
			Text string `json:"text"`
			Data string `json:"data"`
		} `json:"buttons"`
	}
)

func getState(t testing.TB, sb *sandbox.Sandbox, lead int64) state {
	t.Helper()
	path := "sandbox/state"
	if lead != 0 {
		path += "?lead=" + itoa(lead)
	}
	status, body := request(t, http.MethodGet, sb.URL()+path, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /%s: HTTP %d: %s", path, status, body)
	}
	var st state
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("state: %v: %s", err, body)
	}
	return st
}

func request(t testing.TB, method, url string, in any) (int, []byte) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

type pressAnswer struct {
	Answer    string `json:"answer"`
	OpenedBot bool   `json:"opened_bot"`
}

func press(t testing.TB, sb *sandbox.Sandbox, chatID int64, messageID int, userID int64, data string) pressAnswer {
	t.Helper()
	status, body := request(t, http.MethodPost, sb.URL()+"sandbox/press",
		map[string]any{"chat_id": chatID, "message_id": messageID, "user_id": userID, "data": data})
	if status != http.StatusOK {
		t.Fatalf("press %q: HTTP %d: %s", data, status, body)
	}
	var a pressAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buttonData finds the callback data of the button whose text contains label.
func buttonData(c chat, messageID int, label string) string {
	for _, m := range c.Messages {
		if m.ID != messageID {
			continue
		}
		for _, row := range m.Buttons {
			for _, b := range row {
				if strings.Contains(b.Text, label) {
					return b.Data
				}
			}
		}
	}
	return ""
}

// The page's JSON follows a deal from the board to the group, a phone
// request (one executor has the bot open, one has to open it first), the
// take and the write-back into amoCRM; the doors refuse what no user can do.
func TestSandboxEndpoints(t *testing.T) {
	sb := startSandbox(t)
	st := getState(t, sb, 0)

	names := []string{}
	for _, s := range st.Stages {
		names = append(names, s.Name)
	}
	if want := []string{"Новая", "Поиск исполнителя", "Исполнитель найден", "В работе"}; !slices.Equal(names, want) {
		t.Fatalf("stages %q, want %q", names, want)
	}
	if len(st.Deals) != 3 {
		t.Fatalf("%d deals on the board, want 3", len(st.Deals))
	}
	for _, d := range st.Deals {
		if d.StageID != st.Stages[0].ID || d.Contact == "" || d.Executor != "" {
			t.Fatalf("a new deal: %+v", d)
		}
	}
	linked := slices.ContainsFunc(st.Group.Messages, func(m message) bool {
		return m.Bot && strings.Contains(m.HTML, "подключён")
	})
	if !linked {
		t.Fatalf("the group shows no link confirmation from the bot: %+v", st.Group.Messages)
	}
	if len(st.Executors) != 3 || !st.Executors[0].OpenedBot || !st.Executors[1].OpenedBot || st.Executors[2].OpenedBot {
		t.Fatalf("executors: %+v", st.Executors)
	}
	ivan, alexey, olga := st.Executors[0], st.Executors[1], st.Executors[2]
	lead := st.Deals[0]
	search, found := st.Stages[1].ID, st.Stages[2].ID

	// The doors refuse what nobody on the page can do.
	if status, _ := request(t, http.MethodPost, sb.URL()+"sandbox/move", map[string]any{"lead_id": lead.ID, "stage_id": 1}); status != http.StatusBadRequest {
		t.Fatalf("move to a stage of no pipeline: HTTP %d", status)
	}
	if status, _ := request(t, http.MethodPost, sb.URL()+"sandbox/press",
		map[string]any{"chat_id": st.Group.ID, "message_id": 1, "user_id": 42, "data": "t:x"}); status != http.StatusBadRequest {
		t.Fatalf("press by a stranger: HTTP %d", status)
	}
	if status, _ := request(t, http.MethodPost, sb.URL()+"sandbox/press",
		map[string]any{"chat_id": alexey.ID, "message_id": 1, "user_id": ivan.ID, "data": "t:x"}); status != http.StatusBadRequest {
		t.Fatalf("press in another executor's private chat: HTTP %d", status)
	}

	// Another site's page can only send simple requests, which are refused.
	resp, err := http.Post(sb.URL()+"sandbox/move", "text/plain", strings.NewReader(`{"lead_id":1,"stage_id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("a text/plain move: HTTP %d", resp.StatusCode)
	}

	// The manager moves the deal: amoCRM's webhook, the backend's job, the post.
	if status, body := request(t, http.MethodPost, sb.URL()+"sandbox/move", map[string]any{"lead_id": lead.ID, "stage_id": search}); status != http.StatusOK {
		t.Fatalf("move: HTTP %d: %s", status, body)
	}
	var post int
	eventually(t, "the order posted in the group", func() bool {
		st = getState(t, sb, lead.ID)
		for _, m := range st.Group.Messages {
			if m.Bot && buttonData(st.Group, m.ID, "Забрать заказ") != "" {
				post = m.ID
			}
		}
		return post != 0
	})
	msg := st.Group.Messages[slices.IndexFunc(st.Group.Messages, func(m message) bool {
		return m.ID == post
	})]
	if !strings.Contains(msg.HTML, "<b>") || !strings.Contains(msg.HTML, lead.Name) || strings.Contains(msg.HTML, "123-45-67") {
		t.Fatalf("group post (bold title, deal name, no phone): %s", msg.HTML)
	}
	if st.Deal == nil || st.Deal.Stage != "Поиск исполнителя" {
		t.Fatalf("selected deal: %+v", st.Deal)
	}
	eventually(t, "the widget API reports the order open", func() bool {
		st = getState(t, sb, lead.ID)
		return st.Deal.Order != nil && st.Deal.Order.Status == "open"
	})
	phone := buttonData(st.Group, post, "Получить номер")
	take := buttonData(st.Group, post, "Забрать заказ")

	// Ivan has the bot open: the phone arrives in his private chat.
	if a := press(t, sb, st.Group.ID, post, ivan.ID, phone); a.Answer == "" || a.OpenedBot {
		t.Fatalf("Ivan's phone answer: %+v", a)
	}
	privateHas := func(i int, s string) bool {
		for _, m := range getState(t, sb, 0).Executors[i].Chat.Messages {
			if m.Bot && strings.Contains(m.HTML, s) {
				return true
			}
		}
		return false
	}
	eventually(t, "the phone in Ivan's private chat", func() bool { return privateHas(0, "+7 916 123-45-67") })
	// Olga never opened the bot: the answer links to it, the page follows
	// the link as her, and the phone arrives after her /start.
	if a := press(t, sb, st.Group.ID, post, olga.ID, phone); a.Answer == "" || !a.OpenedBot {
		t.Fatalf("Olga's phone answer: %+v", a)
	}
	eventually(t, "the phone in Olga's private chat", func() bool { return privateHas(2, "+7 916 123-45-67") })
	for _, m := range getState(t, sb, 0).Group.Messages {
		if strings.Contains(m.HTML, "916") {
			t.Fatalf("the phone leaked into the group: %s", m.HTML)
		}
	}

	// Ivan takes the order; Alexey is too late.
	if a := press(t, sb, st.Group.ID, post, ivan.ID, take); a.Answer == "" {
		t.Fatalf("Ivan's take answer: %+v", a)
	}
	eventually(t, "the deal written back (stage, executor, note)", func() bool {
		st = getState(t, sb, lead.ID)
		return st.Deal.Stage == "Исполнитель найден" && len(st.Deal.Notes) > 0 && st.Deals[0].Executor != ""
	})
	if st.Deals[0].StageID != found || !strings.Contains(st.Deals[0].Executor, "Иван Петров") {
		t.Fatalf("board card after the take: %+v", st.Deals[0])
	}
	if !strings.Contains(st.Deal.Notes[0].Text, "Иван Петров") || st.Deal.Responsible != "Иван Петров (курьер)" {
		t.Fatalf("deal after the take: notes %+v, responsible %q", st.Deal.Notes, st.Deal.Responsible)
	}
	eventually(t, "the group post edited to name the executor", func() bool {
		for _, m := range getState(t, sb, 0).Group.Messages {
			if m.ID == post {
				return m.Edited && strings.Contains(m.HTML, "Иван Петров") && len(m.Buttons) == 0
			}
		}
		return false
	})
	if a, err := pressExpectingError(sb, st.Group.ID, post, alexey.ID, take); err == nil {
		t.Fatalf("Alexey pressed a button the edited post no longer has: %+v", a)
	}
}

// pressExpectingError presses and returns an error when the page refuses.
func pressExpectingError(sb *sandbox.Sandbox, chatID int64, messageID int, userID int64, data string) (string, error) {
	b, _ := json.Marshal(map[string]any{"chat_id": chatID, "message_id": messageID, "user_id": userID, "data": data})
	resp, err := http.Post(sb.URL()+"sandbox/press", "application/json", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", &httpError{resp.StatusCode, string(raw)}
	}
	return string(raw), nil
}

type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return itoa(int64(e.status)) + ": " + e.body }

// The page's other doors: the widget's files with config.js pointing at the
// sandbox, a fresh token per call, the API proxy presenting the account's
// amoCRM origin, the deal card stand-in, and the captured install page.
func TestSandboxWidgetDoors(t *testing.T) {
	sb := startSandbox(t)
	base := strings.TrimSuffix(sb.URL(), "/")
	lead := getState(t, sb, 0).Deals[0].ID

	status, cfg := request(t, http.MethodGet, base+"/widget/config.js", nil)
	if status != http.StatusOK || !strings.Contains(string(cfg), base) || strings.Contains(string(cfg), "{{BACKEND_URL}}") {
		t.Fatalf("config.js: HTTP %d: %s", status, cfg)
	}
	if status, body := request(t, http.MethodGet, base+"/widget/script.js", nil); status != http.StatusOK || !bytes.Contains(body, []byte("define(")) {
		t.Fatalf("script.js: HTTP %d", status)
	}
	_, t1 := request(t, http.MethodGet, base+"/__token", nil)
	_, t2 := request(t, http.MethodGet, base+"/__token", nil)
	if !regexp.MustCompile(`^[\w-]+\.[\w-]+\.[\w-]+$`).Match(t1) || bytes.Equal(t1, t2) {
		t.Fatalf("tokens %q and %q: want two different JWTs", t1, t2)
	}
	// The browser's Origin is the sandbox; the backend sees the account's.
	req, _ := http.NewRequest(http.MethodGet, base+"/api/widget/deals/"+itoa(lead), nil)
	req.Header.Set("Origin", base)
	req.Header.Set("X-Auth-Token", string(t1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://bystrye-ruki.amocrm.ru" {
		t.Fatalf("proxied deal: HTTP %d, ACAO %q: %s", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), body)
	}
	// Without a token the backend refuses, through the proxy as directly.
	if status, _ := request(t, http.MethodGet, base+"/api/widget/state", nil); status != http.StatusUnauthorized {
		t.Fatalf("state without a token: HTTP %d", status)
	}
	if status, page := request(t, http.MethodGet, base+"/card?lead="+itoa(lead), nil); status != http.StatusOK ||
		!bytes.Contains(page, []byte(`"area":"lcard"`)) || !bytes.Contains(page, []byte("/vendor/amocrm.js")) {
		t.Fatalf("card page: HTTP %d: %s", status, page)
	}
	if status, _ := request(t, http.MethodGet, base+"/card?lead=1", nil); status != http.StatusNotFound {
		t.Fatalf("card of no deal: HTTP %d", status)
	}
	for _, f := range []string{"require.js", "jquery.min.js", "amocrm.js"} {
		if status, _ := request(t, http.MethodGet, base+"/vendor/"+f, nil); status != http.StatusOK {
			t.Fatalf("vendor %s: HTTP %d", f, status)
		}
	}
	if status, page := request(t, http.MethodGet, base+"/sandbox/install", nil); status != http.StatusOK ||
		!bytes.Contains(page, []byte("?startgroup=")) {
		t.Fatalf("install page: HTTP %d: %s", status, page)
	}
	if status, page := request(t, http.MethodGet, base+"/", nil); status != http.StatusOK || !bytes.Contains(page, []byte("/static/app.js")) {
		t.Fatalf("index: HTTP %d", status)
	}
}

// Start refuses, before starting anything, a data folder that already holds
// a database and a widget folder that is not one.
func TestSandboxRefusals(t *testing.T) {
	noBackend := func(context.Context, config.Config, *slog.Logger) (sandbox.Backend, error) {
		t.Fatal("the backend was started")
		return nil, nil
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dispatcher.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sandbox.Start(context.Background(), sandbox.Options{Addr: "127.0.0.1:0", DataDir: dir, Start: noBackend})
	if err == nil || !strings.Contains(err.Error(), "already holds a database") {
		t.Fatalf("reused data folder: %v", err)
	}
	_, err = sandbox.Start(context.Background(), sandbox.Options{Addr: "127.0.0.1:0", WidgetDir: t.TempDir(), Start: noBackend})
	if err == nil || !strings.Contains(err.Error(), "not the widget folder") {
		t.Fatalf("empty widget folder: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
