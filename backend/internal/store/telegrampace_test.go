package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// Sends booked through one handle count for another (a restarted process or
// a replica): a window full in the database refuses the next send with the
// time until it frees; a hold refuses its chat, or every chat for scope 0.
func TestTelegramPace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		db := dbtest.Open(t, kind, nil)
		ctx := context.Background()
		first, second := db.TelegramPace(), db.TelegramPace()
		group := []store.SendWindow{{Scope: -100, N: 3, Per: time.Minute}, {Scope: 0, N: 30, Per: time.Second}}
		for i := range 3 {
			if w, err := first.Book(ctx, -100, group); err != nil || w != 0 {
				t.Fatalf("send %d: wait %v (%v)", i, w, err)
			}
		}
		w, err := second.Book(ctx, -100, group)
		if err != nil || w < 50*time.Second || w > time.Minute {
			t.Fatalf("4th send in a minute through another handle: wait %v (%v), want most of a minute", w, err)
		}
		other := []store.SendWindow{{Scope: -200, N: 3, Per: time.Minute}, {Scope: 0, N: 4, Per: time.Second}}
		if w, err := second.Book(ctx, -200, other); err != nil || w != 0 {
			t.Fatalf("another group: wait %v (%v)", w, err)
		}
		// The overall window counts every chat's sends: 4 booked.
		if w, err := second.Book(ctx, -300, []store.SendWindow{{Scope: 0, N: 4, Per: time.Second}}); err != nil || w == 0 {
			t.Fatalf("5th send in a second with 4 allowed: wait %v (%v)", w, err)
		}

		if err := first.Hold(ctx, -200, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := first.Hold(ctx, -200, time.Second); err != nil { // a shorter hold keeps the longer
			t.Fatal(err)
		}
		if w, _ := second.Book(ctx, -200, nil); w < 25*time.Second {
			t.Fatalf("held chat: wait %v, want about 30 s", w)
		}
		if w, _ := second.Book(ctx, -400, nil); w != 0 {
			t.Fatalf("a chat not held waits %v", w)
		}
		if err := first.Hold(ctx, 0, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if w, _ := second.Book(ctx, -500, nil); w < 4*time.Second {
			t.Fatalf("every chat held: wait %v, want about 5 s", w)
		}
	})
}
