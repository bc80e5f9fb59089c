package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

func install(t *testing.T, db *store.DB, id int64) dispatch.Account {
	t.Helper()
	a, _, err := db.SaveInstallation(context.Background(), store.Installation{
		ID: id, Subdomain: fmt.Sprint("acc", id), Domain: fmt.Sprintf("acc%d.amocrm.ru", id), Name: "Acc", Language: "ru",
		Tokens: dispatch.Tokens{Access: "access-1", Refresh: "refresh-1", ExpiresAt: time.Now().Add(time.Hour)},
	})
	if err != nil {
		t.Fatalf("install %d: %v", id, err)
	}
	return a
}

func TestAccountsAndTokens(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		a := install(t, db, 42)
		if a.LinkCode == "" || a.WebhookSecret.Reveal() == "" || a.Status != dispatch.AccountActive {
			t.Fatalf("new account lacks link code, secret or status: %+v", a)
		}
		tok, err := db.Tokens(ctx, 42)
		if err != nil || tok.Access.Reveal() != "access-1" || tok.Refresh.Reveal() != "refresh-1" {
			t.Fatalf("tokens = %+v, %v", tok, err)
		}

		// A reinstall keeps link code and webhook secret, replaces tokens.
		again, _, err := db.SaveInstallation(ctx, store.Installation{ID: 42, Subdomain: "acc42", Domain: "acc42.amocrm.ru",
			Tokens: dispatch.Tokens{Access: "access-2", Refresh: "refresh-2", ExpiresAt: time.Now().Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		if again.LinkCode != a.LinkCode || again.WebhookSecret != a.WebhookSecret {
			t.Fatal("reinstall must keep the link code and the webhook secret")
		}
		if tok, _ := db.Tokens(ctx, 42); tok.Access.Reveal() != "access-2" {
			t.Fatalf("reinstall did not replace tokens")
		}

		if got, err := db.AccountByLinkCode(ctx, a.LinkCode); err != nil || got.ID != 42 {
			t.Fatalf("by link code = %v, %v", got.ID, err)
		}
		if _, err := db.AccountByLinkCode(ctx, "nope"); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("unknown link code: %v", err)
		}

		if err := db.SetAccountStatus(ctx, 42, dispatch.AccountDisabled); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Tokens(ctx, 42); !errors.Is(err, dispatch.ErrAccountOff) {
			t.Fatalf("disabled account tokens: %v", err)
		}
		if _, err := db.AccountByLinkCode(ctx, a.LinkCode); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("disabled account must not link chats: %v", err)
		}
		if err := db.SetAccountStatus(ctx, 999, dispatch.AccountDisabled); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("unknown account: %v", err)
		}
	})
}

func TestRefreshLockIsExclusive(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		install(t, db, 7)
		var winners atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ok, err := db.AcquireRefreshLock(ctx, 7, string(rune('a'+i)), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					winners.Add(1)
				}
			}(i)
		}
		wg.Wait()
		if winners.Load() != 1 {
			t.Fatalf("%d holders of one refresh lock", winners.Load())
		}
		if err := db.SaveRefreshedTokens(ctx, 7, "not-the-owner", dispatch.Tokens{Access: "x", Refresh: "y"}); !errors.Is(err, dispatch.ErrConflict) {
			t.Fatalf("a non-holder saved tokens: %v", err)
		}
	})
}

func TestChatsBelongToOneAccount(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		install(t, db, 1)
		install(t, db, 2)
		if _, err := db.LinkChat(ctx, dispatch.Chat{ID: -100, AccountID: 1, Title: "A"}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.LinkChat(ctx, dispatch.Chat{ID: -100, AccountID: 2, Title: "B"}); !errors.Is(err, dispatch.ErrChatTaken) {
			t.Fatalf("second account took an active chat: %v", err)
		}
		if chats, _ := db.Chats(ctx, 2); len(chats) != 0 {
			t.Fatalf("account 2 sees %d chats", len(chats))
		}
		if ok, err := db.DeactivateChat(ctx, -100); !ok || err != nil {
			t.Fatalf("deactivate: %v %v", ok, err)
		}
		if _, err := db.LinkChat(ctx, dispatch.Chat{ID: -100, AccountID: 2, Title: "B"}); err != nil {
			t.Fatalf("inactive chat could not be relinked: %v", err)
		}
		if ok, err := db.MigrateChat(ctx, -100, -1000000000100, "supergroup"); !ok || err != nil {
			t.Fatalf("migrate: %v %v", ok, err)
		}
		if ok, err := db.MigrateChat(ctx, -100, -1000000000100, "supergroup"); ok || err != nil {
			t.Fatalf("second migrate must be a no-op: %v %v", ok, err)
		}
		chats, _ := db.Chats(ctx, 2)
		if len(chats) != 1 || chats[0].ID != -1000000000100 || !chats[0].Active {
			t.Fatalf("after migration: %+v", chats)
		}
	})
}

