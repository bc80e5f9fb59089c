package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
)

// cardOf waits for the bot's message to a user whose keyboard (or text)
// satisfies ok, and returns it.
func cardOf(t testing.TB, e *env, userID int64, what string, ok func(faketelegram.Message) bool) faketelegram.Message {
	t.Helper()
	var card faketelegram.Message
	eventually(t, what, func() bool {
		for _, m := range e.tg.Messages(userID) {
			if m.From != nil && m.From.ID == e.tg.Bot().ID && ok(m) {
				card = m
				return true
			}
		}
		return false
	})
	return card
}

func dataOf(t testing.TB, m faketelegram.Message, prefix string) string {
	t.Helper()
	for _, b := range buttonsOf(t, m) {
		if strings.HasPrefix(b.CallbackData, prefix) {
			return b.CallbackData
		}
	}
	t.Fatalf("no %q button on %q (%s)", prefix, m.Text, m.ReplyMarkup)
	return ""
}

// The executor's side over HTTP, through both fakes: the take's private card
// carries the status buttons; "on my way" pressed again and again (and by a
// stranger) moves the deal once and writes one note; the release, confirmed
// in the card, returns the deal to the search with its responsible user and
// no executor, marks the group post, and posts the deal again once.
func TestExecutorStatusesAndRelease(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 51000000, "statuses", "ru", 9100)
		onWay := tn.statusByIndex(3)
		s, err := b.Store().Settings(ctx, tn.acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		s.Rules[0].StatusStages = map[dispatch.OrderStatus]int64{dispatch.OrderOnWay: onWay}
		if err := b.Store().SaveSettings(ctx, s); err != nil {
			t.Fatal(err)
		}
		ivan := e.tg.AddUser("Иван", "Петров", "ivan")
		e.tg.UserStartsBot(ivan.ID, "")
		petr := e.tg.AddUser("Пётр", "", "petr")
		e.tg.UserStartsBot(petr.ID, "")
		eventually(t, "executors greeted", func() bool { return len(botTexts(e, ivan.ID)) == 1 && len(botTexts(e, petr.ID)) == 1 })

		l := tn.newLead(t, e, "Доставка дивана")
		tn.toSearch(t, e, l.ID)
		o := tn.postedOrder(t, b, l.ID)
		post, _ := e.tg.Message(tn.group.ID, o.MessageID)
		q, err := e.tg.PressButton(tn.group.ID, o.MessageID, ivan.ID, dataOf(t, post, "t:"))
		if err != nil {
			t.Fatal(err)
		}
		answered(t, e, q)
		card := cardOf(t, e, ivan.ID, "the executor's card with status buttons", func(m faketelegram.Message) bool {
			return strings.Contains(string(m.ReplyMarkup), `"s:w`)
		})
		wroteBackOnce(t, e, b, tn.acc.ID, l.ID)
		onWayData := dataOf(t, card, "s:w")

		// A stranger's press (here from a message the bot cannot see, so no
		// keyboard vouches for it) changes nothing.
		greeting := e.tg.Messages(petr.ID)[0]
		q, err = e.tg.PressInaccessible(petr.ID, greeting.MessageID, petr.ID, onWayData)
		if err != nil {
			t.Fatal(err)
		}
		if a := answered(t, e, q); a.Text != i18n.T("ru", "cb.not_yours") {
			t.Fatalf("a stranger's press answered %q", a.Text)
		}
		// The executor presses, and the same press arrives twice more.
		q, err = e.tg.PressButton(ivan.ID, card.MessageID, ivan.ID, onWayData)
		if err != nil {
			t.Fatal(err)
		}
		if a := answered(t, e, q); a.Text != i18n.T("ru", "cb.status_saved") {
			t.Fatalf("on the way answered %q", a.Text)
		}
		for range 2 {
			q, err := e.tg.PressInaccessible(ivan.ID, card.MessageID, ivan.ID, onWayData)
			if err != nil {
				t.Fatal(err)
			}
			if a := answered(t, e, q); a.Text != i18n.T("ru", "cb.status_already") {
				t.Fatalf("a repeated press answered %q", a.Text)
			}
		}
		card = cardOf(t, e, ivan.ID, "the card shows the status", func(m faketelegram.Message) bool {
			return m.MessageID == card.MessageID && strings.Contains(m.Text, "Статус: в пути")
		})
		waitJobsIdle(t, b)
		if strings.Contains(string(card.ReplyMarkup), `"s:w`) || !strings.Contains(string(card.ReplyMarkup), `"s:d`) {
			t.Errorf("card buttons after on the way: %s", card.ReplyMarkup)
		}
		if n := len(backendLeadUpdates(e, tn.acc.ID, l.ID)); n != 2 {
			t.Errorf("%d PATCHes of the deal, want the take's and one for on the way", n)
		}
		lead, _ := e.amo.Lead(tn.acc.ID, l.ID)
		if lead.StatusID != onWay {
			t.Errorf("deal in stage %d, want %d", lead.StatusID, onWay)
		}
		statusNotes := 0
		for _, n := range e.amo.Notes(tn.acc.ID, l.ID) {
			if strings.HasPrefix(n.Text(), "Иван Петров (@ivan): в пути, ") {
				statusNotes++
			}
		}
		if statusNotes != 1 {
			t.Errorf("%d on-the-way notes, want 1: %v", statusNotes, e.amo.Notes(tn.acc.ID, l.ID))
		}
		if o, _ := b.Store().OrderByID(ctx, o.ID); o.Status != dispatch.OrderOnWay {
			t.Errorf("order %s after the echo of the move, want on_way", o.Status)
		}

		// Release: asked, confirmed, done once.
		q, err = e.tg.PressButton(ivan.ID, card.MessageID, ivan.ID, dataOf(t, card, "s:r"))
		if err != nil {
			t.Fatal(err)
		}
		if a := answered(t, e, q); a.Text != i18n.T("ru", "cb.release_ask") {
			t.Fatalf("release answered %q", a.Text)
		}
		card = cardOf(t, e, ivan.ID, "the release question", func(m faketelegram.Message) bool {
			return m.MessageID == card.MessageID && strings.Contains(string(m.ReplyMarkup), `"s:R`)
		})
		q, err = e.tg.PressButton(ivan.ID, card.MessageID, ivan.ID, dataOf(t, card, "s:R"))
		if err != nil {
			t.Fatal(err)
		}
		if a := answered(t, e, q); a.Text != i18n.T("ru", "cb.released") {
			t.Fatalf("confirmation answered %q", a.Text)
		}
		var next dispatch.Order
		eventually(t, "the deal posted again", func() bool {
			next, err = b.Store().ActiveOrder(ctx, tn.acc.ID, l.ID)
			return err == nil && next.ID != o.ID && next.MessageID != 0
		})
		waitJobsIdle(t, b)
		if posts := orderPosts(e, tn.group.ID); len(posts) != 2 {
			t.Errorf("%d order posts in the group, want the first and one new", len(posts))
		}
		old, _ := e.tg.Message(tn.group.ID, o.MessageID)
		if !strings.Contains(old.Text, i18n.T("ru", "order.released")) || len(old.ReplyMarkup) != 0 {
			t.Errorf("the first post reads %q %s, want \"executor released\" without buttons", old.Text, old.ReplyMarkup)
		}
		fresh, _ := e.tg.Message(tn.group.ID, next.MessageID)
		if len(buttonsOf(t, fresh)) != 2 {
			t.Errorf("the new post's buttons %s, want phone and take", fresh.ReplyMarkup)
		}
		acc, _ := b.Store().Account(ctx, tn.acc.ID)
		lead, _ = e.amo.Lead(tn.acc.ID, l.ID)
		if lead.StatusID != tn.statusByIndex(1) || lead.ResponsibleUserID != l.ResponsibleUserID || fieldValue(lead, acc.ExecutorFieldID) != "" {
			t.Errorf("deal in stage %d for user %d, executor %q; want the search stage %d for user %d, no executor",
				lead.StatusID, lead.ResponsibleUserID, fieldValue(lead, acc.ExecutorFieldID), tn.statusByIndex(1), l.ResponsibleUserID)
		}
		released := 0
		for _, n := range e.amo.Notes(tn.acc.ID, l.ID) {
			if strings.Contains(n.Text(), "Иван Петров (@ivan) отказался от заказа") {
				released++
			}
		}
		if released != 1 {
			t.Errorf("%d release notes, want 1", released)
		}
		card, _ = e.tg.Message(ivan.ID, card.MessageID)
		if !strings.Contains(card.Text, i18n.T("ru", "card.released")) || len(card.ReplyMarkup) != 0 {
			t.Errorf("the card reads %q %s after the release", card.Text, card.ReplyMarkup)
		}
	})
}

