package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// The whole loop works on a controllable clock hours ahead of the wall
// clock: the base for tests of timers (escalation, reminders) that must not
// wait real minutes.
func TestDispatchOnAControlledClock(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		clock := newTestClock()
		e := newEnv(t, kind, withClock(clock), withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		tn := newTenant(t, e, b, 43000000, "clocked", "ru", 3000)
		clock.Advance(3 * time.Hour)

		lead := tn.newLead(t, e, "Доставка")
		tn.toSearch(t, e, lead.ID)
		o := tn.postedOrder(t, b, lead.ID)
		if got := e.tg.Messages(tn.group.ID); got[len(got)-1].Date != clock.Now().Unix() {
			t.Fatalf("the fake's message date %d is not the controlled clock's %d", got[len(got)-1].Date, clock.Now().Unix())
		}
		post := orderPosts(e, tn.group.ID)[0]
		executor := e.tg.AddUser("Иван", "", "ivan_clock")
		e.tg.UserStartsBot(executor.ID, "")
		if _, err := e.tg.PressButton(tn.group.ID, post.MessageID, executor.ID, buttonsOf(t, post)[1].CallbackData); err != nil {
			t.Fatal(err)
		}
		eventually(t, "order taken", func() bool {
			got, err := b.Store().Order(context.Background(), tn.acc.ID, o.ID)
			return err == nil && got.Status == dispatch.OrderTaken
		})
		eventually(t, "executor note in amoCRM", func() bool {
			for _, n := range e.amo.Notes(tn.acc.ID, lead.ID) {
				if strings.Contains(n.Text(), "ivan_clock") {
					return true
				}
			}
			return false
		})
	})
}