func TestUpdatesInbox(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		n, err := db.SaveUpdates(ctx, []store.StoredUpdate{{ID: 5, Payload: []byte(`{"update_id":5}`)}, {ID: 6, Payload: []byte(`{"update_id":6}`)}})
		if err != nil || n != 2 {
			t.Fatalf("save = %d, %v", n, err)
		}
		n, err = db.SaveUpdates(ctx, []store.StoredUpdate{{ID: 6, Payload: []byte(`{"update_id":6}`)}})
		if err != nil || n != 0 {
			t.Fatalf("duplicate update stored again: %d, %v", n, err)
		}
		if max, _ := db.MaxUpdateID(ctx); max != 6 {
			t.Fatalf("max = %d", max)
		}
		a, _ := db.ClaimUpdates(ctx, "a", 10, time.Minute)
		b, _ := db.ClaimUpdates(ctx, "b", 10, time.Minute)
		if len(a) != 2 || len(b) != 0 || a[0].ID != 5 {
			t.Fatalf("claims a=%v b=%v", a, b)
		}
		// The press-to-answer latency counts from the update's arrival.
		if d := time.Since(a[0].ReceivedAt); d < 0 || d > time.Minute {
			t.Fatalf("claimed update's arrival: %v", a[0].ReceivedAt)
		}
		if err := db.FinishUpdate(ctx, 5, "a", nil, 0); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishUpdate(ctx, 6, "a", errors.New("boom"), 0); err != nil {
			t.Fatal(err)
		}
		again, _ := db.ClaimUpdates(ctx, "b", 10, time.Minute)
		if len(again) != 1 || again[0].ID != 6 || again[0].Attempts != 2 {
			t.Fatalf("failed update not retried: %+v", again)
		}
	})
}

func TestLeases(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		now := time.Now()
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		db := dbtest.Open(t, kind, clock)
		if ok, err := db.AcquireLease(ctx, "poller", "a", time.Second); !ok || err != nil {
			t.Fatalf("a: %v %v", ok, err)
		}
		if ok, _ := db.AcquireLease(ctx, "poller", "b", time.Second); ok {
			t.Fatal("b took a held lease")
		}
		if ok, _ := db.AcquireLease(ctx, "poller", "a", time.Second); !ok {
			t.Fatal("a could not renew")
		}
		mu.Lock()
		now = now.Add(2 * time.Second)
		mu.Unlock()
		if ok, _ := db.AcquireLease(ctx, "poller", "b", time.Second); !ok {
			t.Fatal("b could not take an expired lease")
		}
	})
}

func TestOneLiveAccountPerDomain(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		save := func(id int64) []int64 {
			t.Helper()
			_, displaced, err := db.SaveInstallation(ctx, store.Installation{ID: id, Subdomain: "shop", Domain: "shop.amocrm.ru",
				Tokens: dispatch.Tokens{Access: "access", Refresh: "refresh", ExpiresAt: time.Now().Add(time.Hour)}})
			if err != nil {
				t.Fatal(err)
			}
			return displaced
		}
		install(t, db, 7) // another domain: untouched throughout
		if d := save(10); len(d) != 0 {
			t.Fatalf("first install displaced %v", d)
		}
		if d := save(10); len(d) != 0 {
			t.Fatalf("a reinstall displaced %v", d)
		}
		// Account 10 was deleted in amoCRM; account 11 got its subdomain.
		if d := save(11); len(d) != 1 || d[0] != 10 {
			t.Fatalf("displaced = %v, want [10]", d)
		}
		if old, _ := db.Account(ctx, 10); old.Status != dispatch.AccountDisabled {
			t.Fatalf("older account is %s, want disabled", old.Status)
		}
		if _, err := db.Tokens(ctx, 10); !errors.Is(err, dispatch.ErrAccountOff) {
			t.Fatalf("older account's tokens: %v", err)
		}
		if a, err := db.AccountByDomain(ctx, "shop.amocrm.ru"); err != nil || a.ID != 11 {
			t.Fatalf("by domain = %d, %v; want 11", a.ID, err)
		}
		if a, _ := db.Account(ctx, 7); a.Status != dispatch.AccountActive {
			t.Fatalf("account of another domain is %s", a.Status)
		}
	})
}

// TestPruneUpdates: processed updates go after UpdatesKept; unprocessed ones
// and the newest (polling resumes after it) stay.
func TestPruneUpdates(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		var now atomic.Pointer[time.Time]
		at := func(d time.Duration) { x := t0.Add(d); now.Store(&x) }
		at(0)
		db := dbtest.Open(t, kind, func() time.Time { return *now.Load() })
		receive := func(ids ...int64) {
			t.Helper()
			var ups []store.StoredUpdate
			for _, id := range ids {
				ups = append(ups, store.StoredUpdate{ID: id, Payload: []byte(`{}`)})
			}
			if _, err := db.SaveUpdates(ctx, ups); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ClaimUpdates(ctx, "w", 100, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		finish := func(id int64, procErr error) {
			t.Helper()
			if err := db.FinishUpdate(ctx, id, "w", procErr, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		stored := func() []int64 {
			t.Helper()
			rows, err := db.SQL().QueryContext(ctx, "SELECT update_id FROM telegram_updates ORDER BY update_id")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var ids []int64
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			return ids
		}
		prune := func(want int64) {
			t.Helper()
			if n, err := db.PruneUpdates(ctx); err != nil || n != want {
				t.Fatalf("pruned %d, %v; want %d", n, err, want)
			}
		}

		receive(1, 2, 3, 4)
		finish(1, nil)
		finish(2, nil)
		finish(3, errors.New("still failing"))
		finish(4, nil)
		at(2 * 24 * time.Hour)
		receive(5, 6)
		finish(5, nil)
		finish(6, nil)

		at(store.UpdatesKept - time.Minute)
		prune(0)
		at(store.UpdatesKept + time.Hour)
		prune(3)
		if got := stored(); !slices.Equal(got, []int64{3, 5, 6}) {
			t.Fatalf("after the first prune: %v", got)
		}
		at(10 * 24 * time.Hour)
		prune(1)
		if got := stored(); !slices.Equal(got, []int64{3, 6}) {
			t.Fatalf("after the second prune: %v", got)
		}
		if max, _ := db.MaxUpdateID(ctx); max != 6 {
			t.Fatalf("polling would resume after %d, want 6", max)
		}
	})
}
