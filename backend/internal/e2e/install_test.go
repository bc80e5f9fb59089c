package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

var startgroupRe = regexp.MustCompile(`https://t\.me/` + botName + `\?startgroup=([A-Za-z0-9_-]+)`)

// install runs amoCRM's install redirect against the backend and returns the
// Telegram link code shown on the confirmation page.
func install(t testing.TB, e *env, b *backend, accountID int64) string {
	t.Helper()
	in := e.amo.IssueInstall(accountID, "")
	status, body := get(t, b.URL+"/oauth/amocrm/callback?"+in.Query.Encode())
	if status != 200 {
		t.Fatalf("install of %d: HTTP %d: %s", accountID, status, body)
	}
	m := startgroupRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("install page of %d shows no startgroup link:\n%s", accountID, body)
	}
	return m[1]
}

func addAccounts(e *env) (a, b *fakeamocrm.Account) {
	a = e.amo.AddAccount(fakeamocrm.AccountSpec{ID: 31000001, Subdomain: "alpha", Name: "Альфа Доставка"})
	b = e.amo.AddAccount(fakeamocrm.AccountSpec{ID: 31000002, Subdomain: "beta", Name: "Beta Builders", Kommo: true, Language: "en"})
	return a, b
}

func TestInstallSubscribeAndLinkTwoAccounts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		accA, accB := addAccounts(e)
		b := e.start()
		ctx := context.Background()

		codeA := install(t, e, b, accA.ID)
		codeB := install(t, e, b, accB.ID)
		if codeA == codeB {
			t.Fatal("two accounts share a link code")
		}

		// Setup ran against each account's own API: webhook to its own secret
		// URL, pipelines stored, executor field created.
		for _, acc := range []*fakeamocrm.Account{accA, accB} {
			hooks := e.amo.Webhooks(acc.ID)
			if len(hooks) != 1 {
				t.Fatalf("account %d has %d webhooks", acc.ID, len(hooks))
			}
			prefix := fmt.Sprintf("%s/amocrm/webhook/%d/", b.URL, acc.ID)
			if !strings.HasPrefix(hooks[0].Destination, prefix) {
				t.Fatalf("webhook destination %q, want prefix %q", hooks[0].Destination, prefix)
			}
			for _, ev := range service.WebhookSettings {
				if !contains(hooks[0].Settings, ev) {
					t.Errorf("account %d webhook lacks %s: %v", acc.ID, ev, hooks[0].Settings)
				}
			}
			stored, err := b.Store().Account(ctx, acc.ID)
			if err != nil || stored.SetupDoneAt == nil || stored.ExecutorFieldID == 0 {
				t.Fatalf("account %d setup not done: %+v %v", acc.ID, stored, err)
			}
			ps, _ := b.Store().Pipelines(ctx, acc.ID)
			if len(ps) != len(acc.Pipelines()) || len(ps[0].Stages) != len(acc.Pipelines()[0].Statuses) {
				t.Fatalf("account %d pipelines not stored: %+v", acc.ID, ps)
			}
		}
		if a, _ := b.Store().Account(ctx, accB.ID); a.Domain != "beta.kommo.com" || a.Language != "en" {
			t.Fatalf("Kommo account stored as %+v", a)
		}

		// Telegram: each account's deep link links a different group.
		boss := e.tg.AddUser("Ольга", "Петрова", "olga_boss")
		groupA := e.tg.NewGroup("Курьеры <Альфа> & Co")
		groupB := e.tg.NewGroup("Beta crew")
		e.tg.AddBotToGroup(groupA.ID, boss.ID, codeA)
		e.tg.AddBotToGroup(groupB.ID, boss.ID, codeB)
		eventually(t, "both chats linked", func() bool {
			ca, _ := b.Store().Chats(ctx, accA.ID)
			cb, _ := b.Store().Chats(ctx, accB.ID)
			return len(ca) == 1 && len(cb) == 1
		})
		ca, _ := b.Store().Chats(ctx, accA.ID)
		cb, _ := b.Store().Chats(ctx, accB.ID)
		if ca[0].ID != groupA.ID || cb[0].ID != groupB.ID || !ca[0].Active || ca[0].Title != groupA.Title {
			t.Fatalf("cross-talk: A=%+v B=%+v", ca, cb)
		}
		eventually(t, "confirmations in both groups", func() bool {
			return len(botTexts(e, groupA.ID)) > 0 && len(botTexts(e, groupB.ID)) > 0
		})
		if msg := botTexts(e, groupA.ID)[0]; !strings.Contains(msg, "Альфа Доставка") || !strings.Contains(msg, "подключён") {
			t.Fatalf("Russian confirmation in A: %q", msg)
		}
		if msg := botTexts(e, groupB.ID)[0]; !strings.Contains(msg, "Beta Builders") || !strings.Contains(msg, "linked") {
			t.Fatalf("English confirmation in B: %q", msg)
		}

		// "/link@Bot CODE" in a third group links it too; a command addressed
		// to another bot is ignored; a wrong code is answered and links nothing.
		groupC := e.tg.NewGroup("Alpha night shift")
		e.tg.AddBotToGroup(groupC.ID, boss.ID, "")
		// Each link spends the code it used: group C needs A's current one.
		nextA := linkCode(t, b.Store(), accA.ID)
		if nextA == codeA {
			t.Fatal("linking group A did not renew A's code")
		}
		e.tg.SendGroupMessage(groupC.ID, boss.ID, "/link@OtherBot "+nextA)
		e.tg.SendGroupMessage(groupC.ID, boss.ID, "/link WRONGCODE")
		e.tg.SendGroupMessage(groupC.ID, boss.ID, "/link@"+botName+" "+nextA)
		eventually(t, "third chat linked", func() bool {
			ca, _ := b.Store().Chats(ctx, accA.ID)
			return len(ca) == 2
		})
		eventually(t, "both replies in group C", func() bool { return len(botTexts(e, groupC.ID)) >= 2 })
		texts := botTexts(e, groupC.ID)
		if len(texts) != 2 || !strings.Contains(texts[0], "устарела") || !strings.Contains(texts[1], "подключён") {
			t.Fatalf("group C replies: %q", texts)
		}

		// Account B's code cannot steal A's active chat.
		e.tg.SendGroupMessage(groupA.ID, boss.ID, "/link "+linkCode(t, b.Store(), accB.ID))
		eventually(t, "refusal in A", func() bool { return len(botTexts(e, groupA.ID)) == 2 })
		if texts := botTexts(e, groupA.ID); !strings.Contains(texts[1], "другому аккаунту") {
			t.Fatalf("refusal text: %q", texts[1])
		}
		if c, _ := b.Store().Chat(ctx, groupA.ID); c.AccountID != accA.ID {
			t.Fatalf("chat A moved to account %d", c.AccountID)
		}

		// A stage change in amoCRM reaches the backend under its own account only.
		lead, err := e.amo.AddLead(accA.ID, fakeamocrm.Lead{Name: "Доставка дивана"})
		if err != nil {
			t.Fatal(err)
		}
		before, _ := b.Flow().EventsReceived(ctx, accA.ID)
		if err := e.amo.MoveLead(accA.ID, lead.ID, accA.Pipelines()[0].Statuses[1].ID); err != nil {
			t.Fatal(err)
		}
		if err := e.amo.WaitDeliveries(5e9); err != nil {
			t.Fatal(err)
		}
		for _, d := range e.amo.Deliveries(accA.ID) {
			if d.StatusCode != 200 {
				t.Fatalf("backend answered amoCRM webhook with %d", d.StatusCode)
			}
		}
		after, _ := b.Flow().EventsReceived(ctx, accA.ID)
		if after <= before {
			t.Fatal("stage change webhook was not stored")
		}
		if n, _ := b.Flow().EventsReceived(ctx, accB.ID); n != 0 {
			t.Fatalf("account B got %d of A's events", n)
		}
	})
}

