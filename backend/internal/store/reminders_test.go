package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// A rule's job-time field and offsets survive a save; nil offsets stay nil
// (the defaults).
func TestReminderSettingsRoundTrip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		a := install(t, db, 1)
		in := dispatch.Settings{AccountID: a.ID, Rules: []dispatch.Rule{
			{PipelineID: 10, TriggerStageIDs: []int64{101}, JobTimeFieldID: 601, ReminderOffsets: []time.Duration{3 * time.Hour, 90 * time.Minute}},
			{PipelineID: 20, TriggerStageIDs: []int64{201}, JobTimeFieldID: 602},
		}}
		if err := db.SaveSettings(ctx, in); err != nil {
			t.Fatal(err)
		}
		out, err := db.Settings(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r := out.Rules[0]; r.JobTimeFieldID != 601 || !slices.Equal(r.ReminderOffsets, in.Rules[0].ReminderOffsets) {
			t.Errorf("rule 10: %d %v", r.JobTimeFieldID, r.ReminderOffsets)
		}
		if r := out.Rules[1]; r.JobTimeFieldID != 602 || r.ReminderOffsets != nil {
			t.Errorf("rule 20: %d %v, want the defaults (nil)", r.JobTimeFieldID, r.ReminderOffsets)
		}
	})
}

// Of concurrent planners for one job time one makes the plan; a new time
// cancels it; a step is done once; a confirmation is recorded once.
func TestReminderPlanOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		jobAt := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
		plan := func(at time.Time) (dispatch.ReminderPlan, bool, error) {
			var (
				p    dispatch.ReminderPlan
				made bool
			)
			err := db.InTx(ctx, func(tx *store.Tx) error {
				var err error
				p, _, made, err = tx.ReplacePlan(dispatch.ReminderPlan{AccountID: 1, OrderID: "o1", LeadID: 5, JobAt: at, TimeZone: "Europe/Moscow"},
					dispatch.PlanSteps(at, at.Add(-48*time.Hour), dispatch.DefaultReminderOffsets))
				return err
			})
			return p, made, err
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			made int
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, m, err := plan(jobAt)
				if err != nil && !errors.Is(err, dispatch.ErrConflict) {
					t.Error(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if m {
					made++
				}
			}()
		}
		wg.Wait()
		if made != 1 {
			t.Fatalf("%d plans made for one job time, want 1", made)
		}
		first, err := db.LivePlan(ctx, "o1")
		if err != nil {
			t.Fatal(err)
		}
		if done, err := db.MarkStepDone(ctx, first.ID, dispatch.StepRemind, 24*time.Hour, 77); err != nil || !done {
			t.Fatalf("first mark: %v %v", done, err)
		}
		if done, err := db.MarkStepDone(ctx, first.ID, dispatch.StepRemind, 24*time.Hour, 78); err != nil || done {
			t.Fatalf("second mark: %v %v, want not done again", done, err)
		}
		if st, _, err := db.NextReminder(ctx, "o1"); err != nil || st.Offset != time.Hour {
			t.Fatalf("next reminder %v %v, want the hour-before one", st.Offset, err)
		}
		moved, m, err := plan(jobAt.Add(time.Hour))
		if err != nil || !m || moved.ID == first.ID {
			t.Fatalf("moved: %v %v", m, err)
		}
		if _, old, _ := db.ReminderStep(ctx, first.ID, dispatch.StepRemind, time.Hour); old.Live() {
			t.Error("the plan of the old time is still live")
		}
		for i, want := range []bool{true, false} {
			var confirmed bool
			err := db.InTx(ctx, func(tx *store.Tx) error {
				var err error
				_, confirmed, err = tx.ConfirmPlan("o1")
				return err
			})
			if err != nil || confirmed != want {
				t.Fatalf("confirmation %d: %v %v", i, confirmed, err)
			}
		}
	})
}
