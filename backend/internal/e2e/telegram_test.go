package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
)

func TestTelegramWebhookMode(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		acc, _ := addAccounts(e)
		b := e.start(telegramWebhookMode)
		code := install(t, e, b, acc.ID)
		ctx := context.Background()

		eventually(t, "setWebhook", func() bool { return len(e.tg.Calls("setWebhook")) > 0 })
		call := e.tg.Calls("setWebhook")[0]
		secret := call.String("secret_token")
		if call.String("url") != b.URL+"/telegram/webhook" || len(secret) < 32 {
			t.Fatalf("setWebhook params: %v", call.Params)
		}
		if len(e.tg.Calls("getUpdates")) != 0 {
			t.Fatal("webhook mode must not poll")
		}

		update := `{"update_id":900000001,"message":{"message_id":1,"date":1700000000,"chat":{"id":4242,"type":"private","first_name":"Anna"},"from":{"id":4242,"is_bot":false,"first_name":"Anna","username":"anna_x","language_code":"en"},"text":"/start","entities":[{"type":"bot_command","offset":0,"length":6}]}}`
		for _, tc := range []struct {
			name, secret, body string
			want               int
		}{
			{"no secret", "", update, 401},
			{"wrong secret", strings.Repeat("x", len(secret)), update, 401},
			{"not JSON", secret, "{oops", 400},
			{"no update_id", secret, `{"message":{}}`, 400},
		} {
			var headers []string
			if tc.secret != "" {
				headers = []string{"X-Telegram-Bot-Api-Secret-Token", tc.secret}
			}
			if s, body := post(t, b.URL+"/telegram/webhook", "application/json", tc.body, headers...); s != tc.want {
				t.Errorf("%s: HTTP %d (%s), want %d", tc.name, s, body, tc.want)
			}
		}
		if n, _ := b.Store().MaxUpdateID(ctx); n != 0 {
			t.Fatalf("rejected updates were stored (max id %d)", n)
		}

		// The same update delivered twice is processed once.
		for i := 0; i < 2; i++ {
			if s, _ := post(t, b.URL+"/telegram/webhook", "application/json", update, "X-Telegram-Bot-Api-Secret-Token", secret); s != 200 {
				t.Fatalf("genuine update: %d", s)
			}
		}
		eventually(t, "executor registered", func() bool { x, err := b.Store().Executor(ctx, 4242); return err == nil && x.Started })
		eventually(t, "update processed", func() bool { n, _ := b.Store().PendingUpdates(ctx); return n == 0 })
		greetings := 0
		for _, c := range e.tg.Calls("sendMessage") {
			if c.String("chat_id") == "4242" {
				greetings++
			}
		}
		if greetings != 1 {
			t.Fatalf("duplicate update produced %d greetings", greetings)
		}

		// Updates pushed by Telegram itself (with the secret) link a chat.
		boss := e.tg.AddUser("Boss", "", "boss")
		group := e.tg.NewGroup("Webhook group")
		e.tg.AddBotToGroup(group.ID, boss.ID, code)
		eventually(t, "chat linked via webhook", func() bool { c, err := b.Store().Chat(ctx, group.ID); return err == nil && c.Active })
		for _, d := range e.tg.WebhookDeliveries() {
			if !d.Delivered() {
				t.Fatalf("a delivery was refused: %+v", d)
			}
		}
	})
}

func TestPolledUpdatesSurviveARestart(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		acc, _ := addAccounts(e)
		b1 := e.start()
		code := install(t, e, b1, acc.ID)
		ctx := context.Background()
		shutdown(t, b1)

		// While no backend runs, Telegram keeps the updates.
		boss := e.tg.AddUser("Boss", "", "boss")
		group := e.tg.NewGroup("Offline group")
		e.tg.AddBotToGroup(group.ID, boss.ID, code)

		b2 := e.start()
		eventually(t, "chat linked after restart", func() bool { c, err := b2.Store().Chat(ctx, group.ID); return err == nil && c.Active })
		eventually(t, "confirmation after restart", func() bool { return len(botTexts(e, group.ID)) >= 1 })
		if got := botTexts(e, group.ID); len(got) != 1 {
			t.Fatalf("confirmations after restart: %q", got)
		}
	})
}

// TestKeyRotationKeepsDoorsOpen: the OAuth state and the derived Telegram
// webhook secret follow ENCRYPTION_KEY. A replica already on "new,old" still
// accepts what one on "old" handed out (an install begun there, Telegram
// calling with the secret it set), so a rolling key rotation drops nothing.
func TestKeyRotationKeepsDoorsOpen(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		acc, _ := addAccounts(e)
		old := e.start(telegramWebhookMode)
		eventually(t, "setWebhook by the old replica", func() bool { return len(e.tg.Calls("setWebhook")) == 1 })
		oldSecret := e.tg.Calls("setWebhook")[0].String("secret_token")
		state := old.Service().State()
		old.stop(t)

		newKey := "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=" // 32 bytes of 8
		rotated := e.start(telegramWebhookMode, func(v map[string]string) { v["ENCRYPTION_KEY"] = newKey + "," + encKey })
		eventually(t, "setWebhook by the rotated replica", func() bool { return len(e.tg.Calls("setWebhook")) == 2 })
		newSecret := e.tg.Calls("setWebhook")[1].String("secret_token")
		if newSecret == oldSecret {
			t.Fatal("the derived webhook secret did not follow the new key")
		}

		in := e.amo.IssueInstall(acc.ID, state)
		in.Query.Del("from_widget") // begun on our own install page: the state is checked
		if s, body := get(t, rotated.URL+"/oauth/amocrm/callback?"+in.Query.Encode()); s != 200 {
			t.Fatalf("install begun before the rotation: HTTP %d: %s", s, body)
		}
		for i, tc := range []struct {
			secret string
			want   int
		}{{oldSecret, 200}, {newSecret, 200}, {strings.Repeat("x", len(newSecret)), 401}} {
			update := fmt.Sprintf(`{"update_id":%d,"message":{"message_id":1,"date":1700000000,"chat":{"id":4242,"type":"private","first_name":"Anna"},"from":{"id":4242,"is_bot":false,"first_name":"Anna"},"text":"hi"}}`, 910000000+i)
			if s, body := post(t, rotated.URL+"/telegram/webhook", "application/json", update, "X-Telegram-Bot-Api-Secret-Token", tc.secret); s != tc.want {
				t.Errorf("secret #%d: HTTP %d (%s), want %d", i, s, body, tc.want)
			}
		}
	})
}