func TestChatLifecycleAndExecutors(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		accA, _ := addAccounts(e)
		b := e.start()
		ctx := context.Background()
		code := install(t, e, b, accA.ID)
		boss := e.tg.AddUser("Ivan", "", "ivan")
		group := e.tg.NewGroup("Couriers")
		e.tg.AddBotToGroup(group.ID, boss.ID, code)
		eventually(t, "chat linked", func() bool { c, err := b.Store().Chat(ctx, group.ID); return err == nil && c.Active })

		// Upgrade to a supergroup keeps the link under the new id.
		newID := e.tg.MigrateToSupergroup(group.ID)
		eventually(t, "chat migrated", func() bool { c, err := b.Store().Chat(ctx, newID); return err == nil && c.Active })
		if chats, _ := b.Store().Chats(ctx, accA.ID); len(chats) != 1 || chats[0].ID != newID {
			t.Fatalf("after migration: %+v", chats)
		}

		// Removing the bot deactivates the chat.
		e.tg.RemoveBotFromGroup(newID, boss.ID)
		eventually(t, "chat inactive", func() bool { c, _ := b.Store().Chat(ctx, newID); return !c.Active })

		// Private /start registers the executor and greets in their language.
		courier := e.tg.AddUser("Сергей", "Курьеров", "sergey_k")
		e.tg.UserStartsBot(courier.ID, "")
		eventually(t, "executor registered", func() bool {
			x, err := b.Store().Executor(ctx, courier.ID)
			return err == nil && x.Started && x.Username == "sergey_k"
		})
		eventually(t, "greeting", func() bool { return len(botTexts(e, courier.ID)) == 1 })
		if g := botTexts(e, courier.ID)[0]; !strings.Contains(g, "Сергей") || !strings.Contains(g, "исполнитель") {
			t.Fatalf("greeting: %q", g)
		}
	})
}

