package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
)

// answered waits for the query's answer and returns it.
func answered(t testing.TB, e *env, q string) faketelegram.CallbackAnswer {
	t.Helper()
	eventually(t, "press answered", func() bool { return len(e.tg.CallbackAnswers(q)) == 1 })
	return e.tg.CallbackAnswers(q)[0]
}

// TestForgedPresses: a modified client sends order B's callback data on
// order A's post. Telegram passes that on, so only the pressed message's own
// keyboard proves the press. A press from a message the bot cannot access acts
// on the order but never touches that message.
func TestForgedPresses(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 49000000, "forged", "ru", 9000)
		var leads []fakeamocrm.Lead
		for _, name := range []string{"Заказ А", "Заказ Б", "Заказ В"} {
			l := tn.newLead(t, e, name)
			if err := e.amo.MoveLead(tn.acc.ID, l.ID, tn.statusByIndex(1)); err != nil {
				t.Fatal(err)
			}
			leads = append(leads, l)
		}
		var orders []dispatch.Order
		for _, l := range leads {
			orders = append(orders, tn.postedOrder(t, b, l.ID))
		}
		waitJobsIdle(t, b)
		postOf := func(o dispatch.Order) faketelegram.Message {
			m, ok := e.tg.Message(tn.group.ID, o.MessageID)
			if !ok {
				t.Fatalf("no post of order %s", o.ID)
			}
			return m
		}
		postA, postB := postOf(orders[0]), postOf(orders[1])
		btnB := buttonsOf(t, postB)

		forger := e.tg.AddUser("Подделыватель", "", "forger")
		e.tg.UserStartsBot(forger.ID, "")
		eventually(t, "forger greeted", func() bool { return len(botTexts(e, forger.ID)) == 1 })

		stale := i18n.T("ru", "cb.stale")
		for _, data := range []string{btnB[1].CallbackData, btnB[0].CallbackData} { // take, then phone
			q, err := e.tg.ForgePress(tn.group.ID, postA.MessageID, forger.ID, data)
			if err != nil {
				t.Fatal(err)
			}
			if a := answered(t, e, q); a.Text != stale || a.URL != "" {
				t.Fatalf("forged press %q answered %+v, want %q", data, a, stale)
			}
		}
		waitJobsIdle(t, b)
		if now := postOf(orders[0]); now.Text != postA.Text || string(now.ReplyMarkup) != string(postA.ReplyMarkup) || len(now.History) != 0 {
			t.Fatalf("order A's post changed: %q %s", now.Text, now.ReplyMarkup)
		}
		if now := postOf(orders[1]); len(now.History) != 0 {
			t.Fatalf("order B's post changed: %q", now.Text)
		}
		if o, _ := b.Store().LatestOrder(ctx, tn.acc.ID, leads[1].ID); o.Status != dispatch.OrderOpen || o.ExecutorID != 0 {
			t.Fatalf("order B after the forged take: %+v", o)
		}
		if n := len(backendLeadUpdates(e, tn.acc.ID, leads[1].ID)) + len(e.amo.Notes(tn.acc.ID, leads[1].ID)); n != 0 {
			t.Fatalf("a forged take wrote %d times to amoCRM", n)
		}
		if got := botTexts(e, forger.ID); len(got) != 1 {
			t.Fatalf("a forged phone press sent a private message: %q", got[1:])
		}

		// A press from a message the bot cannot access names order C but
		// points at B's post: C is taken, B's post is left alone (no copy
		// tidied), and C's own post shows its executor.
		taker := e.tg.AddUser("Недоступный", "", "inaccessible")
		e.tg.UserStartsBot(taker.ID, "")
		btnC := buttonsOf(t, postOf(orders[2]))
		q, err := e.tg.PressInaccessible(tn.group.ID, postB.MessageID, taker.ID, btnC[1].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		if a := answered(t, e, q); a.Text != i18n.T("ru", "cb.yours") {
			t.Fatalf("inaccessible press answered %+v", a)
		}
		eventually(t, "C's post shows its executor", func() bool { return strings.Contains(postOf(orders[2]).Text, "@inaccessible") })
		wroteBackOnce(t, e, b, tn.acc.ID, leads[2].ID)
		if now := postOf(orders[1]); len(now.History) != 0 || !slices.Equal(buttonsOf(t, now), btnB) {
			t.Fatalf("B's post was edited by a press on an inaccessible message: %q", now.Text)
		}
		if o, _ := b.Store().LatestOrder(ctx, tn.acc.ID, leads[1].ID); o.Status != dispatch.OrderOpen || o.MessageID != postB.MessageID {
			t.Fatalf("order B after the inaccessible press: %+v", o)
		}
	})
}

