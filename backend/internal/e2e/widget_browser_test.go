package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// linkSecondGroup links another Telegram group to the tenant's account with
// the account's current link code (the first link spent newTenant's).
func linkSecondGroup(t *testing.T, e *env, b *backend, tn *tenant, title string) faketelegram.Chat {
	t.Helper()
	g := e.tg.NewGroup(title)
	e.tg.AddBotToGroup(g.ID, tn.boss, tn.linkCode(t, b))
	eventually(t, "second group linked", func() bool {
		c, err := b.Store().Chat(context.Background(), g.ID)
		return err == nil && c.AccountID == tn.acc.ID
	})
	return g
}

// The advanced settings page lists the account's chats and the link to add
// the bot; an admin changes the link code, picks stages, the default chat,
// fields, an executor's amoCRM user and the language, saves, and the backend
// stores exactly that. A manager gets a notice instead of the form.
func TestWidgetBrowserAdvancedSettings(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		br := newBrowser(t)
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 61000000, "widgetadv", "ru", 6000)
		second := linkSecondGroup(t, e, b, tn, "Курьеры: север")
		courier := e.tg.AddUser("Иван", "Петров", "ivan_courier")
		e.tg.UserStartsBot(courier.ID, "")
		eventually(t, "executor registered", func() bool { x, err := b.Store().Executor(ctx, courier.ID); return err == nil && x.Started })
		// The settings page lists the account's executors (those who worked
		// on its orders, and by id those only mapped); this one is mapped to
		// the admin.
		s0, err := b.Store().Settings(ctx, tn.acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		s0.ExecutorUsers = map[int64]int64{courier.ID: tn.acc.ID + 1}
		if err := b.Store().SaveSettings(ctx, s0); err != nil {
			t.Fatal(err)
		}

		// A date_time deal field mapped as the job time (the defaults).
		jobField := tn.jobTimeField(t, e, b)
		s0, err = b.Store().Settings(ctx, tn.acc.ID)
		if err != nil || s0.ExecutorUsers[courier.ID] != tn.acc.ID+1 {
			s0.ExecutorUsers = map[int64]int64{courier.ID: tn.acc.ID + 1}
			if err := b.Store().SaveSettings(ctx, s0); err != nil {
				t.Fatal(err)
			}
		}

		page := newWidgetPage(t, e, b, tn.acc, tn.acc.ID+1)
		br.run(t, chromedp.Navigate(page.url("advanced_settings", "ru", 0, "")))
		root := "#work-area-amodispatch .amodispatch-advanced"
		br.waitReady(t, root)

		titles := br.texts(t, root+" .amodispatch-chat-title")
		if !slices.Contains(titles, tn.group.Title) || !slices.Contains(titles, second.Title) {
			t.Fatalf("chat titles on the page: %q", titles)
		}
		code := tn.linkCode(t, b) // the one the second group's link issued
		href := evalAs[string](t, br, `document.querySelector('.amodispatch-startgroup').href`)
		if want := "https://t.me/" + botName + "?startgroup=" + code; href != want {
			t.Fatalf("startgroup link %q, want %q", href, want)
		}
		if cmd := br.texts(t, ".amodispatch-link-command"); len(cmd) != 1 || cmd[0] != "/link "+code {
			t.Fatalf("link command %q", cmd)
		}
		// newTenant's rule shows as saved: stage 2 checked, stage 3 found.
		rule := fmt.Sprintf(`.amodispatch-rule[data-pipeline-id="%d"]`, tn.pipeline)
		checked := evalAs[[]string](t, br, `Array.from(document.querySelectorAll('`+rule+` .amodispatch-trigger:checked')).map(function(e){return e.value})`)
		if want := []string{fmt.Sprint(tn.statusByIndex(1))}; !slices.Equal(checked, want) {
			t.Fatalf("checked trigger stages %v, want %v", checked, want)
		}
		// The admin is told what the group never sees.
		if p := br.texts(t, root+" .amodispatch-privacy"); len(p) != 1 || !strings.Contains(p[0], "скрываются в группе") {
			t.Fatalf("privacy note on the settings page: %q", p)
		}
		br.screenshot(t, kind, "#work-area-amodispatch", "advanced_settings")

		// "New code": the page shows the new code, the old one links nothing.
		br.click(t, ".amodispatch-rotate-code")
		br.waitText(t, root+" .amodispatch-code-status", "Код сменён")
		rotated, err := b.Store().Account(ctx, tn.acc.ID)
		if err != nil || rotated.LinkCode == code {
			t.Fatalf("link code after the button: %q %v", rotated.LinkCode, err)
		}
		if cmd := br.texts(t, ".amodispatch-link-command"); len(cmd) != 1 || cmd[0] != "/link "+rotated.LinkCode {
			t.Fatalf("link command after the rotation %q, want the new code", cmd)
		}
		if href := evalAs[string](t, br, `document.querySelector('.amodispatch-startgroup').href`); !strings.HasSuffix(href, "?startgroup="+rotated.LinkCode) {
			t.Fatalf("startgroup link after the rotation %q", href)
		}
		if _, err := b.Store().AccountByLinkCode(ctx, code); err == nil {
			t.Fatal("the old code still links")
		}

		// The admin's choices.
		trigger := func(i int) string {
			return fmt.Sprintf(`%s .amodispatch-trigger[value="%d"]`, rule, tn.statusByIndex(i))
		}
		addressField := tn.acc.ID + 10
		br.click(t, trigger(1)) // uncheck "Поиск исполнителя"
		br.click(t, trigger(3)) // check "Отложено"
		br.click(t, fmt.Sprintf(`.amodispatch-field[value="%d"]`, addressField))
		br.click(t, `.amodispatch-show-budget`) // off
		br.selectValue(t, rule+" .amodispatch-found", tn.statusByIndex(0))
		br.selectValue(t, rule+" .amodispatch-default-chat", second.ID)
		execSel := fmt.Sprintf(`.amodispatch-executor-user[data-telegram-id="%d"]`, courier.ID)
		if v := evalAs[string](t, br, `document.querySelector('`+execSel+`').value`); v != fmt.Sprint(tn.acc.ID+1) {
			t.Fatalf("executor's stored amoCRM user not selected: %q", v)
		}
		br.selectValue(t, execSel, tn.amoUser)
		br.selectValue(t, ".amodispatch-language", "en")
		// The executor's side: "on the way" moves the deal, "started" is not
		// offered, only the executor gets the contact.
		br.selectValue(t, rule+` .amodispatch-status-stage[data-status="on_way"]`, tn.statusByIndex(2))
		br.click(t, rule+` .amodispatch-status-button[value="started"]`)
		br.selectValue(t, ".amodispatch-contact-policy", "executor")
		br.selectValue(t, ".amodispatch-digest-chat", second.ID) // the weekly digest
		// The ladder: the rule saved without one shows the defaults; the
		// admin bumps later, adds the first group as the fallback, expires.
		if v := evalAs[string](t, br, `document.querySelector('`+rule+` .amodispatch-ladder-bump').value + '/' + `+
			`document.querySelector('`+rule+` .amodispatch-ladder-task').value`); v != "0/0" {
			t.Fatalf("ladder of a rule saved with none: %q", v)
		}
		br.setInput(t, rule+" .amodispatch-ladder-bump", 20)
		br.setInput(t, rule+" .amodispatch-ladder-fallback", 45)
		br.selectValue(t, rule+" .amodispatch-ladder-fallback-chat", tn.group.ID)
		br.setInput(t, rule+" .amodispatch-ladder-task", 90)
		br.setInput(t, rule+" .amodispatch-ladder-expire", 24)
		// Reminders: only date fields are offered for the job time, the
		// mapped one selected; the admin asks for 3 and 1.5 hours before.
		jobOpts := evalAs[[]string](t, br, `Array.from(document.querySelectorAll('`+rule+` .amodispatch-job-time-field option')).map(function(e){return e.value})`)
		if want := []string{"0", fmt.Sprint(jobField)}; !slices.Equal(jobOpts, want) {
			t.Fatalf("job-time field choices %v, want %v (no text or numeric field)", jobOpts, want)
		}
		if v := evalAs[string](t, br, `document.querySelector('`+rule+` .amodispatch-job-time-field').value`); v != fmt.Sprint(jobField) {
			t.Fatalf("mapped job-time field not selected: %q", v)
		}
		evalAs[bool](t, br, `(function(){ document.querySelector('`+rule+` .amodispatch-reminder-hours').value = '3, 1.5'; return true; })()`)
		br.click(t, ".amodispatch-save")
		br.waitText(t, root+" .amodispatch-status", "Настройки сохранены")

		s, err := b.Store().Settings(ctx, tn.acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := dispatch.Rule{PipelineID: tn.pipeline, TriggerStageIDs: []int64{tn.statusByIndex(3)},
			FoundStageID: tn.statusByIndex(0), DefaultChatID: second.ID}
		if len(s.Rules) != 1 || s.Rules[0].PipelineID != want.PipelineID || !slices.Equal(s.Rules[0].TriggerStageIDs, want.TriggerStageIDs) ||
			s.Rules[0].FoundStageID != want.FoundStageID || s.Rules[0].DefaultChatID != want.DefaultChatID {
			t.Fatalf("stored rules %+v, want [%+v]", s.Rules, want)
		}
		if !slices.Equal(s.OrderFieldIDs, []int64{addressField}) || s.ShowBudget || s.Language != "en" {
			t.Fatalf("stored settings %+v", s)
		}
		if s.ExecutorUsers[courier.ID] != tn.amoUser {
			t.Fatalf("executor map %v", s.ExecutorUsers)
		}
		if s.DigestChatID != second.ID {
			t.Fatalf("digest chat %d, want %d", s.DigestChatID, second.ID)
		}
		if r := s.Rules[0]; r.JobTimeFieldID != jobField || fmt.Sprint(r.ReminderOffsets) != "[3h0m0s 1h30m0s]" {
			t.Fatalf("stored reminders: field %d offsets %v", r.JobTimeFieldID, r.ReminderOffsets)
		}
		if r := s.Rules[0]; r.StatusStages[dispatch.OrderOnWay] != tn.statusByIndex(2) || len(r.StatusStages) != 1 ||
			fmt.Sprint(r.StatusButtons) != "[on_way done released]" || s.ContactPolicy != dispatch.ContactExecutorOnly {
			t.Fatalf("stored executor side: stages %v, buttons %v, contact policy %q", r.StatusStages, r.StatusButtons, s.ContactPolicy)
		}
		if l := s.Rules[0].Ladder; l != (dispatch.Ladder{BumpAfter: 20 * time.Minute, FallbackAfter: 45 * time.Minute, FallbackChatID: tn.group.ID,
			TaskAfter: 90 * time.Minute, ExpireAfter: 24 * time.Hour}) {
			t.Fatalf("stored ladder %+v", l)
		}

		// A value the backend refuses comes back as a readable error.
		evalAs[bool](t, br, fmt.Sprintf(`(function(){
			var s = document.querySelector('%s .amodispatch-found');
			var o = document.createElement('option'); o.value = '999999999'; o.textContent = 'gone'; s.appendChild(o); s.value = '999999999';
			return true; })()`, rule))
		br.click(t, ".amodispatch-save")
		br.waitText(t, root+" .amodispatch-status--error", "Настройки не сохранены")
		if s2, _ := b.Store().Settings(ctx, tn.acc.ID); s2.Rules[0].FoundStageID != tn.statusByIndex(0) {
			t.Fatalf("a refused save changed the stored rule: %+v", s2.Rules)
		}
		br.noScriptErrors(t)

		// A manager (not an account admin) is told who may change settings,
		// sees the linked groups, and neither the form nor the link code.
		manager := newWidgetPage(t, e, b, tn.acc, tn.amoUser)
		br.run(t, chromedp.Navigate(manager.url("advanced_settings", "ru", 0, "")))
		br.waitReady(t, root)
		br.waitText(t, root+" .amodispatch-admin-only", "только администратор аккаунта")
		if titles := br.texts(t, root+" .amodispatch-chat-title"); !slices.Contains(titles, tn.group.Title) {
			t.Fatalf("chat titles on the manager's page: %q", titles)
		}
		if n := evalAs[int](t, br, `document.querySelectorAll('.amodispatch-save, .amodispatch-rule, .amodispatch-startgroup, .amodispatch-link-command, .amodispatch-rotate-code, .amodispatch-executor-user').length`); n != 0 {
			t.Fatalf("the manager's page shows %d form or link elements", n)
		}
		if html := evalAs[string](t, br, `document.body.innerHTML`); strings.Contains(html, rotated.LinkCode) {
			t.Fatal("the manager's page holds the link code")
		}
		br.screenshot(t, kind, "#work-area-amodispatch", "advanced_settings_manager")
		br.noScriptErrors(t)

		// The install modal only points to the advanced page; its one
		// placeholder field is hidden.
		br.run(t, chromedp.Navigate(page.url("settings", "en", 0, "")))
		br.waitText(t, ".amodispatch-modal-hint", "advanced settings page")
		if visible := evalAs[bool](t, br, `$('input[name="info"]').is(':visible')`); visible {
			t.Fatal("the placeholder install field is visible")
		}
		br.screenshot(t, kind, "#widget_settings__modal", "settings_modal")
		br.noScriptErrors(t)
	})
}

