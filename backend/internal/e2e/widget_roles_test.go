package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// asUser sets the disposable token's user_id.
func asUser(id int64) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c["user_id"] = id } }

// A manager (any amoCRM user with the widget) works the deal card but can
// neither read the link code nor change settings; an admin can, and rotates
// the code, after which the old one links no group.
func TestWidgetAdminOnly(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		ta := newTenant(t, e, b, 48000000, "lima", "ru", 8000)
		// The current code: linking ta.group spent the install page's.
		code := ta.linkCode(t, b)
		admin, manager := ta.acc.ID+1, ta.amoUser // newTenant's users: an admin and a manager
		tokAdmin := widgetToken(t, b, ta.acc.ID, "lima", asUser(admin))
		tokManager := widgetToken(t, b, ta.acc.ID, "lima", asUser(manager))
		const mappedExecutor = 77123456
		s0, _ := b.Store().Settings(ctx, ta.acc.ID)
		s0.ExecutorUsers = map[int64]int64{mappedExecutor: manager}
		if err := b.Store().SaveSettings(ctx, s0); err != nil {
			t.Fatal(err)
		}

		// The manager's state: the account and its chats for the card, a
		// role, and nothing that links a group or names executors.
		status, raw := widgetRaw(t, b, "GET", "/api/widget/state", tokManager, "")
		if status != 200 {
			t.Fatalf("manager's state: %d %s", status, raw)
		}
		for _, secret := range []string{code, "startgroup", "link_command", "executor_users", fmt.Sprint(mappedExecutor), `"settings"`} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("manager's state shows %q: %s", secret, raw)
			}
		}
		_, st, _ := widgetCall(t, b, "GET", "/api/widget/state", tokManager, "")
		chats, _ := st["chats"].([]any)
		if st["is_admin"] != false || st["bot"] != nil || len(chats) != 1 || chats[0].(map[string]any)["title"] != ta.group.Title {
			t.Fatalf("manager's state: %v", st)
		}

		// The manager's admin calls: 403, whatever the body, and nothing changes.
		settingsBefore, _ := b.Store().Settings(ctx, ta.acc.ID)
		valid := fmt.Sprintf(`{"language":"en","rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d],"default_chat_id":%d}],"executor_users":{"555":%d}}`,
			ta.pipeline, ta.statusByIndex(3), ta.group.ID, manager)
		for _, c := range []struct{ method, path, body string }{
			{"PUT", "/api/widget/settings", valid},
			{"PUT", "/api/widget/settings", `{"language":"de"}`},
			{"PUT", "/api/widget/settings", `not json`},
			{"POST", "/api/widget/link-code/rotate", ""},
		} {
			if s, out, _ := widgetCall(t, b, c.method, c.path, tokManager, c.body); s != 403 || out["error"] == nil {
				t.Errorf("manager's %s %s %s: %d %v", c.method, c.path, c.body, s, out)
			}
		}
		if after, _ := b.Store().Settings(ctx, ta.acc.ID); fmt.Sprint(after) != fmt.Sprint(settingsBefore) {
			t.Fatalf("a manager's call changed settings:\n%+v\n%+v", settingsBefore, after)
		}
		if a, _ := b.Store().Account(ctx, ta.acc.ID); a.LinkCode != code {
			t.Fatal("a manager's call changed the link code")
		}

		// The deal card stays the manager's: chat choice, post, withdraw.
		lead := ta.newLead(t, e, "Карточка менеджера")
		path := fmt.Sprintf("/api/widget/deals/%d", lead.ID)
		if s, out, _ := widgetCall(t, b, "PUT", path+"/chat", tokManager, fmt.Sprintf(`{"chat_id":%d}`, ta.group.ID)); s != 200 {
			t.Fatalf("manager's chat choice: %d %v", s, out)
		}
		if c, _ := b.Store().DealTarget(ctx, ta.acc.ID, lead.ID); c != ta.group.ID {
			t.Fatalf("deal target = %d", c)
		}
		if s, out, _ := widgetCall(t, b, "POST", path+"/post", tokManager, ""); s != 200 {
			t.Fatalf("manager's post: %d %v", s, out)
		}
		ta.postedOrder(t, b, lead.ID)
		if s, out, _ := widgetCall(t, b, "GET", path, tokManager, ""); s != 200 || out["order"] == nil {
			t.Fatalf("manager's deal view: %d %v", s, out)
		}
		if s, _, _ := widgetCall(t, b, "POST", path+"/withdraw", tokManager, ""); s != 200 {
			t.Fatalf("manager's withdraw: %d", s)
		}

		// The admin sees the code and settings, and rotates the code.
		_, st, _ = widgetCall(t, b, "GET", "/api/widget/state", tokAdmin, "")
		bot, _ := st["bot"].(map[string]any)
		if st["is_admin"] != true || bot == nil || bot["link_command"] != "/link "+code || st["settings"] == nil {
			t.Fatalf("admin's state: %v", st)
		}
		s, out, _ := widgetCall(t, b, "POST", "/api/widget/link-code/rotate", tokAdmin, "")
		newBot, _ := out["bot"].(map[string]any)
		if s != 200 || newBot == nil {
			t.Fatalf("rotate: %d %v", s, out)
		}
		newCode := strings.TrimPrefix(newBot["link_command"].(string), "/link ")
		if newCode == code || newCode == "" || newBot["startgroup_url"] != "https://t.me/"+botName+"?startgroup="+newCode {
			t.Fatalf("rotated links: %v", newBot)
		}
		if _, st, _ = widgetCall(t, b, "GET", "/api/widget/state", tokAdmin, ""); st["bot"].(map[string]any)["link_command"] != "/link "+newCode {
			t.Fatalf("state after the rotation: %v", st["bot"])
		}

		if strings.Contains(e.logs.String(), newCode) {
			t.Fatal("the new link code is in the backend's logs")
		}

		// Over Telegram: the old code links nothing, the new one links.
		oldGroup, newGroup := e.tg.NewGroup("Lima: old code"), e.tg.NewGroup("Lima: new code")
		e.tg.AddBotToGroup(oldGroup.ID, ta.boss, code)
		e.tg.AddBotToGroup(newGroup.ID, ta.boss, "")
		e.tg.SendGroupMessage(newGroup.ID, ta.boss, "/link "+code)
		eventually(t, "the old code refused twice", func() bool {
			return len(botTexts(e, oldGroup.ID)) >= 1 && len(botTexts(e, newGroup.ID)) >= 1
		})
		for _, g := range []int64{oldGroup.ID, newGroup.ID} {
			if texts := botTexts(e, g); !strings.Contains(texts[0], "устарела") {
				t.Fatalf("old code in group %d: %q", g, texts)
			}
			if _, err := b.Store().Chat(ctx, g); err == nil {
				t.Fatalf("the old code linked group %d", g)
			}
		}
		e.tg.SendGroupMessage(newGroup.ID, ta.boss, "/link "+newCode)
		eventually(t, "the new code links", func() bool {
			c, err := b.Store().Chat(ctx, newGroup.ID)
			return err == nil && c.AccountID == ta.acc.ID && c.Active
		})
	})
}

