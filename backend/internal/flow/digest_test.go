package flow

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// The weekly digest goes out once, on Monday from 09:00 in the account's
// zone (the fake's Europe/Moscow), with the past week's figures: however
// many times (or replicas) the hourly check runs, and however often the
// sending job runs.
func TestWeeklyDigestOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		e := newEnv(t, kind)
		snd := &fakeSender{}
		e.f.o.Sender = snd
		s, err := e.db.Settings(ctx, e.accountID)
		if err != nil {
			t.Fatal(err)
		}
		s.DigestChatID = e.chatID
		if err := e.db.SaveSettings(ctx, s); err != nil {
			t.Fatal(err)
		}
		// An order posted and taken now, which the next Monday's digest covers.
		o := e.openOrder(t, 100)
		if res, err := e.f.Take(ctx, e.chatID, 100, o.ID, dispatch.Executor{TelegramID: 7001, FirstName: "Иван", Username: "ivan"}); err != nil || res.Outcome != Won {
			t.Fatalf("take: %+v %v", res, err)
		}
		msk, err := time.LoadLocation("Europe/Moscow")
		if err != nil {
			t.Fatal(err)
		}
		today := time.Now().In(msk)
		monday := time.Date(today.Year(), today.Month(), today.Day()+1, 0, 0, 0, 0, msk)
		for monday.Weekday() != time.Monday {
			monday = monday.AddDate(0, 0, 1)
		}
		var clock time.Time
		e.f.o.Now = func() time.Time { return clock }
		check := func(at time.Time) {
			t.Helper()
			clock = at
			if err := e.f.checkDigests(ctx); err != nil {
				t.Fatal(err)
			}
		}

		check(monday.Add(DigestHour*time.Hour - time.Minute)) // 08:59: not yet
		check(monday.AddDate(0, 0, -1).Add(12 * time.Hour))   // Sunday
		if n := e.jobs(t, SendDigestArgs{}.Kind()); n != 0 {
			t.Fatalf("%d digests queued before Monday 09:00", n)
		}
		for range 3 { // hourly checks, or replicas, on Monday morning
			check(monday.Add(DigestHour*time.Hour + 10*time.Minute))
		}
		check(monday.Add(15 * time.Hour))
		if n := e.jobs(t, SendDigestArgs{}.Kind()); n != 1 {
			t.Fatalf("%d digests queued on Monday, want 1", n)
		}
		args := SendDigestArgs{AccountID: e.accountID, Week: monday.Format(time.DateOnly)}
		for range 2 { // the job run again changes nothing
			if err := e.f.sendDigest(ctx, args); err != nil {
				t.Fatal(err)
			}
		}
		var digests []sent
		for _, m := range snd.sends {
			if strings.Contains(m.text, "📊") {
				digests = append(digests, m)
			}
		}
		if len(digests) != 1 || digests[0].chatID != e.chatID {
			t.Fatalf("digests sent: %+v", digests)
		}
		for _, want := range []string{monday.AddDate(0, 0, -7).Format("02.01") + "–" + monday.AddDate(0, 0, -1).Format("02.01"),
			"Опубликовано: 1 · взято: 1", "Больше всех взял(а): Иван (1)"} {
			if !strings.Contains(digests[0].text, want) {
				t.Errorf("digest lacks %q:\n%s", want, digests[0].text)
			}
		}

		// Without a digest chat, nothing is queued the Monday after.
		s.DigestChatID = 0
		if err := e.db.SaveSettings(ctx, s); err != nil {
			t.Fatal(err)
		}
		check(monday.AddDate(0, 0, 7).Add(10 * time.Hour))
		if n := e.jobs(t, SendDigestArgs{}.Kind()); n != 1 {
			t.Fatalf("%d digests queued, want still 1", n)
		}
	})
}
