package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// codeInHistory is the link code a group member reads in the group's
// history: the "/start@bot CODE" Telegram showed when the bot was added.
func codeInHistory(t *testing.T, e *env, chatID int64) string {
	t.Helper()
	for _, m := range e.tg.Messages(chatID) {
		if code, ok := strings.CutPrefix(m.Text, "/start@"+botName+" "); ok {
			return code
		}
	}
	t.Fatalf("no /start@%s in the history of %d", botName, chatID)
	return ""
}

// A link code is single-use. A member of the group an admin linked replays
// the code from the group's history, in a group of their own (by deep link
// and by /link), in the linked group, and in it again after the admin removed
// the bot: nothing is linked or re-activated, and each gets an answer. The
// admin's settings page and the reloaded install page show a new code, which
// links one group and then is spent in turn.
func TestReplayedLinkCodeLinksNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		acc := e.amo.AddAccount(fakeamocrm.AccountSpec{ID: 35000001, Subdomain: "kilo", Name: "Кило Курьер",
			Users: []fakeamocrm.User{{ID: 35000002, Name: "Admin", IsAdmin: true}}})
		b := e.start()
		ctx := context.Background()

		// The admin installs and adds the bot to the couriers' group with
		// the confirmation page's button.
		browser := cookieBrowser(t)
		in := e.amo.IssueInstall(acc.ID, "state")
		status, page := browse(t, browser, callback(b, in.Query))
		m := startgroupRe.FindStringSubmatch(page)
		if status != 200 || m == nil {
			t.Fatalf("install: HTTP %d %s", status, page)
		}
		installCode := m[1]
		admin := e.tg.AddUser("Ольга", "", "olga_admin")
		couriers := e.tg.NewGroup("Курьеры")
		e.tg.AddBotToGroup(couriers.ID, admin.ID, installCode)
		eventually(t, "couriers linked", func() bool { c, err := b.Store().Chat(ctx, couriers.ID); return err == nil && c.Active })
		eventually(t, "confirmation", func() bool { return len(botTexts(e, couriers.ID)) == 1 })

		// A courier reads the code in the group's history.
		member := e.tg.AddUser("Пётр", "", "petr")
		e.tg.SendGroupMessage(couriers.ID, member.ID, "Всем привет")
		replayed := codeInHistory(t, e, couriers.ID)
		if replayed != installCode {
			t.Fatalf("history shows %q, the page %q", replayed, installCode)
		}

		// ...and tries it in a group of their own: the deep link, then /link.
		own := e.tg.NewGroup("Свои заказы")
		e.tg.AddBotToGroup(own.ID, member.ID, replayed)
		e.tg.SendGroupMessage(own.ID, member.ID, "/link "+replayed)
		// ...and in the linked group itself.
		e.tg.SendGroupMessage(couriers.ID, member.ID, "/start@"+botName+" "+replayed)
		eventually(t, "answers to the replays", func() bool {
			return len(botTexts(e, own.ID)) == 2 && len(botTexts(e, couriers.ID)) == 2
		})
		for _, text := range botTexts(e, own.ID) {
			if !strings.Contains(text, "устарела") || !strings.Contains(text, "новой ссылке") {
				t.Fatalf("reply to a replayed code: %q", text)
			}
		}
		if _, err := b.Store().Chat(ctx, own.ID); err == nil {
			t.Fatal("a replayed code linked another group")
		}
		if text := botTexts(e, couriers.ID)[1]; !strings.Contains(text, "уже подключён") || !strings.Contains(text, "Кило Курьер") {
			t.Fatalf("replay in the linked group: %q", text)
		}
		if c, _ := b.Store().Chat(ctx, couriers.ID); c.LinkedBy != admin.ID || !c.Active {
			t.Fatalf("the replay changed the linked chat: %+v", c)
		}

		// The admin removes the bot; the member re-adds it with the old link.
		e.tg.RemoveBotFromGroup(couriers.ID, admin.ID)
		eventually(t, "couriers inactive", func() bool { c, _ := b.Store().Chat(ctx, couriers.ID); return !c.Active })
		e.tg.AddBotToGroup(couriers.ID, member.ID, replayed)
		eventually(t, "answer to the re-add", func() bool { return len(botTexts(e, couriers.ID)) == 3 })
		if c, _ := b.Store().Chat(ctx, couriers.ID); c.Active {
			t.Fatal("a replayed code re-activated a removed group")
		}
		if chats, _ := b.Store().Chats(ctx, acc.ID); len(chats) != 1 {
			t.Fatalf("chats after the replays: %+v", chats)
		}

		// The admin's pages show a new code: the widget's settings and the
		// install page reloaded in the admin's browser.
		tok := widgetToken(t, b, acc.ID, "kilo", asUser(35000002))
		_, st, _ := widgetCall(t, b, "GET", "/api/widget/state", tok, "")
		bot, _ := st["bot"].(map[string]any)
		if bot == nil {
			t.Fatalf("admin's state: %v", st)
		}
		fresh := strings.TrimPrefix(fmt.Sprint(bot["link_command"]), "/link ")
		if fresh == "" || fresh == replayed || bot["startgroup_url"] != "https://t.me/"+botName+"?startgroup="+fresh {
			t.Fatalf("the settings page's link after a link: %v", bot)
		}
		if _, again := browse(t, browser, callback(b, in.Query)); !strings.Contains(again, "?startgroup="+fresh) || strings.Contains(again, replayed) {
			t.Fatalf("the reloaded install page does not show the new code:\n%s", again)
		}

		// The new code links one group, once.
		north := e.tg.NewGroup("Курьеры: север")
		e.tg.AddBotToGroup(north.ID, admin.ID, fresh)
		eventually(t, "north linked", func() bool { c, err := b.Store().Chat(ctx, north.ID); return err == nil && c.Active })
		if got := codeInHistory(t, e, north.ID); got != fresh {
			t.Fatalf("north's history shows %q", got)
		}
		e.tg.AddBotToGroup(own.ID, member.ID, fresh)
		eventually(t, "answer to the second use", func() bool { return len(botTexts(e, own.ID)) == 3 })
		if _, err := b.Store().Chat(ctx, own.ID); err == nil {
			t.Fatal("the new code linked a second group")
		}
		if next := linkCode(t, b.Store(), acc.ID); next == fresh || next == replayed {
			t.Fatal("the second link did not renew the code")
		}
		for _, code := range []string{installCode, fresh, linkCode(t, b.Store(), acc.ID)} {
			if strings.Contains(e.logs.String(), code) {
				t.Fatal("a link code is in the backend's logs")
			}
		}
	})
}

