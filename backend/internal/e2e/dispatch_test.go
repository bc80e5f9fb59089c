package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// tenant is one installed account with a linked group and dispatch settings.
type tenant struct {
	acc      *fakeamocrm.Account
	pipeline int64
	group    faketelegram.Chat
	contact  fakeamocrm.Contact
	amoUser  int64
	boss     int64 // Telegram user who linked the group
}

// linkCode is the account's current link code, as the admin's settings page
// shows it: a code is single-use, each link issues the next.
func (tn *tenant) linkCode(t testing.TB, b *backend) string {
	t.Helper()
	return linkCode(t, b.Store(), tn.acc.ID)
}

// linkCode is an account's current link code.
func linkCode(t testing.TB, db *store.DB, accountID int64) string {
	t.Helper()
	a, err := db.Account(context.Background(), accountID)
	if err != nil {
		t.Fatalf("link code of %d: %v", accountID, err)
	}
	return a.LinkCode
}

func pipelineSpec(id, base int64, lang string) fakeamocrm.Pipeline {
	names := map[string][]string{"ru": {"Новая", "Поиск исполнителя", "Исполнитель найден", "Отложено"},
		"en": {"New", "Searching", "Executor found", "Postponed"}}[lang]
	p := fakeamocrm.Pipeline{ID: id, Name: "Заказы", IsMain: true}
	for i, n := range names {
		p.Statuses = append(p.Statuses, fakeamocrm.Status{ID: base + int64(i+1), Name: n, Sort: (i + 1) * 10})
	}
	return p
}

