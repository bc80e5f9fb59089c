package dbtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// Clock is a settable clock for a store opened with its Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *Clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *Clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// NeverPosted marks a seeded order whose post failed.
const NeverPosted = time.Duration(-1)

// SeedOrder is one order of SeedOrders, its times as offsets from a base.
type SeedOrder struct {
	Account, Lead, Pipeline, Chat int64
	Post                          time.Duration // when the post went out; NeverPosted: it failed
	Taker                         dispatch.Executor
	TakeAfter                     time.Duration // after the post
	// End is what happened after the take (done, released, on_way…), EndAfter
	// after the take; OrderWithdrawn ends an untaken order EndAfter after the
	// post; "" leaves the order as it is.
	End      dispatch.OrderStatus
	EndAfter time.Duration
}

// SeedOrders writes orders through the store's own steps (create, post,
// take, status, release, withdraw) under clk, set to each step's moment, so
// their times are known to the second. db must run on clk.
func SeedOrders(t testing.TB, db *store.DB, clk *Clock, base time.Time, orders []SeedOrder) {
	t.Helper()
	ctx := context.Background()
	for i, s := range orders {
		posted := base.Add(s.Post)
		clk.Set(posted.Add(-30 * time.Second))
		var o dispatch.Order
		err := db.InTx(ctx, func(tx *store.Tx) error {
			var err error
			o, err = tx.CreateOrder(dispatch.Order{AccountID: s.Account, LeadID: s.Lead, PipelineID: s.Pipeline, StageID: 1,
				ChatID: s.Chat, Status: dispatch.OrderPosting, GroupText: "order"})
			return err
		})
		if err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
		if s.Post == NeverPosted {
			if err := db.FailOrder(ctx, o.ID, "chat gone"); err != nil {
				t.Fatal(err)
			}
			continue
		}
		clk.Set(posted)
		if ok, err := db.MarkPosted(ctx, o.ID, 1000+i, "order"); err != nil || !ok {
			t.Fatalf("post order %d: %v %v", i, ok, err)
		}
		if _, _, err := db.AddEvent(ctx, dispatch.Event{AccountID: s.Account, OrderID: o.ID, Kind: dispatch.EventPosted}); err != nil {
			t.Fatal(err)
		}
		if s.End == dispatch.OrderWithdrawn {
			clk.Set(posted.Add(s.EndAfter))
			if err := db.InTx(ctx, func(tx *store.Tx) error { _, _, err := tx.CloseOrder(s.Account, s.Lead); return err }); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if s.Taker.TelegramID == 0 {
			continue
		}
		taken := posted.Add(s.TakeAfter)
		clk.Set(taken)
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.TakeOrder(s.Chat, 1000+i, o.ID, s.Taker); err != nil {
				return err
			}
			_, _, err := tx.AddEvent(dispatch.Event{AccountID: s.Account, OrderID: o.ID, Kind: dispatch.EventTaken, TelegramID: s.Taker.TelegramID})
			return err
		})
		if err != nil {
			t.Fatalf("take order %d: %v", i, err)
		}
		if s.End == "" {
			continue
		}
		clk.Set(taken.Add(s.EndAfter))
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if _, moved, err := tx.MoveAssigned(s.Account, o.ID, s.Taker.TelegramID, s.End); err != nil || !moved {
				t.Errorf("order %d to %s: moved %v, %v", i, s.End, moved, err)
				return err
			}
			_, _, err := tx.AddEvent(dispatch.Event{AccountID: s.Account, OrderID: o.ID, Kind: string(s.End), TelegramID: s.Taker.TelegramID})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// O is a SeedOrder in one line: account, deal, pipeline, chat, post, taker,
// take after, end, end after.
func O(account, lead, pipeline, chat int64, post time.Duration, taker dispatch.Executor, takeAfter time.Duration,
	end dispatch.OrderStatus, endAfter time.Duration) SeedOrder {
	return SeedOrder{Account: account, Lead: lead, Pipeline: pipeline, Chat: chat, Post: post, Taker: taker,
		TakeAfter: takeAfter, End: end, EndAfter: endAfter}
}