// A user's admin status is read from amoCRM once per cache period: an admin
// demoted in amoCRM keeps it until the period ends, then gets 403.
func TestWidgetAdminCache(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		const ttl = 4 * time.Second
		e := newEnv(t, kind, withAdminTTL(ttl), withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		ta := newTenant(t, e, b, 49000000, "mike", "en", 9000)
		admin := ta.acc.ID + 1
		tok := widgetToken(t, b, ta.acc.ID, "mike", asUser(admin))
		reads := func() int {
			return len(e.amo.Requests(fakeamocrm.RequestFilter{AccountID: ta.acc.ID, Method: "GET", Path: fmt.Sprintf("/api/v4/users/%d", admin)}))
		}
		// A body only an admin gets to have validated: 400 for an admin, 403 for anyone else.
		probe := func() int {
			s, _, _ := widgetCall(t, b, "PUT", "/api/widget/settings", tok, `{"language":"de"}`)
			return s
		}
		settingsBefore, _ := b.Store().Settings(ctx, ta.acc.ID)

		for i := range 3 {
			if s := probe(); s != 400 {
				t.Fatalf("admin's probe %d: %d", i, s)
			}
		}
		if n := reads(); n != 1 {
			t.Fatalf("three calls read the user from amoCRM %d times, want 1", n)
		}

		if err := e.amo.SetUserAdmin(ta.acc.ID, admin, false); err != nil {
			t.Fatal(err)
		}
		if s := probe(); s != 400 {
			t.Fatalf("right after the demotion the cached status holds: %d (TTL %v)", s, ttl)
		}
		start := time.Now()
		eventually(t, "the demotion takes effect", func() bool { return probe() == 403 })
		if waited := time.Since(start); waited > ttl+time.Second {
			t.Fatalf("the demotion took %v, TTL %v", waited, ttl)
		}
		if n := reads(); n != 2 {
			t.Fatalf("amoCRM read %d times, want 2 (once per cache period)", n)
		}
		_, st, _ := widgetCall(t, b, "GET", "/api/widget/state", tok, "")
		if st["is_admin"] != false || st["bot"] != nil {
			t.Fatalf("demoted user's state: %v", st)
		}
		if after, _ := b.Store().Settings(ctx, ta.acc.ID); fmt.Sprint(after) != fmt.Sprint(settingsBefore) {
			t.Fatal("settings changed")
		}
	})
}