// newTenant installs an account, links a group and saves dispatch settings.
func newTenant(t testing.TB, e *env, b *backend, id int64, sub, lang string, stageBase int64) *tenant {
	t.Helper()
	ctx := context.Background()
	p := pipelineSpec(id/1000, stageBase, lang)
	acc := e.amo.AddAccount(fakeamocrm.AccountSpec{ID: id, Subdomain: sub, Name: sub + " LLC", Language: lang,
		Pipelines: []fakeamocrm.Pipeline{p},
		Users:     []fakeamocrm.User{{ID: id + 1, Name: "Admin", IsAdmin: true}, {ID: id + 2, Name: "Courier Boss"}},
		LeadFields: []fakeamocrm.CustomField{
			{ID: id + 10, Name: "Адрес", Type: "text", Sort: 1},
			{ID: id + 11, Name: "Оплата", Type: "numeric", Sort: 2},
		}})
	code := install(t, e, b, acc.ID)
	boss := e.tg.AddUser("Boss", sub, "boss_"+sub)
	group := e.tg.NewGroup("Executors of " + sub)
	e.tg.AddBotToGroup(group.ID, boss.ID, code)
	eventually(t, "group linked", func() bool { c, err := b.Store().Chat(ctx, group.ID); return err == nil && c.AccountID == acc.ID })
	// The bot's confirmation is paced like every send and may leave after the
	// link is stored; a test that stages Telegram faults next must not have
	// the confirmation consume them.
	eventually(t, "link confirmed in the group", func() bool { return len(botTexts(e, group.ID)) > 0 })
	contact, err := e.amo.AddContact(acc.ID, fakeamocrm.Contact{Name: "Клиент " + sub,
		Phones: []fakeamocrm.FieldValue{{Value: "+7 (916) 555-12-34"}}, Emails: []fakeamocrm.FieldValue{{Value: "client@" + sub + ".test"}}})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Store().SaveSettings(ctx, dispatch.Settings{AccountID: acc.ID, ShowBudget: true,
		Rules: []dispatch.Rule{{PipelineID: p.ID, TriggerStageIDs: []int64{stageBase + 2}, FoundStageID: stageBase + 3, DefaultChatID: group.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	return &tenant{acc: acc, pipeline: p.ID, group: group, contact: contact, amoUser: id + 2, boss: boss.ID}
}

// newLead creates a deal in the first stage with the tenant's contact.
func (tn *tenant) newLead(t testing.TB, e *env, name string) fakeamocrm.Lead {
	t.Helper()
	l, err := e.amo.AddLead(tn.acc.ID, fakeamocrm.Lead{Name: name, Price: 15000, PipelineID: tn.pipeline,
		StatusID: tn.acc.Pipelines()[0].Statuses[0].ID,
		CustomFieldsValues: []fakeamocrm.CustomFieldValue{
			{FieldID: tn.acc.ID + 10, Values: []fakeamocrm.FieldValue{{Value: "ул. Ленина, 1 <подъезд 2> & домофон"}}},
			{FieldID: tn.acc.ID + 11, Values: []fakeamocrm.FieldValue{{Value: "2500"}}},
		},
		Contacts: []fakeamocrm.ContactLink{{ID: tn.contact.ID, IsMain: true}}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (tn *tenant) statusByIndex(i int) int64 { return tn.acc.Pipelines()[0].Statuses[i].ID }

// toSearch moves a deal to the tenant's search stage, as a manager does.
func (tn *tenant) toSearch(t testing.TB, e *env, leadID int64) {
	t.Helper()
	if err := e.amo.MoveLead(tn.acc.ID, leadID, tn.statusByIndex(1)); err != nil {
		t.Fatal(err)
	}
}

// postedOrder waits until the deal's order is posted and its message recorded.
func (tn *tenant) postedOrder(t testing.TB, b *backend, leadID int64) dispatch.Order {
	t.Helper()
	var o dispatch.Order
	eventually(t, fmt.Sprintf("deal %d posted and recorded", leadID), func() bool {
		var err error
		o, err = b.Store().ActiveOrder(context.Background(), tn.acc.ID, leadID)
		return err == nil && o.MessageID != 0
	})
	return o
}

// orderPosts are the bot's messages in a chat that carry or carried order buttons.
func orderPosts(e *env, chatID int64) []faketelegram.Message {
	var out []faketelegram.Message
	for _, m := range e.tg.Messages(chatID) {
		if m.From == nil || m.From.ID != e.tg.Bot().ID {
			continue
		}
		carried := strings.Contains(string(m.ReplyMarkup), `"t:`)
		for _, r := range m.History {
			carried = carried || strings.Contains(string(r.ReplyMarkup), `"t:`)
		}
		if carried {
			out = append(out, m)
		}
	}
	return out
}

type button struct {
	Text         string `json:"text"`
	CallbackData string `json:"callback_data"`
}

func buttonsOf(t testing.TB, m faketelegram.Message) []button {
	t.Helper()
	if len(m.ReplyMarkup) == 0 {
		return nil
	}
	var kb struct {
		InlineKeyboard [][]button `json:"inline_keyboard"`
	}
	if err := json.Unmarshal(m.ReplyMarkup, &kb); err != nil {
		t.Fatalf("reply_markup: %v", err)
	}
	var out []button
	for _, row := range kb.InlineKeyboard {
		out = append(out, row...)
	}
	return out
}

func TestDispatchFlowTwoAccounts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		ta := newTenant(t, e, b, 41000000, "alpha", "ru", 1000)
		tb := newTenant(t, e, b, 42000000, "beta", "en", 2000)

		leadA := ta.newLead(t, e, `Диван <b>"Честерфилд"</b> & кресло`)
		leadB := tb.newLead(t, e, "Sofa delivery")
		if err := e.amo.MoveLead(ta.acc.ID, leadA.ID, ta.statusByIndex(1)); err != nil {
			t.Fatal(err)
		}
		if err := e.amo.MoveLead(tb.acc.ID, leadB.ID, tb.statusByIndex(1)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "orders posted in both groups", func() bool {
			return len(orderPosts(e, ta.group.ID)) == 1 && len(orderPosts(e, tb.group.ID)) == 1
		})
		postA := orderPosts(e, ta.group.ID)[0]
		postB := orderPosts(e, tb.group.ID)[0]
		if postA.ParseMode != "HTML" || !strings.Contains(postA.RawText, "&lt;b&gt;") || !strings.Contains(postA.Text, `Диван <b>"Честерфилд"</b> & кресло`) {
			t.Fatalf("deal name not escaped in HTML post:\nraw=%s\ntext=%s", postA.RawText, postA.Text)
		}
		if !strings.Contains(postA.Text, "ул. Ленина, 1 <подъезд 2> & домофон") {
			t.Fatalf("custom field missing from the post: %s", postA.Text)
		}
		for _, secret := range []string{"916", "555-12-34", "client@", "Клиент"} {
			if strings.Contains(postA.Text, secret) || strings.Contains(postB.Text, secret) {
				t.Fatalf("client contact %q leaked into the group post", secret)
			}
		}
		btnA := buttonsOf(t, postA)
		btnB := buttonsOf(t, postB)
		if len(btnA) != 2 || !strings.Contains(btnA[0].Text, "Получить номер телефона клиента") || !strings.Contains(btnA[1].Text, "Забрать заказ") {
			t.Fatalf("Russian buttons: %+v", btnA)
		}
		if len(btnB) != 2 || !strings.Contains(btnB[0].Text, "Get client phone") || !strings.Contains(btnB[1].Text, "Take order") {
			t.Fatalf("English buttons: %+v", btnB)
		}
		// The post is visible a moment before its message id is recorded.
		eventually(t, "order A recorded as posted", func() bool {
			o, err := b.Store().ActiveOrder(ctx, ta.acc.ID, leadA.ID)
			return err == nil && o.Status == dispatch.OrderOpen
		})
		orderA, err := b.Store().ActiveOrder(ctx, ta.acc.ID, leadA.ID)
		if err != nil || orderA.ChatID != ta.group.ID || orderA.MessageID != postA.MessageID || orderA.Status != dispatch.OrderOpen {
			t.Fatalf("order A: %+v %v", orderA, err)
		}
		if _, err := b.Store().ActiveOrder(ctx, ta.acc.ID, leadB.ID); err == nil {
			t.Fatal("account A sees B's deal")
		}

		// The same webhook again (amoCRM retries) posts nothing new.
		if err := e.amo.ResendLast(ta.acc.ID); err != nil {
			t.Fatal(err)
		}
		// A deal entering a non-trigger stage posts nothing.
		other := ta.newLead(t, e, "Not searching")
		if err := e.amo.MoveLead(ta.acc.ID, other.ID, ta.statusByIndex(3)); err != nil {
			t.Fatal(err)
		}
		if err := e.amo.WaitDeliveries(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		waitJobsIdle(t, b)
		if n := len(orderPosts(e, ta.group.ID)); n != 1 {
			t.Fatalf("%d order posts in A after a duplicate webhook and a non-trigger move", n)
		}
		if n, _ := b.Store().CountOrders(ctx, ta.acc.ID); n != 1 {
			t.Fatalf("%d orders in A", n)
		}

		// A user who never started the bot asks for the phone: the answer
		// sends them to the bot, and the contact follows their /start.
		curious := e.tg.AddUser("Пётр", "Любопытный", "petr_l")
		q, err := e.tg.PressButton(ta.group.ID, postA.MessageID, curious.ID, btnA[0].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "phone answer", func() bool { return len(e.tg.CallbackAnswers(q)) == 1 })
		ans := e.tg.CallbackAnswers(q)[0]
		prefix := "https://t.me/" + botName + "?start="
		if !strings.HasPrefix(ans.URL, prefix) {
			t.Fatalf("answer for a user without a chat: %+v", ans)
		}
		e.tg.UserStartsBot(curious.ID, strings.TrimPrefix(ans.URL, prefix))
		eventually(t, "contact sent privately", func() bool { return len(botTexts(e, curious.ID)) == 1 })
		private := e.tg.Messages(curious.ID)
		var contactMsg faketelegram.Message
		for _, m := range private {
			if m.From != nil && m.From.ID == e.tg.Bot().ID {
				contactMsg = m
			}
		}
		if !strings.Contains(contactMsg.RawText, `href="tel:+79165551234"`) || !strings.Contains(contactMsg.Text, "client@alpha.test") {
			t.Fatalf("private contact message: %s", contactMsg.RawText)
		}

		// 50 executors press "Take order" at the same moment.
		const n = 50
		users := make([]faketelegram.User, n)
		for i := range users {
			users[i] = e.tg.AddUser(fmt.Sprintf("Исполнитель%d", i), "", fmt.Sprintf("exec_%d", i))
			if i%2 == 0 {
				e.tg.UserStartsBot(users[i].ID, "")
			}
		}
		eventually(t, "executors registered", func() bool {
			x, err := b.Store().Executor(ctx, users[n-2].ID)
			return err == nil && x.Started
		})
		// Map every executor to the amoCRM user, so whoever wins is mapped.
		s, _ := b.Store().Settings(ctx, ta.acc.ID)
		s.ExecutorUsers = map[int64]int64{}
		for _, u := range users {
			s.ExecutorUsers[u.ID] = ta.amoUser
		}
		if err := b.Store().SaveSettings(ctx, s); err != nil {
			t.Fatal(err)
		}
		queries := make([]string, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range users {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				q, err := e.tg.PressButton(ta.group.ID, postA.MessageID, users[i].ID, btnA[1].CallbackData)
				if err != nil {
					t.Error(err)
				}
				queries[i] = q
			}(i)
		}
		close(start)
		wg.Wait()
		eventually(t, "every press answered", func() bool {
			for _, q := range queries {
				if len(e.tg.CallbackAnswers(q)) != 1 {
					return false
				}
			}
			return true
		})
		winners, winner := 0, -1
		for i, q := range queries {
			a := e.tg.CallbackAnswers(q)[0]
			switch {
			case strings.Contains(a.Text, "Заказ ваш"):
				winners++
				winner = i
			case strings.Contains(a.Text, "уже забрали"):
			default:
				t.Fatalf("unexpected answer %q", a.Text)
			}
		}
		if winners != 1 {
			t.Fatalf("%d winners", winners)
		}
		w := users[winner]
		order, _ := b.Store().Order(ctx, ta.acc.ID, orderA.ID)
		if order.Status != dispatch.OrderTaken || order.ExecutorID != w.ID {
			t.Fatalf("stored order: %+v", order)
		}

		// The group post names the executor and loses its buttons.
		eventually(t, "group post edited", func() bool {
			m, _ := e.tg.Message(ta.group.ID, postA.MessageID)
			return strings.Contains(m.Text, "@"+w.Username) && len(buttonsOf(t, m)) == 0
		})
		m, _ := e.tg.Message(ta.group.ID, postA.MessageID)
		if !strings.Contains(m.Text, "Исполнитель найден") {
			t.Fatalf("edited post: %s", m.Text)
		}

		// amoCRM: exactly one lead update with field, stage and responsible; one note.
		eventually(t, "deal updated and noted", func() bool {
			return len(backendLeadUpdates(e, ta.acc.ID, leadA.ID)) >= 1 && len(e.amo.Notes(ta.acc.ID, leadA.ID)) >= 1
		})
		waitJobsIdle(t, b)
		ups := backendLeadUpdates(e, ta.acc.ID, leadA.ID)
		if len(ups) != 1 {
			t.Fatalf("%d lead updates, want 1", len(ups))
		}
		after := ups[0].After
		if after.StatusID != ta.statusByIndex(2) || after.ResponsibleUserID != ta.amoUser {
			t.Fatalf("lead after update: status %d responsible %d", after.StatusID, after.ResponsibleUserID)
		}
		acc, _ := b.Store().Account(ctx, ta.acc.ID)
		fieldText := fieldValue(after, acc.ExecutorFieldID)
		if !strings.Contains(fieldText, w.FirstName) || !strings.Contains(fieldText, "@"+w.Username) || !strings.Contains(fieldText, fmt.Sprint(w.ID)) {
			t.Fatalf("executor field = %q", fieldText)
		}
		// One note for the take, and one per group member who got the
		// client's contact before it (Пётр asked above).
		var taken, contacts int
		for _, n := range e.amo.Notes(ta.acc.ID, leadA.ID) {
			switch {
			case strings.Contains(n.Text(), "Исполнитель найден") && strings.Contains(n.Text(), "@"+w.Username):
				taken++
			case strings.HasPrefix(n.Text(), "Пётр Любопытный (@petr_l) запросил контакт клиента, "):
				contacts++
			}
		}
		if taken != 1 || contacts != 1 || len(e.amo.Notes(ta.acc.ID, leadA.ID)) != 2 {
			t.Fatalf("notes: %+v, want one for the take and one for Пётр's contact", e.amo.Notes(ta.acc.ID, leadA.ID))
		}
		// Our own stage move came back as a webhook: no new order, round closed.
		if n := len(orderPosts(e, ta.group.ID)); n != 1 {
			t.Fatalf("the backend's own stage move re-posted (%d posts)", n)
		}
		if _, err := b.Store().ActiveOrder(ctx, ta.acc.ID, leadA.ID); err == nil {
			t.Fatal("order still active after the deal moved on")
		}

		// The curious user presses the phone button again: taken by someone else.
		q2, _ := e.tg.PressButton(ta.group.ID, postA.MessageID, curious.ID, btnA[0].CallbackData)
		if q2 != "" {
			t.Fatal("buttons were removed; pressing must not be possible")
		}

		// Nothing secret or personal reached the logs (they ran at debug level).
		logs := e.logs.String()
		secrets := map[string]string{"bot token": botToken, "client secret": clientSecret, "client phone": "555-12-34",
			"client phone digits": "79165551234", "client e-mail": "client@alpha.test"}
		for _, acc := range []*fakeamocrm.Account{ta.acc, tb.acc} {
			for i, p := range e.amo.Tokens(acc.ID) {
				secrets[fmt.Sprintf("access token %d of %d", i, acc.ID)] = p.AccessToken
				secrets[fmt.Sprintf("refresh token %d of %d", i, acc.ID)] = p.RefreshToken
			}
			hook := e.amo.Webhooks(acc.ID)[0].Destination
			secrets[fmt.Sprintf("webhook secret of %d", acc.ID)] = hook[strings.LastIndex(hook, "/")+1:]
		}
		for what, v := range secrets {
			if v != "" && strings.Contains(logs, v) {
				t.Errorf("%s found in the logs", what)
			}
		}

		// Account B's order is untouched by A's take.
		if o, _ := b.Store().ActiveOrder(ctx, tb.acc.ID, leadB.ID); o.Status != dispatch.OrderOpen {
			t.Fatalf("B's order: %+v", o)
		}
		if n := len(e.amo.LeadUpdates(tb.acc.ID)); n != 0 {
			t.Fatalf("account B got %d lead updates", n)
		}
	})
}

// backendLeadUpdates are the PATCHes of one lead (all made through the API,
// i.e. by the backend).
func backendLeadUpdates(e *env, accountID, leadID int64) []fakeamocrm.LeadUpdate {
	var out []fakeamocrm.LeadUpdate
	for _, u := range e.amo.LeadUpdates(accountID) {
		if u.LeadID == leadID {
			out = append(out, u)
		}
	}
	return out
}

func fieldValue(l fakeamocrm.Lead, fieldID int64) string {
	for _, f := range l.CustomFieldsValues {
		if f.FieldID == fieldID && len(f.Values) > 0 {
			return fmt.Sprint(f.Values[0].Value)
		}
	}
	return ""
}

// wroteBackOnce waits for the taken deal's update and note in amoCRM, lets
// every job finish, and checks there is exactly one of each.
func wroteBackOnce(t testing.TB, e *env, b *backend, accountID, leadID int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("deal %d updated and noted", leadID), func() bool {
		return len(backendLeadUpdates(e, accountID, leadID)) >= 1 && len(e.amo.Notes(accountID, leadID)) >= 1
	})
	waitJobsIdle(t, b)
	if n := len(backendLeadUpdates(e, accountID, leadID)); n != 1 {
		t.Fatalf("%d updates of deal %d, want 1", n, leadID)
	}
	if n := len(e.amo.Notes(accountID, leadID)); n != 1 {
		t.Fatalf("%d notes on deal %d, want 1", n, leadID)
	}
}

// waitJobsIdle waits until no job is queued or running.
func waitJobsIdle(t testing.TB, b *backend) {
	t.Helper()
	eventually(t, "jobs idle", func() bool {
		n, err := b.Flow().PendingJobs(context.Background())
		return err == nil && n == 0
	})
}