// forgetExecutor removes what the database knows of a Telegram user, as a
// restored database or a start the backend never saw would.
func forgetExecutor(t testing.TB, b *backend, telegramID int64) {
	t.Helper()
	if _, err := b.Store().SQL().ExecContext(context.Background(), fmt.Sprintf("DELETE FROM executors WHERE telegram_id = %d", telegramID)); err != nil {
		t.Fatal(err)
	}
}

// chatActionsTo counts the reachability questions asked about one user.
func chatActionsTo(e *env, userID int64) int {
	n := 0
	for _, c := range e.tg.Calls("sendChatAction") {
		if id, _ := c.Int("chat_id"); id == userID {
			n++
		}
	}
	return n
}

// TestPhoneToUnseenStarter: a user who started the bot where this database
// did not see it gets the contact privately at once, whether they ask for the
// phone or win the order; a user who never started it gets the start link,
// and pressing again does not ask Telegram again.
func TestPhoneToUnseenStarter(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 50000000, "unseen", "ru", 9500)
		var posts []faketelegram.Message
		for _, name := range []string{"Телефон", "Взять"} {
			l := tn.newLead(t, e, name)
			tn.toSearch(t, e, l.ID)
			o := tn.postedOrder(t, b, l.ID)
			m, _ := e.tg.Message(tn.group.ID, o.MessageID)
			posts = append(posts, m)
		}
		waitJobsIdle(t, b)
		startedUnseen := func(name string) faketelegram.User {
			u := e.tg.AddUser(name, "", strings.ToLower(name))
			e.tg.UserStartsBot(u.ID, "")
			eventually(t, name+" registered", func() bool { x, err := b.Store().Executor(ctx, u.ID); return err == nil && x.Started })
			forgetExecutor(t, b, u.ID)
			return u
		}
		hasContact := func(userID int64, also string) bool {
			for _, text := range botTexts(e, userID) {
				if strings.Contains(text, also) && strings.Contains(text, "client@unseen.test") {
					return true
				}
			}
			return false
		}

		asker := startedUnseen("Asker")
		q, err := e.tg.PressButton(tn.group.ID, posts[0].MessageID, asker.ID, buttonsOf(t, posts[0])[0].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		if a := answered(t, e, q); a.URL != "" || a.Text != i18n.T("ru", "cb.contact_sent") {
			t.Fatalf("unseen starter's phone press answered %+v", a)
		}
		eventually(t, "contact sent privately", func() bool { return hasContact(asker.ID, "") })
		if x, err := b.Store().Executor(ctx, asker.ID); err != nil || !x.Started {
			t.Fatalf("the probe's yes is not recorded: %+v %v", x, err)
		}

		winner := startedUnseen("Winner")
		q, err = e.tg.PressButton(tn.group.ID, posts[1].MessageID, winner.ID, buttonsOf(t, posts[1])[1].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		if a := answered(t, e, q); a.URL != "" || a.Text != i18n.T("ru", "cb.yours") {
			t.Fatalf("unseen starter's take answered %+v", a)
		}
		eventually(t, "winner's order and contact sent privately", func() bool { return hasContact(winner.ID, i18n.T("ru", "order.yours")) })

		stranger := e.tg.AddUser("Stranger", "", "stranger")
		for range 2 {
			q, err = e.tg.PressButton(tn.group.ID, posts[0].MessageID, stranger.ID, buttonsOf(t, posts[0])[0].CallbackData)
			if err != nil {
				t.Fatal(err)
			}
			if a := answered(t, e, q); !strings.Contains(a.URL, "?start=c") || a.Text != i18n.T("ru", "cb.open_bot") {
				t.Fatalf("a user who never started the bot must get the start link: %+v", a)
			}
		}
		if n := chatActionsTo(e, stranger.ID); n != 1 {
			t.Fatalf("Telegram asked %d times about a user it called unreachable, want 1", n)
		}
		waitJobsIdle(t, b)
		if got := botTexts(e, stranger.ID); len(got) != 0 {
			t.Fatalf("wrote to a user who never started the bot: %q", got)
		}
	})
}

// ageReveals moves a user's contact requests back in time, as a day passing would.
func ageReveals(t testing.TB, b *backend, kind dbtest.Kind, telegramID int64, by time.Duration) {
	t.Helper()
	q := "UPDATE contact_reveals SET requested_at = ? WHERE telegram_id = ?"
	if kind == dbtest.Postgres {
		q = "UPDATE contact_reveals SET requested_at = $1 WHERE telegram_id = $2"
	}
	if _, err := b.Store().SQL().ExecContext(context.Background(), q, time.Now().UTC().Add(-by), telegramID); err != nil {
		t.Fatal(err)
	}
}

// startToken is the payload of the start link a press was answered with.
func startToken(t testing.TB, a faketelegram.CallbackAnswer) string {
	t.Helper()
	_, token, ok := strings.Cut(a.URL, "?start=")
	if !ok {
		t.Fatalf("no start link in %+v", a)
	}
	return token
}

