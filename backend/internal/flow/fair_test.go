package flow

import (
	"context"
	"errors"
	"testing"

	"github.com/riverqueue/river/rivertype"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
)

// Every job an order's life queues names its account, so the fair share
// caps posts, edits and write-backs too, not only the jobs that read deals.
func TestEveryJobNamesItsAccount(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e, o, _, _ := statusEnv(t, kind) // a post taken: edits, write-backs, the contact
		ctx := context.Background()
		if _, err := e.f.StatusPress(ctx, string(codeOnWay)+o.ID, user(execMapped)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.f.StatusPress(ctx, string(codeReleaseYes)+o.ID, user(execMapped)); err != nil {
			t.Fatal(err)
		}
		if err := e.f.releaseLead(ctx, ReleaseLeadArgs{EventID: eventID(t, e, o.ID, "released")}); err != nil {
			t.Fatal(err)
		}
		if err := e.f.resume(ctx, e.accountID); err != nil { // the new post, queued again
			t.Fatal(err)
		}
		query := `SELECT kind, args FROM river_job`
		if kind == dbtest.SQLite {
			query = `SELECT kind, json(args) FROM river_job` // River keeps JSONB there
		}
		rows, err := e.db.SQL().QueryContext(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		exempt := map[string]bool{ReconcileArgs{}.Kind(): true, ChoreArgs{}.Kind(): true, SendMineArgs{}.Kind(): true}
		seen := map[string]bool{}
		for rows.Next() {
			var k string
			var args []byte
			if err := rows.Scan(&k, &args); err != nil {
				t.Fatal(err)
			}
			seen[k] = true
			if got := jobAccount(&rivertype.JobRow{Kind: k, EncodedArgs: args}); got != e.accountID && !exempt[k] {
				t.Errorf("%s job %s is attributed to account %d, want %d", k, args, got, e.accountID)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"post_order", "edit_taken", "amo_update_lead", "amo_add_note", "edit_card", "amo_event_write", "amo_release_lead", "edit_released"} {
			if !seen[k] {
				t.Errorf("no %s job queued: the test no longer covers it", k)
			}
		}
	})
}

// The share is held per account: a third job of an account running two
// (of eight workers) is snoozed, another account's job runs.
func TestFairShareCapsAnAccount(t *testing.T) {
	s := newFairShare(8)
	job := func(args string) *rivertype.JobRow {
		return &rivertype.JobRow{Kind: "post_order", EncodedArgs: []byte(args)}
	}
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	for range 2 {
		go func() {
			_ = s.Work(context.Background(), job(`{"account_id":7,"order_id":"a"}`), func(context.Context) error {
				started <- struct{}{}
				<-release
				return nil
			})
		}()
	}
	<-started
	<-started
	err := s.Work(context.Background(), job(`{"account_id":7,"order_id":"b"}`), func(context.Context) error { return nil })
	var snooze *rivertype.JobSnoozeError
	if !errors.As(err, &snooze) {
		t.Fatalf("a third job of the account: %v, want a snooze", err)
	}
	ran := false
	if err := s.Work(context.Background(), job(`{"account_id":8,"order_id":"c"}`), func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("another account's job: ran %v, %v", ran, err)
	}
	close(release)
}