// The deal and the policy over HTTP: with "only the executor" the post has
// the take button alone; the deal renamed before the take edits the post; the
// take brings the contact; the deal won by the manager afterwards tells the
// executor once and takes the card's buttons away.
func TestDealChangesReachTheExecutor(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 52000000, "changes", "ru", 9200)
		s, err := b.Store().Settings(ctx, tn.acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		s.ContactPolicy = dispatch.ContactExecutorOnly
		if err := b.Store().SaveSettings(ctx, s); err != nil {
			t.Fatal(err)
		}
		ivan := e.tg.AddUser("Иван", "Петров", "ivan")
		e.tg.UserStartsBot(ivan.ID, "")
		eventually(t, "executor greeted", func() bool { return len(botTexts(e, ivan.ID)) == 1 })

		l := tn.newLead(t, e, "Доставка шкафа")
		tn.toSearch(t, e, l.ID)
		o := tn.postedOrder(t, b, l.ID)
		post, _ := e.tg.Message(tn.group.ID, o.MessageID)
		if btns := buttonsOf(t, post); len(btns) != 1 || !strings.HasPrefix(btns[0].CallbackData, "t:") {
			t.Fatalf("post buttons %s, want only Take", post.ReplyMarkup)
		}
		// Renamed before the take: the post follows, keeping its button.
		if _, err := e.amo.UpdateLead(tn.acc.ID, l.ID, func(l *fakeamocrm.Lead) { l.Name = "Доставка двух шкафов" }); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the post renamed", func() bool {
			m, _ := e.tg.Message(tn.group.ID, o.MessageID)
			return strings.Contains(m.Text, "Доставка двух шкафов") && len(buttonsOf(t, m)) == 1
		})
		waitJobsIdle(t, b)
		if m, _ := e.tg.Message(tn.group.ID, o.MessageID); len(m.History) != 1 {
			t.Errorf("the post was edited %d times, want 1", len(m.History))
		}
		// The take brings the contact.
		q, err := e.tg.PressButton(tn.group.ID, o.MessageID, ivan.ID, buttonsOf(t, post)[0].CallbackData)
		if err != nil {
			t.Fatal(err)
		}
		answered(t, e, q)
		card := cardOf(t, e, ivan.ID, "the card with the contact", func(m faketelegram.Message) bool {
			return strings.Contains(m.Text, "555-12-34") && strings.Contains(string(m.ReplyMarkup), `"s:w`)
		})
		wroteBackOnce(t, e, b, tn.acc.ID, l.ID)
		// Won by the manager: the executor is told once, the card's buttons go.
		if err := e.amo.MoveLead(tn.acc.ID, l.ID, dispatch.StageWon); err != nil {
			t.Fatal(err)
		}
		notice := i18n.T("ru", "notice.ended", l.ID)
		eventually(t, "the executor told", func() bool {
			return slices.Contains(botTexts(e, ivan.ID), notice)
		})
		waitJobsIdle(t, b)
		n := 0
		for _, text := range botTexts(e, ivan.ID) {
			if text == notice {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the executor was told %d times, want 1", n)
		}
		card, _ = e.tg.Message(ivan.ID, card.MessageID)
		if len(card.ReplyMarkup) != 0 || !strings.Contains(card.Text, i18n.T("ru", "card.ended")) {
			t.Errorf("the card after the deal was won: %q %s", card.Text, card.ReplyMarkup)
		}
		if o, _ := b.Store().OrderByID(ctx, o.ID); o.Status != dispatch.OrderEnded {
			t.Errorf("order %s, want ended", o.Status)
		}
		if n := len(orderPosts(e, tn.group.ID)); n != 1 {
			t.Errorf("%d posts, want 1", n)
		}
	})
}