// TestStartLinkExpiresAndClosed: a "Get client phone" start link delivers the
// contact within a day and only while the order is open or taken.
func TestStartLinkExpiresAndClosed(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 51000000, "links", "ru", 9700)
		var (
			leads []fakeamocrm.Lead
			posts []faketelegram.Message
		)
		for _, name := range []string{"Старая ссылка", "Снятый заказ", "Свежая ссылка"} {
			l := tn.newLead(t, e, name)
			tn.toSearch(t, e, l.ID)
			o := tn.postedOrder(t, b, l.ID)
			m, _ := e.tg.Message(tn.group.ID, o.MessageID)
			leads, posts = append(leads, l), append(posts, m)
		}
		waitJobsIdle(t, b)
		askLink := func(u faketelegram.User, post faketelegram.Message) string {
			q, err := e.tg.PressButton(tn.group.ID, post.MessageID, u.ID, buttonsOf(t, post)[0].CallbackData)
			if err != nil {
				t.Fatal(err)
			}
			return startToken(t, answered(t, e, q))
		}
		lastText := func(u faketelegram.User, want string) func() bool {
			return func() bool { got := botTexts(e, u.ID); return len(got) > 0 && got[len(got)-1] == want }
		}
		noContact := func(u faketelegram.User) {
			t.Helper()
			waitJobsIdle(t, b)
			for _, text := range botTexts(e, u.ID) {
				if strings.Contains(text, "client@links.test") {
					t.Fatalf("contact sent to %s: %q", u.Username, text)
				}
			}
		}

		late := e.tg.AddUser("Late", "", "late")
		token := askLink(late, posts[0])
		ageReveals(t, b, kind, late.ID, dispatch.StartLinkTTL+time.Minute)
		e.tg.UserStartsBot(late.ID, token)
		eventually(t, "expired link answered", lastText(late, i18n.T("ru", "start.expired")))
		noContact(late)

		gone := e.tg.AddUser("Gone", "", "gone")
		token = askLink(gone, posts[1])
		if err := e.amo.MoveLead(tn.acc.ID, leads[1].ID, tn.statusByIndex(3)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "order withdrawn", func() bool {
			o, err := b.Store().LatestOrder(ctx, tn.acc.ID, leads[1].ID)
			return err == nil && o.Status == dispatch.OrderWithdrawn
		})
		e.tg.UserStartsBot(gone.ID, token)
		eventually(t, "closed order answered", lastText(gone, i18n.T("ru", "start.closed")))
		noContact(gone)

		// Pressing again renews an unsent link: the day runs from the last press.
		again := e.tg.AddUser("Again", "", "again")
		token = askLink(again, posts[2])
		ageReveals(t, b, kind, again.ID, dispatch.StartLinkTTL+time.Minute)
		if renewed := askLink(again, posts[2]); renewed != token {
			t.Fatalf("the second press gave another token: %q, %q", token, renewed)
		}
		e.tg.UserStartsBot(again.ID, token)
		eventually(t, "contact after the renewed link", func() bool {
			got := botTexts(e, again.ID)
			return len(got) > 0 && strings.Contains(got[len(got)-1], "client@links.test")
		})
	})
}

// TestLinkRepliesKeepTheGroupPace: the bot's answers to commands go through
// the same pace as posts, so a burst of /link in one group never meets
// Telegram's 429 (the fake enforces 20 messages a minute per group). The
// answers beyond the pace wait, stored, for the next minute.
func TestLinkRepliesKeepTheGroupPace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		b := e.start()
		ctx := context.Background()
		e.tg.EnableFloodControl(faketelegram.DefaultFloodLimits())
		admin := e.tg.AddUser("Admin", "", "burst_admin")
		g := e.tg.NewGroup("Burst")
		e.tg.AddBotToGroup(g.ID, admin.ID, "")
		const burst = 22
		for range burst {
			e.tg.SendGroupMessage(g.ID, admin.ID, "/link wrong-code")
		}
		sendsTo := func(status int) int {
			n := 0
			for _, c := range e.tg.Calls("sendMessage") {
				if id, _ := c.Int("chat_id"); id == g.ID && c.Status == status {
					n++
				}
			}
			return n
		}
		// About one a second (the chat's pace, bursts of three): 20 take ~18 s.
		eventuallyFor(t, 45*time.Second, "20 answers and the rest waiting", func() bool {
			n, err := b.Store().PendingUpdates(ctx)
			return len(botTexts(e, g.ID)) == 20 && err == nil && n == burst-20
		})
		if n := sendsTo(429); n != 0 {
			t.Fatalf("%d replies crossed the group's pace and got 429", n)
		}
		if got := botTexts(e, g.ID); got[0] != i18n.T("", "link.bad_code") {
			t.Fatalf("first reply %q", got[0])
		}
	})
}
