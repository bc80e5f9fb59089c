package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

// jobTimeField adds a date_time deal field "Время работ" to the tenant's
// account through amoCRM's API, as an admin would, and maps it as the
// pipeline's job time with the default offsets.
func (tn *tenant) jobTimeField(t testing.TB, e *env, b *backend) int64 {
	t.Helper()
	tok := e.amo.IssueTokens(tn.acc.ID).AccessToken
	status, body := send(t, "POST", e.amo.URL()+"/api/v4/leads/custom_fields",
		[]byte(`[{"name":"Время работ","type":"date_time"}]`), "Authorization", "Bearer "+tok, "Content-Type", "application/json")
	if status != 200 {
		t.Fatalf("create the field: HTTP %d %s", status, body)
	}
	var created struct {
		Embedded struct {
			Fields []struct {
				ID int64 `json:"id"`
			} `json:"custom_fields"`
		} `json:"_embedded"`
	}
	if err := json.Unmarshal([]byte(body), &created); err != nil || len(created.Embedded.Fields) != 1 {
		t.Fatalf("created field: %v %s", err, body)
	}
	id := created.Embedded.Fields[0].ID
	// Mapped on the settings page: a text field is refused, the date_time
	// field kept with the default offsets.
	tok = widgetToken(t, b, tn.acc.ID, tn.acc.Subdomain, nil) // checked on the wall clock
	rule := func(field int64) string {
		// The ladder is switched off: a rule saved without one would get the
		// ladder's defaults, and these tests are about reminders alone.
		return fmt.Sprintf(`{"show_budget":true,"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d],"found_stage_id":%d,"default_chat_id":%d,"job_time_field_id":%d,`+
			`"ladder":{"bump_min":0,"fallback_min":0,"fallback_chat_id":0,"task_min":0,"expire_hours":0}}]}`,
			tn.pipeline, tn.statusByIndex(1), tn.statusByIndex(2), tn.group.ID, field)
	}
	if status, raw := widgetRaw(t, b, "PUT", "/api/widget/settings", tok, rule(tn.acc.ID+10)); status != 400 ||
		!strings.Contains(string(raw), "date or date-time") {
		t.Fatalf("a text field as the job time: HTTP %d %s", status, raw)
	}
	status, saved, _ := widgetCall(t, b, "PUT", "/api/widget/settings", tok, rule(id))
	if status != 200 {
		t.Fatalf("save settings: HTTP %d %v", status, saved)
	}
	r := saved["rules"].([]any)[0].(map[string]any)
	if r["job_time_field_id"] != float64(id) || r["reminder_offsets_min"] != nil {
		t.Fatalf("saved rule %v, want the field and the default offsets (null)", r)
	}
	return id
}