// Several groups add the bot with one code at the same moment: one is
// linked, every other is told the link is spent, and none of them twice.
func TestLinkCodeRaceLinksOneGroup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 36000000, "oscar", "ru", 3600)
		code := tn.linkCode(t, b)

		const n = 6
		groups := make([]int64, n)
		users := make([]int64, n)
		for i := range n {
			groups[i] = e.tg.NewGroup(fmt.Sprintf("Race %d", i)).ID
			users[i] = e.tg.AddUser(fmt.Sprint("Racer", i), "", fmt.Sprint("racer", i)).ID
		}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { e.tg.AddBotToGroup(groups[i], users[i], code) })
		}
		wg.Wait()
		eventually(t, "every group answered", func() bool {
			for _, g := range groups {
				if len(botTexts(e, g)) != 1 {
					return false
				}
			}
			return true
		})
		linked, refused := 0, 0
		for _, g := range groups {
			text := botTexts(e, g)[0]
			c, err := b.Store().Chat(ctx, g)
			switch {
			case err == nil && c.Active && c.AccountID == tn.acc.ID && strings.Contains(text, "подключён"):
				linked++
			case err != nil && strings.Contains(text, "устарела"):
				refused++
			default:
				t.Errorf("group %d: chat %+v %v, answer %q", g, c, err, text)
			}
		}
		if linked != 1 || refused != n-1 {
			t.Fatalf("%d linked and %d refused of %d uses of one code", linked, refused, n)
		}
		if chats, _ := b.Store().Chats(ctx, tn.acc.ID); len(chats) != 2 {
			t.Fatalf("the account has %d chats, want its own and one of the race", len(chats))
		}
	})
}