// The deal card panel, opened by a manager (not an account admin): the
// manager sends this deal to another group, the
// order is posted there, an executor takes it in Telegram, and the panel
// names the executor.
func TestWidgetBrowserDealCard(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		br := newBrowser(t)
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 62000000, "widgetcard", "en", 7000)
		second := linkSecondGroup(t, e, b, tn, "Couriers: north")
		lead := tn.newLead(t, e, "Sofa delivery")

		page := newWidgetPage(t, e, b, tn.acc, tn.acc.ID+2)
		card := "#widgets_block .amodispatch-card"
		br.run(t, chromedp.Navigate(page.url("lcard", "en", lead.ID, lead.Name)))
		br.waitReady(t, card)
		br.waitText(t, card+" .amodispatch-order", "The order is not posted.")
		opts := br.texts(t, card+" .amodispatch-target-chat option")
		if len(opts) != 3 || !slices.Contains(opts, tn.group.Title) || !slices.Contains(opts, second.Title) || !strings.HasPrefix(opts[0], "Default") {
			t.Fatalf("chat options %q", opts)
		}
		br.screenshot(t, kind, "#widgets_block", "deal_card_not_posted")

		br.selectValue(t, card+" .amodispatch-target-chat", second.ID)
		br.waitText(t, card+" .amodispatch-status", "Group saved.")
		if got, err := b.Store().DealTarget(ctx, tn.acc.ID, lead.ID); err != nil || got != second.ID {
			t.Fatalf("deal target %d (%v), want %d", got, err, second.ID)
		}

		// The deal reaches the searching stage: the order goes to the chosen group.
		if err := e.amo.MoveLead(tn.acc.ID, lead.ID, tn.statusByIndex(1)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "order posted in the chosen group", func() bool { return len(orderPosts(e, second.ID)) == 1 })
		if n := len(orderPosts(e, tn.group.ID)); n != 0 {
			t.Fatalf("%d posts in the default group", n)
		}
		br.run(t, chromedp.Reload())
		br.waitReady(t, card)
		br.waitText(t, card+" .amodispatch-order", `Posted in "`+second.Title+`"`)
		br.screenshot(t, kind, "#widgets_block", "deal_card_posted")

		post := orderPosts(e, second.ID)[0]
		courier := e.tg.AddUser("Anna", "Smirnova", "anna_courier")
		e.tg.UserStartsBot(courier.ID, "")
		eventually(t, "executor registered", func() bool { x, err := b.Store().Executor(ctx, courier.ID); return err == nil && x.Started })
		var take string
		for _, btn := range buttonsOf(t, post) {
			if strings.Contains(btn.Text, "Take order") {
				take = btn.CallbackData
			}
		}
		if take == "" {
			t.Fatalf("no Take button: %+v", buttonsOf(t, post))
		}
		if _, err := e.tg.PressButton(second.ID, post.MessageID, courier.ID, take); err != nil {
			t.Fatal(err)
		}
		eventually(t, "order taken", func() bool {
			d, err := b.Store().ActiveOrder(ctx, tn.acc.ID, lead.ID)
			return err != nil || d.Status == dispatch.OrderTaken
		})
		// The executor has reminders ahead (as a plan made from the deal's
		// job time would be): the panel names the next one in the account's
		// time, whatever the browser's zone.
		taken, err := b.Store().LatestOrder(ctx, tn.acc.ID, lead.ID)
		if err != nil {
			t.Fatal(err)
		}
		jobAt := time.Now().Add(48 * time.Hour).Truncate(time.Minute)
		if err := b.Store().InTx(ctx, func(tx *store.Tx) error {
			_, _, _, err := tx.ReplacePlan(dispatch.ReminderPlan{AccountID: tn.acc.ID, OrderID: taken.ID, LeadID: lead.ID, JobAt: jobAt,
				TimeZone: "Asia/Yekaterinburg"}, dispatch.PlanSteps(jobAt, time.Now(), dispatch.DefaultReminderOffsets))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		br.run(t, chromedp.Reload())
		br.waitReady(t, card)
		br.waitText(t, card+" .amodispatch-order", "Taken by Anna Smirnova @anna_courier")
		br.waitText(t, card+" .amodispatch-next--reminder",
			"Reminder to the executor at "+jobAt.Add(-24*time.Hour).In(mustZone(t, "Asia/Yekaterinburg")).Format("15:04"))
		br.screenshot(t, kind, "#widgets_block", "deal_card_taken")
		br.noScriptErrors(t)

		// Another deal: Post now, then Withdraw, from the panel. The pipeline
		// now escalates, so the card names the next step.
		s, err := b.Store().Settings(ctx, tn.acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		s.Rules[0].Ladder = dispatch.Ladder{BumpAfter: 15 * time.Minute, TaskAfter: time.Hour}
		if err := b.Store().SaveSettings(ctx, s); err != nil {
			t.Fatal(err)
		}
		other := tn.newLead(t, e, "Piano move")
		br.run(t, chromedp.Navigate(page.url("lcard", "en", other.ID, other.Name)))
		br.waitReady(t, card)
		if n := len(br.texts(t, card+" .amodispatch-next-step")); n != 0 {
			t.Fatalf("a deal without an order shows %d next steps", n)
		}
		br.click(t, card+` .amodispatch-action[data-action="post"]`)
		eventually(t, "posted from the panel", func() bool { return len(orderPosts(e, tn.group.ID)) == 1 })
		br.waitText(t, card+" .amodispatch-status", "Done.")
		br.run(t, chromedp.Reload())
		br.waitReady(t, card)
		br.waitText(t, card+" .amodispatch-order", `Posted in "`+tn.group.Title+`"`)
		br.waitText(t, card+" .amodispatch-next-step", "Next: bump at ")
		if k := evalAs[string](t, br, `document.querySelector('`+card+` .amodispatch-next-step').getAttribute('data-kind')`); k != "bump" {
			t.Fatalf("next step kind %q", k)
		}
		br.click(t, card+` .amodispatch-action[data-action="withdraw"]`)
		br.waitText(t, card+" .amodispatch-order", "The order was withdrawn.")
		eventually(t, "order withdrawn", func() bool {
			_, err := b.Store().ActiveOrder(ctx, tn.acc.ID, other.ID)
			return err != nil
		})
		br.noScriptErrors(t)
	})
}