// setJobTime writes the deal's job time in amoCRM, as a manager does (the
// fake sends update_lead).
func setJobTime(t testing.TB, e *env, accountID, leadID, fieldID int64, at time.Time) {
	t.Helper()
	_, err := e.amo.UpdateLead(accountID, leadID, func(l *fakeamocrm.Lead) {
		for i, v := range l.CustomFieldsValues {
			if v.FieldID == fieldID {
				l.CustomFieldsValues = append(l.CustomFieldsValues[:i], l.CustomFieldsValues[i+1:]...)
				break
			}
		}
		l.CustomFieldsValues = append(l.CustomFieldsValues, fakeamocrm.CustomFieldValue{FieldID: fieldID,
			Values: []fakeamocrm.FieldValue{{Value: at.Unix()}}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// reminderTexts are the reminders the bot sent a user, oldest first.
func reminderTexts(e *env, userID int64) []string {
	var out []string
	for _, m := range reminders(e, userID, "") {
		out = append(out, m.Text)
	}
	return out
}

// reminders are the bot's reminders to a user about a deal ("": any).
func reminders(e *env, userID int64, deal string) []faketelegram.Message {
	var out []faketelegram.Message
	for _, m := range e.tg.Messages(userID) {
		if m.From != nil && m.From.ID == e.tg.Bot().ID && strings.Contains(m.Text, "Напоминание") && strings.Contains(m.Text, deal) {
			out = append(out, m)
		}
	}
	return out
}

// steady waits out River's promotion of scheduled jobs (every 5 s) and a
// margin, for a test that asserts something did not happen.
func steady() { time.Sleep(7 * time.Second) }

// The reminders through the real backend, River's scheduler and both fakes
// on a controlled clock, for two deals an executor took: the job time of
// one moved in amoCRM after the take moves its reminders (the old times
// send nothing); a reminder a day before and one an hour before, each once,
// with a restart of the backend between them; the deal card shows the next
// one; "Confirm" pressed in Telegram on one deal's reminder (and a forged
// press of the other's confirmation, which changes nothing); 30 minutes
// before the job time the unconfirmed deal gets one task and one note, the
// confirmed one none.
func TestRemindersBeforeTheJobTime(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		clock := newTestClock()
		e := newEnv(t, kind, withClock(clock), withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 44000000, "reminded", "ru", 4000)
		field := tn.jobTimeField(t, e, b)
		first := clock.Now().Add(48 * time.Hour).Truncate(time.Minute)
		moved := first.Add(36 * time.Hour)
		executor := e.tg.AddUser("Иван", "", "ivan_remind")
		e.tg.UserStartsBot(executor.ID, "")
		take := func(name string, at time.Time) (fakeamocrm.Lead, dispatch.Order) {
			lead := tn.newLead(t, e, name)
			setJobTime(t, e, tn.acc.ID, lead.ID, field, at)
			tn.toSearch(t, e, lead.ID)
			o := tn.postedOrder(t, b, lead.ID)
			posts := orderPosts(e, tn.group.ID)
			post := posts[len(posts)-1]
			if _, err := e.tg.PressButton(tn.group.ID, post.MessageID, executor.ID, buttonsOf(t, post)[1].CallbackData); err != nil {
				t.Fatal(err)
			}
			eventually(t, "reminders planned after the take of "+name, func() bool {
				p, err := b.Store().LivePlan(ctx, o.ID)
				return err == nil && p.JobAt.Equal(at)
			})
			return lead, o
		}
		lead, o := take("Сборка шкафа", first)
		leadB, oB := take("Покраска стен", moved)

		// The manager moves the first job a day and a half later.
		setJobTime(t, e, tn.acc.ID, lead.ID, field, moved)
		eventually(t, "reminders moved with the job time", func() bool {
			p, err := b.Store().LivePlan(ctx, o.ID)
			return err == nil && p.JobAt.Equal(moved)
		})
		// The old plan's day-before and hour-before times pass: nothing.
		clock.Advance(first.Add(-24*time.Hour).Sub(clock.Now()) + time.Second)
		steady()
		clock.Advance(first.Add(-time.Hour).Sub(clock.Now()) + time.Second)
		steady()
		if got := reminderTexts(e, executor.ID); len(got) != 0 {
			t.Fatalf("reminders for the old job time: %q", got)
		}

		// The day before the new time: one reminder each, with its buttons.
		clock.Advance(moved.Add(-24*time.Hour).Sub(clock.Now()) + time.Second)
		eventually(t, "the day-before reminders", func() bool { return len(reminderTexts(e, executor.ID)) == 2 })
		when := moved.In(mustZone(t, "Europe/Moscow")).Format("02.01.2006 в 15:04")
		rem, remB := reminders(e, executor.ID, "Сборка шкафа"), reminders(e, executor.ID, "Покраска стен")
		if len(rem) != 1 || len(remB) != 1 || !strings.Contains(rem[0].Text, when) {
			t.Fatalf("reminders %q, want one per deal with the job time %s", reminderTexts(e, executor.ID), when)
		}
		if got := buttonsOf(t, rem[0]); len(got) != 2 || got[0].CallbackData != "m:c"+o.ID || got[1].CallbackData != "m:r"+o.ID {
			t.Errorf("reminder buttons %+v, want Confirm and Release", got)
		}
		// The executor confirms the second deal in Telegram; a modified
		// client sends the first deal's confirmation on that message.
		if _, err := e.tg.PressButton(executor.ID, remB[0].MessageID, executor.ID, "m:c"+oB.ID); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the confirmation recorded and shown", func() bool {
			p, err := b.Store().LivePlan(ctx, oB.ID)
			r := reminders(e, executor.ID, "Покраска стен")
			return err == nil && p.ConfirmedAt != nil && len(r) == 1 && strings.Contains(r[0].Text, "Вы подтвердили")
		})
		if _, err := e.tg.ForgePress(executor.ID, remB[0].MessageID, executor.ID, "m:c"+o.ID); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the confirmation noted in the deal", func() bool {
			for _, n := range e.amo.Notes(tn.acc.ID, leadB.ID) {
				if strings.Contains(n.Text(), "подтвердил заказ") {
					return true
				}
			}
			return false
		})
		// The deal card names the next reminder, in the account's time (once
		// the sent one is recorded, just after Telegram took it).
		wantAt := moved.Add(-time.Hour).In(mustZone(t, "Europe/Moscow")).Format(time.RFC3339)
		var next map[string]any
		eventually(t, "the deal card's next reminder", func() bool {
			status, deal, _ := widgetCall(t, b, "GET", fmt.Sprintf("/api/widget/deals/%d", lead.ID), widgetToken(t, b, tn.acc.ID, tn.acc.Subdomain, nil), "")
			next, _ = deal["next_step"].(map[string]any)
			return status == 200 && next["kind"] == "reminder" && next["at"] == wantAt
		})

		// A restart between the reminders.
		b.stop(t)
		b = e.start()
		clock.Advance(moved.Add(-time.Hour).Sub(clock.Now()) + time.Second)
		eventually(t, "the hour-before reminders after a restart", func() bool { return len(reminderTexts(e, executor.ID)) == 4 })

		// No confirmation: one task for the responsible user and one note.
		clock.Advance(moved.Add(-30*time.Minute).Sub(clock.Now()) + time.Second)
		eventually(t, "a task for the missing confirmation", func() bool { return len(e.amo.Tasks(tn.acc.ID, lead.ID)) == 1 })
		steady()
		if n, nB := len(reminders(e, executor.ID, "Сборка шкафа")), len(reminders(e, executor.ID, "Покраска стен")); n != 2 || nB != 2 {
			t.Errorf("%d and %d reminders, want one per offset and deal", n, nB)
		}
		if p, _ := b.Store().LivePlan(ctx, o.ID); p.ConfirmedAt != nil {
			t.Error("the forged press confirmed the first deal")
		}
		if n := len(e.amo.Tasks(tn.acc.ID, leadB.ID)); n != 0 {
			t.Errorf("%d tasks for the confirmed deal", n)
		}
		tasks := e.amo.Tasks(tn.acc.ID, lead.ID)
		l, _ := e.amo.Lead(tn.acc.ID, lead.ID)
		if len(tasks) != 1 || tasks[0].ResponsibleUserID != l.ResponsibleUserID || !tasks[0].CompleteTill.Equal(moved) {
			t.Errorf("tasks %+v, want one for user %d due %v", tasks, l.ResponsibleUserID, moved)
		}
		notes := 0
		for _, n := range e.amo.Notes(tn.acc.ID, lead.ID) {
			if strings.Contains(n.Text(), "не подтвердил") {
				notes++
			}
		}
		if notes != 1 {
			t.Errorf("%d notes of the missing confirmation, want 1", notes)
		}
	})
}

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
