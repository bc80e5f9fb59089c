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
