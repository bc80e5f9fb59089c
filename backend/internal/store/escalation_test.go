package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

func openOrder(t *testing.T, db *store.DB, accountID, leadID, chatID int64, timers ...dispatch.Timer) dispatch.Order {
	t.Helper()
	ctx := context.Background()
	var o dispatch.Order
	err := db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if o, err = tx.CreateOrder(dispatch.Order{AccountID: accountID, LeadID: leadID, ChatID: chatID, Status: dispatch.OrderPosting}); err != nil {
			return err
		}
		return tx.AddTimers(o, timers)
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := db.MarkPosted(ctx, o.ID, 10, "post"); err != nil || !ok {
		t.Fatalf("mark posted: %v %v", ok, err)
	}
	return o
}

func fire(db *store.DB, orderID, kind string) (bool, error) {
	var fired bool
	err := db.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		_, fired, err = tx.FireTimer(orderID, kind)
		return err
	})
	return fired, err
}

// Of any number of concurrent firings of a step (a retried job, a rescued
// one, another replica's), exactly one fires it.
func TestFireTimerOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		db := dbtest.Open(t, kind, nil)
		install(t, db, 7)
		now := time.Now()
		o := openOrder(t, db, 7, 100, -1, dispatch.Timer{Kind: dispatch.TimerBump, At: now}, dispatch.Timer{Kind: dispatch.TimerTask, At: now})
		var fired atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := fire(db, o.ID, dispatch.TimerBump)
				if err != nil {
					t.Error(err)
				}
				if ok {
					fired.Add(1)
				}
			}()
		}
		wg.Wait()
		if fired.Load() != 1 {
			t.Fatalf("bump fired %d times, want 1", fired.Load())
		}
		pending, err := db.PendingTimers(context.Background(), 7, o.ID)
		if err != nil || len(pending) != 1 || pending[0].Kind != dispatch.TimerTask {
			t.Fatalf("pending %+v, %v: want the task step alone", pending, err)
		}
	})
}

// A take cancels the steps left; a press counts in the order's chat and in
// a chat it was escalated to, nowhere else.
func TestTakeCancelsTimersAndCountsInFallbackChat(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		install(t, db, 8)
		o := openOrder(t, db, 8, 200, -1, dispatch.Timer{Kind: dispatch.TimerFallback, At: time.Now()},
			dispatch.Timer{Kind: dispatch.TimerTask, At: time.Now()})
		take := func(chatID int64) error {
			return db.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.TakeOrder(chatID, 55, o.ID, dispatch.Executor{TelegramID: 5, FirstName: "Anna"})
				return err
			})
		}
		if err := take(-2); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("press in a chat the order was never posted to: %v, want not found", err)
		}
		if _, err := db.OrderInChat(ctx, -2, o.ID); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("order seen from a foreign chat: %v", err)
		}
		err := db.InTx(ctx, func(tx *store.Tx) error {
			_, fired, err := tx.FireTimer(o.ID, dispatch.TimerFallback)
			if err != nil || !fired {
				return errors.Join(err, errors.New("fallback did not fire"))
			}
			_, err = tx.AddPost(o, dispatch.PostFallback, -2)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := take(-2); err != nil {
			t.Fatalf("press in the fallback chat: %v", err)
		}
		got, err := db.Order(ctx, 8, o.ID)
		if err != nil || got.Status != dispatch.OrderTaken || got.ChatID != -1 || got.MessageID != 10 {
			t.Fatalf("order %+v, %v: want taken, its own post kept", got, err)
		}
		if err := take(-1); !errors.Is(err, dispatch.ErrAlreadyTaken) {
			t.Fatalf("press in the first chat after the take: %v, want already taken", err)
		}
		if fired, err := fire(db, o.ID, dispatch.TimerTask); err != nil || fired {
			t.Fatalf("task fired after the take: %v %v", fired, err)
		}
		if pending, err := db.PendingTimers(ctx, 8, o.ID); err != nil || len(pending) != 0 {
			t.Fatalf("pending after the take %+v, %v", pending, err)
		}
	})
}