// The panel explains, in the user's language, when the account is not
// installed and when the backend cannot be reached.
func TestWidgetBrowserErrors(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		br := newBrowser(t)
		e := newEnv(t, kind)
		b := e.start()
		card := "#widgets_block .amodispatch-card"

		ghost := &fakeamocrm.Account{ID: 69000000, Subdomain: "ghost", Domain: "ghost.amocrm.ru"}
		page := newWidgetPage(t, e, b, ghost, 69000001)
		br.run(t, chromedp.Navigate(page.url("lcard", "ru", 123, "Сделка")))
		br.waitText(t, card+" .amodispatch-error", "Аккаунт не подключён к amoDispatch")

		// amoCRM revoked the tokens: the panel says to reinstall, not "unreachable".
		revoked := e.amo.AddAccount(fakeamocrm.AccountSpec{ID: 69100000, Subdomain: "revoked", Name: "Revoked LLC"})
		install(t, e, b, revoked.ID)
		if err := b.Store().SetAccountStatus(context.Background(), revoked.ID, dispatch.AccountRevoked); err != nil {
			t.Fatal(err)
		}
		gone := newWidgetPage(t, e, b, revoked, 69100001)
		br.run(t, chromedp.Navigate(gone.url("lcard", "ru", 123, "Сделка")))
		br.waitText(t, card+" .amodispatch-error", "отозвал у amoDispatch доступ")

		down := newWidgetPage(t, e, b, ghost, 69000001)
		down.apiBase = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		br.run(t, chromedp.Navigate(down.url("advanced_settings", "en", 0, "")))
		br.waitText(t, "#work-area-amodispatch .amodispatch-error", "The amoDispatch server is unreachable")
		br.screenshot(t, kind, "#work-area-amodispatch", "error_unreachable")
		// Retry asks again (and fails the same way).
		br.click(t, "#work-area-amodispatch .amodispatch-retry")
		br.waitText(t, "#work-area-amodispatch .amodispatch-error", "unreachable")
		br.noScriptErrors(t)
	})
}