func TestInstallRejectsBadInput(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		accA, _ := addAccounts(e)
		b := e.start()
		ctx := context.Background()
		good := e.amo.IssueInstall(accA.ID, "")

		cases := []struct {
			name   string
			mutate func(q url.Values)
		}{
			{"forged code", func(q url.Values) { q.Set("code", "def50200forged") }},
			{"foreign referer", func(q url.Values) { q.Set("referer", "evil.example.com") }},
			{"referer suffix trick", func(q url.Values) { q.Set("referer", "alpha.amocrm.ru.evil.com") }},
			{"other integration", func(q url.Values) { q.Set("client_id", "00000000-0000-0000-0000-000000000000") }},
			// With from_widget the state is amoCRM's own (TestInstallFromAmoCRMSettings);
			// without it, it must be ours.
			{"unknown state", func(q url.Values) { q.Del("from_widget"); q.Set("state", "state") }},
			{"forged state", func(q url.Values) {
				q.Del("from_widget")
				q.Set("state", "ad1.nonce.9999999999.deadbeefdeadbeefdeadbeefdeadbeef")
			}},
			{"access denied", func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") }},
			{"missing code", func(q url.Values) { q.Del("code") }},
		}
		for _, tc := range cases {
			q := url.Values{}
			for k, v := range good.Query {
				q[k] = append([]string(nil), v...)
			}
			tc.mutate(q)
			status, body := get(t, b.URL+"/oauth/amocrm/callback?"+q.Encode())
			if status != 400 {
				t.Errorf("%s: HTTP %d, want 400: %s", tc.name, status, body)
			}
			if !strings.Contains(body, "Не удалось установить") {
				t.Errorf("%s: page does not explain the failure: %s", tc.name, body)
			}
		}
		if _, err := b.Store().Account(ctx, accA.ID); err == nil {
			t.Fatal("a rejected install stored the account")
		}
		if n := len(e.amo.Webhooks(accA.ID)); n != 0 {
			t.Fatalf("a rejected install subscribed %d webhooks", n)
		}

		// The genuine code still works once, and a replay of it is refused.
		status, _ := get(t, b.URL+"/oauth/amocrm/callback?"+good.Query.Encode())
		if status != 200 {
			t.Fatalf("genuine install: %d", status)
		}
		acc, _ := b.Store().Account(ctx, accA.ID)
		if status, _ := get(t, b.URL+"/oauth/amocrm/callback?"+good.Query.Encode()); status != 400 {
			t.Fatalf("replayed code: %d", status)
		}
		if again, _ := b.Store().Account(ctx, accA.ID); again.UpdatedAt != acc.UpdatedAt {
			t.Fatal("a replayed code changed the account")
		}

		// A signed state from our own install page is accepted.
		stated := e.amo.IssueInstall(accA.ID, b.Service().State())
		stated.Query.Del("from_widget")
		if status, body := get(t, b.URL+"/oauth/amocrm/callback?"+stated.Query.Encode()); status != 200 {
			t.Fatalf("install with our state: %d %s", status, body)
		}
		if len(e.amo.Webhooks(accA.ID)) != 1 {
			t.Fatal("reinstall must keep one webhook subscription")
		}

		// amoCRM webhooks: wrong secret, unknown account, garbage body.
		hook := e.amo.Webhooks(accA.ID)[0].Destination
		form := fmt.Sprintf("leads%%5Bstatus%%5D%%5B0%%5D%%5Bid%%5D=1&account%%5Bid%%5D=%d", accA.ID)
		wrongStatus, wrongBody := post(t, hook[:strings.LastIndex(hook, "/")+1]+"wrongsecret", "application/x-www-form-urlencoded", form)
		if wrongStatus != 401 {
			t.Errorf("wrong webhook secret: %d", wrongStatus)
		}
		// An unknown or malformed account id answers exactly like a wrong
		// secret: no oracle of which account ids are installed.
		for _, acc := range []string{"999", "abc"} {
			if s, body := post(t, b.URL+"/amocrm/webhook/"+acc+"/x", "application/x-www-form-urlencoded", form); s != wrongStatus || body != wrongBody {
				t.Errorf("unknown account %s: %d %q, want %d %q like a wrong secret", acc, s, body, wrongStatus, wrongBody)
			}
		}
		if s, _ := post(t, hook, "application/x-www-form-urlencoded", "%%%"); s != 400 {
			t.Errorf("garbage body: %d", s)
		}
		if s, _ := post(t, hook, "application/x-www-form-urlencoded", "account%5Bid%5D=31000002"); s != 400 {
			t.Errorf("body of another account: %d", s)
		}
		if s := sendOversized(t, "POST", hook, strings.Repeat("x", 2<<20), false, "Content-Type", "application/x-www-form-urlencoded"); s != 413 {
			t.Errorf("oversized body: %d", s)
		}
		if n, _ := b.Flow().EventsReceived(ctx, accA.ID); n != 0 {
			t.Fatalf("rejected webhooks stored %d events", n)
		}
		if s, _ := post(t, hook, "application/x-www-form-urlencoded", form); s != 200 {
			t.Fatalf("genuine webhook: %d", s)
		}

		// Disable hook: forged signatures change nothing; the genuine one,
		// sent by amoCRM after it revoked the tokens, disables the account
		// and deletes its tokens.
		sig := func(secret, account string) string {
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte(clientID + "|" + account))
			return hex.EncodeToString(m.Sum(nil))
		}
		id := fmt.Sprint(accA.ID)
		forged := []url.Values{
			{"client_uuid": {clientID}, "account_id": {id}, "signature": {sig("wrong-secret", id)}},
			{"client_uuid": {clientID}, "account_id": {id}, "signature": {sig(clientSecret, "31000002")}},
			{"client_uuid": {"other"}, "account_id": {id}, "signature": {sig(clientSecret, id)}},
			{"client_uuid": {clientID}, "account_id": {id}, "signature": {"zz"}},
		}
		for _, q := range forged {
			if s, _ := get(t, b.URL+"/oauth/amocrm/disconnect?"+q.Encode()); s != 401 {
				t.Errorf("forged disconnect %v: %d", q, s)
			}
		}
		if a, _ := b.Store().Account(ctx, accA.ID); a.Status != dispatch.AccountActive {
			t.Fatalf("forged disconnect changed status to %s", a.Status)
		}
		if s, err := e.amo.SendDisconnect(accA.ID, b.URL+"/oauth/amocrm/disconnect"); s != 200 || err != nil {
			t.Fatalf("genuine disconnect: %d %v", s, err)
		}
		if a, _ := b.Store().Account(ctx, accA.ID); a.Status != dispatch.AccountDisabled {
			t.Fatalf("after disconnect: %s", a.Status)
		}
		if _, err := b.Store().Tokens(ctx, accA.ID); err == nil {
			t.Fatal("tokens survived the disconnect")
		}
		if s, _ := post(t, hook, "application/x-www-form-urlencoded", form); s != 410 {
			t.Errorf("webhook of a disabled account: %d", s)
		}
		if strings.Contains(e.logs.String(), clientSecret) {
			t.Fatal("client secret in the logs")
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// botTexts are the texts the bot itself sent to a chat, oldest first.
func botTexts(e *env, chatID int64) []string {
	var out []string
	for _, m := range e.tg.Messages(chatID) {
		if m.From != nil && m.From.ID == e.tg.Bot().ID {
			out = append(out, m.Text)
		}
	}
	return out
}
