package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/secret"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// storedLinkCode is an account's link code columns as the database holds them.
func storedLinkCode(t *testing.T, db *store.DB, id int64) (hash, sealed string) {
	t.Helper()
	err := db.SQL().QueryRowContext(context.Background(),
		fmt.Sprintf("SELECT link_code_hash, link_code_enc FROM accounts WHERE id = %d", id)).Scan(&hash, &sealed)
	if err != nil {
		t.Fatal(err)
	}
	return hash, sealed
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// The database never holds a link code in the clear; a rotated code replaces
// the old one, which then finds no account.
func TestLinkCodeHashedAndRotated(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		a := install(t, db, 42)
		install(t, db, 43)
		hash, sealed := storedLinkCode(t, db, 42)
		if hash != sha256Hex(a.LinkCode) || sealed == "" || strings.Contains(sealed, a.LinkCode) {
			t.Fatalf("stored link code: hash %q sealed %q for code %q", hash, sealed, a.LinkCode)
		}

		code, err := db.RotateLinkCode(ctx, 42)
		if err != nil || code == "" || code == a.LinkCode {
			t.Fatalf("rotate: %q %v", code, err)
		}
		if _, err := db.AccountByLinkCode(ctx, a.LinkCode); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("the old code still finds an account: %v", err)
		}
		if got, err := db.AccountByLinkCode(ctx, code); err != nil || got.ID != 42 || got.LinkCode != code {
			t.Fatalf("the new code: %d %q %v", got.ID, got.LinkCode, err)
		}
		if got, _ := db.Account(ctx, 42); got.LinkCode != code {
			t.Fatalf("account shows link code %q, want the new %q", got.LinkCode, code)
		}
		if hash, _ := storedLinkCode(t, db, 42); hash != sha256Hex(code) {
			t.Fatal("the new code is not stored hashed")
		}
		if other, _ := db.Account(ctx, 43); other.LinkCode == code || other.LinkCode == "" {
			t.Fatalf("another account's code changed: %q", other.LinkCode)
		}

		if err := db.SetAccountStatus(ctx, 43, dispatch.AccountDisabled); err != nil {
			t.Fatal(err)
		}
		before, _ := db.Account(ctx, 43)
		if _, err := db.RotateLinkCode(ctx, 43); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("rotating a disabled account's code: %v", err)
		}
		if _, err := db.RotateLinkCode(ctx, 999); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("rotating an unknown account's code: %v", err)
		}
		if after, _ := db.Account(ctx, 43); after.LinkCode != before.LinkCode {
			t.Fatal("a refused rotation changed the code")
		}
	})
}

// A link code is single-use: the use that links a group spends it and
// issues a new one, so the "/start@bot CODE" left in that group's history
// links nothing else; a use refused because the chat is another account's
// spends it too (the group saw it). A spent code changes nothing.
func TestLinkChatByCodeSpendsTheCode(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		db := dbtest.Open(t, kind, nil)
		a := install(t, db, 42)
		b := install(t, db, 43)

		acc, chat, err := db.LinkChatByCode(ctx, a.LinkCode, dispatch.Chat{ID: -100, Title: "First", Type: "group", LinkedBy: 7})
		if err != nil || acc.ID != 42 || chat.ID != -100 || chat.AccountID != 42 || !chat.Active {
			t.Fatalf("first use: %+v %+v %v", acc, chat, err)
		}
		if acc.LinkCode == a.LinkCode || acc.LinkCode == "" {
			t.Fatalf("the code was not renewed: %q", acc.LinkCode)
		}
		if got, _ := db.Account(ctx, 42); got.LinkCode != acc.LinkCode {
			t.Fatalf("account shows %q, want the new code %q", got.LinkCode, acc.LinkCode)
		}
		if hash, _ := storedLinkCode(t, db, 42); hash != sha256Hex(acc.LinkCode) {
			t.Fatal("the new code is not stored hashed")
		}

		// Replayed: in another group, and in the group it linked (now unlinked).
		if _, err := db.DeactivateChat(ctx, -100); err != nil {
			t.Fatal(err)
		}
		for _, id := range []int64{-200, -100} {
			if _, _, err := db.LinkChatByCode(ctx, a.LinkCode, dispatch.Chat{ID: id, Title: "Replay", Type: "group"}); !errors.Is(err, dispatch.ErrNotFound) {
				t.Fatalf("spent code in chat %d: %v", id, err)
			}
		}
		if chats, _ := db.Chats(ctx, 42); len(chats) != 1 || chats[0].Active {
			t.Fatalf("a spent code changed the chats: %+v", chats)
		}
		if got, _ := db.Account(ctx, 42); got.LinkCode != acc.LinkCode {
			t.Fatal("a spent code changed the current one")
		}

		// The new code works, once.
		again, _, err := db.LinkChatByCode(ctx, acc.LinkCode, dispatch.Chat{ID: -100, Title: "First", Type: "group"})
		if err != nil || again.LinkCode == acc.LinkCode {
			t.Fatalf("the new code: %q %v", again.LinkCode, err)
		}

		// B's code sent in A's group: refused, and spent.
		bAcc, _, err := db.LinkChatByCode(ctx, b.LinkCode, dispatch.Chat{ID: -100, Title: "First", Type: "group"})
		if !errors.Is(err, dispatch.ErrChatTaken) || bAcc.ID != 43 || bAcc.LinkCode == b.LinkCode {
			t.Fatalf("another account's chat: %+v %v", bAcc, err)
		}
		if got, _ := db.Account(ctx, 43); got.LinkCode != bAcc.LinkCode {
			t.Fatal("the refused use did not spend B's code")
		}
		if c, _ := db.Chat(ctx, -100); c.AccountID != 42 || !c.Active {
			t.Fatalf("chat moved: %+v", c)
		}

		// A disabled account's code links nothing and stays.
		if err := db.SetAccountStatus(ctx, 43, dispatch.AccountDisabled); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.LinkChatByCode(ctx, bAcc.LinkCode, dispatch.Chat{ID: -300, Type: "group"}); !errors.Is(err, dispatch.ErrNotFound) {
			t.Fatalf("disabled account's code: %v", err)
		}
	})
}

// Of many uses of one code at once one links a group: on PostgreSQL from two
// processes (replicas), on SQLite from one (SQLite serves one process).
func TestLinkCodeRaceLinksOneChat(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		dbURL, dir := dbtest.NewURL(t, kind)
		dbs := []*store.DB{dbtest.OpenAt(t, dbURL, dir, nil)}
		if kind == dbtest.Postgres {
			dbs = append(dbs, dbtest.OpenAt(t, dbURL, dir, nil))
		}
		a := install(t, dbs[0], 42)
		const n = 12
		errs := make(chan error, n)
		start := make(chan struct{})
		for i := range n {
			go func() {
				<-start
				_, _, err := dbs[i%len(dbs)].LinkChatByCode(ctx, a.LinkCode, dispatch.Chat{ID: int64(-1000 - i), Type: "group"})
				errs <- err
			}()
		}
		close(start)
		linked := 0
		for range n {
			switch err := <-errs; {
			case err == nil:
				linked++
			case !errors.Is(err, dispatch.ErrNotFound):
				t.Errorf("use: %v", err)
			}
		}
		if chats, _ := dbs[0].Chats(ctx, 42); linked != 1 || len(chats) != 1 {
			t.Fatalf("%d uses linked, %d chats stored; want 1 and 1", linked, len(chats))
		}
	})
}

// Codes written in the clear before migration 00005 keep working after it,
// and are then stored hashed and sealed.
func TestLegacyLinkCodesSealedAtMigrate(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		dbURL, dir := dbtest.NewURL(t, kind)
		box, err := secret.New([][]byte{dbtest.Key})
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(ctx, store.Options{URL: dbURL, SQLitePath: filepath.Join(dir, "dispatcher.db"), Box: box})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.MigrateToForTest(ctx, 4); err != nil {
			t.Fatal(err)
		}
		q := "INSERT INTO accounts (id, subdomain, domain, status, link_code, webhook_secret_enc, installed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
		if kind == dbtest.Postgres {
			q = "INSERT INTO accounts (id, subdomain, domain, status, link_code, webhook_secret_enc, installed_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
		}
		codes := map[int64]string{7: "legacyCode7-abcd", 8: "legacyCode8-efgh"}
		for id, code := range codes {
			ws, err := box.Seal("webhook-secret", fmt.Sprintf("account:%d:webhook", id))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			if _, err := db.SQL().ExecContext(ctx, q, id, "old", fmt.Sprintf("old%d.amocrm.ru", id), "active", code, ws, now, now); err != nil {
				t.Fatal(err)
			}
		}

		for range 2 { // the second run finds nothing left to convert
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			for id, code := range codes {
				if a, err := db.AccountByLinkCode(ctx, code); err != nil || a.ID != id || a.LinkCode != code {
					t.Fatalf("legacy code of %d after migrating: %d %q %v", id, a.ID, a.LinkCode, err)
				}
				hash, sealed := storedLinkCode(t, db, id)
				if hash != sha256Hex(code) || sealed == "" || strings.Contains(sealed, code) {
					t.Fatalf("account %d: hash %q sealed %q", id, hash, sealed)
				}
			}
		}
	})
}
