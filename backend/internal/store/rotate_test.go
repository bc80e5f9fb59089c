package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/secret"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

var (
	oldKey      = bytes.Repeat([]byte{1}, 32)
	newKey      = bytes.Repeat([]byte{2}, 32)
	strangerKey = bytes.Repeat([]byte{3}, 32)
)

// installTokens installs account id with tokens unique to it, so a value
// copied into the wrong row would show.
func installTokens(t *testing.T, db *store.DB, id int64) dispatch.Account {
	t.Helper()
	a, _, err := db.SaveInstallation(context.Background(), store.Installation{
		ID: id, Subdomain: fmt.Sprint("acc", id), Domain: fmt.Sprintf("acc%d.amocrm.ru", id),
		Tokens: dispatch.Tokens{Access: dispatch.Secret(fmt.Sprint("access-", id)), Refresh: dispatch.Secret(fmt.Sprint("refresh-", id)),
			ExpiresAt: time.Now().Add(time.Hour)},
	})
	if err != nil {
		t.Fatalf("install %d: %v", id, err)
	}
	return a
}

// sealedColumns reads an account's sealed columns as stored.
func sealedColumns(t *testing.T, db *store.DB, id int64) [4]string {
	t.Helper()
	var v [4]string
	err := db.SQL().QueryRowContext(context.Background(),
		fmt.Sprintf("SELECT access_token_enc, refresh_token_enc, webhook_secret_enc, link_code_enc FROM accounts WHERE id = %d", id)).Scan(&v[0], &v[1], &v[2], &v[3])
	if err != nil {
		t.Fatalf("read sealed columns of %d: %v", id, err)
	}
	return v
}

func wantTokens(t *testing.T, db *store.DB, id int64, access, refresh string) {
	t.Helper()
	tok, err := db.Tokens(context.Background(), id)
	if err != nil || tok.Access.Reveal() != access || tok.Refresh.Reveal() != refresh {
		t.Fatalf("account %d tokens = %q/%q, %v; want %q/%q", id, tok.Access.Reveal(), tok.Refresh.Reveal(), err, access, refresh)
	}
}

func TestRotateKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		dbURL, dir := dbtest.NewURL(t, kind)
		old := dbtest.OpenWithKeys(t, dbURL, dir, nil, oldKey)
		secrets, codes := map[int64]string{}, map[int64]string{}
		for id := int64(1); id <= 4; id++ {
			a := installTokens(t, old, id)
			secrets[id], codes[id] = a.WebhookSecret.Reveal(), a.LinkCode
		}
		// A code rotated under the old key is rotated like the rest.
		rotated, err := old.RotateLinkCode(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		codes[1] = rotated
		// A disabled account keeps only its webhook secret and link code: no empty value counts.
		if err := old.SetAccountStatus(ctx, 4, dispatch.AccountDisabled); err != nil {
			t.Fatal(err)
		}

		rotating := dbtest.OpenWithKeys(t, dbURL, dir, nil, newKey, oldKey)
		// Batches of 2 over 4 rows: the walk must cross batch boundaries.
		rep, err := rotating.RotateKeysForTest(ctx, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Accounts != 4 || rep.Rotated != 14 || rep.Current != 0 || rep.Raced != 0 || len(rep.Unreadable) != 0 {
			t.Fatalf("first run: %+v", rep)
		}

		newOnly := dbtest.OpenWithKeys(t, dbURL, dir, nil, newKey)
		for id := int64(1); id <= 3; id++ {
			wantTokens(t, newOnly, id, fmt.Sprint("access-", id), fmt.Sprint("refresh-", id))
		}
		for id, want := range secrets {
			a, err := newOnly.Account(ctx, id)
			if err != nil || a.WebhookSecret.Reveal() != want || a.LinkCode != codes[id] {
				t.Fatalf("account %d webhook secret or link code after rotation: %v", id, err)
			}
		}
		// The hash a Telegram command is matched by does not depend on the key.
		for id := int64(1); id <= 3; id++ {
			if a, err := newOnly.AccountByLinkCode(ctx, codes[id]); err != nil || a.ID != id {
				t.Fatalf("account %d's link code after rotation: %d %v", id, a.ID, err)
			}
		}

		rep, err = rotating.RotateKeys(ctx)
		if err != nil || rep.Rotated != 0 || rep.Current != 14 || rep.Accounts != 4 {
			t.Fatalf("second run must rotate nothing: %+v, %v", rep, err)
		}
	})
}

func TestRotateKeysLeavesUnreadableValues(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		dbURL, dir := dbtest.NewURL(t, kind)
		old := dbtest.OpenWithKeys(t, dbURL, dir, nil, oldKey)
		installTokens(t, old, 1)
		installTokens(t, old, 2)
		installTokens(t, dbtest.OpenWithKeys(t, dbURL, dir, nil, strangerKey), 3)
		// Account 1's webhook secret copied into account 2: the key is known,
		// but the value is bound to another row and must not open.
		placeholder := "?"
		if kind == dbtest.Postgres {
			placeholder = "$1"
		}
		if _, err := old.SQL().ExecContext(ctx, "UPDATE accounts SET webhook_secret_enc = "+placeholder+" WHERE id = 2",
			sealedColumns(t, old, 1)[2]); err != nil {
			t.Fatal(err)
		}
		before2, before3 := sealedColumns(t, old, 2), sealedColumns(t, old, 3)

		rotating := dbtest.OpenWithKeys(t, dbURL, dir, nil, newKey, oldKey)
		rep, err := rotating.RotateKeys(ctx)
		if !errors.Is(err, secret.ErrDecrypt) {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
		for _, want := range []string{"5 sealed values", "account 2 webhook_secret_enc", "account 3 access_token_enc",
			"account 3 refresh_token_enc", "account 3 webhook_secret_enc", "account 3 link_code_enc"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
		for _, v := range append(before2[:], before3[:]...) {
			if strings.Contains(err.Error(), v) {
				t.Fatalf("error reveals a sealed value: %v", err)
			}
		}
		if strings.Contains(err.Error(), "account 1") {
			t.Fatalf("error names a readable account: %v", err)
		}
		// Everything readable was rotated anyway: account 1 whole, account 2's tokens and link code.
		if rep.Rotated != 7 || len(rep.Unreadable) != 5 || rep.Accounts != 3 {
			t.Fatalf("report: %+v", rep)
		}
		after2, after3 := sealedColumns(t, old, 2), sealedColumns(t, old, 3)
		if after2[2] != before2[2] || after3 != before3 {
			t.Fatal("an unreadable value was changed")
		}
		if after2[0] == before2[0] || after2[1] == before2[1] || after2[3] == before2[3] {
			t.Fatal("account 2's readable tokens or link code were not rotated")
		}
		newOnly := dbtest.OpenWithKeys(t, dbURL, dir, nil, newKey)
		wantTokens(t, newOnly, 1, "access-1", "refresh-1")
		wantTokens(t, newOnly, 2, "access-2", "refresh-2")
	})
}

func TestRotateKeysKeepsConcurrentRefresh(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		ctx := context.Background()
		dbURL, dir := dbtest.NewURL(t, kind)
		// A replica not restarted yet: it still seals with the old key.
		server := dbtest.OpenWithKeys(t, dbURL, dir, nil, oldKey)
		installTokens(t, server, 1)
		installTokens(t, server, 2)

		rotating := dbtest.OpenWithKeys(t, dbURL, dir, nil, newKey, oldKey)
		refreshed := false
		rep, err := rotating.RotateKeysForTest(ctx, 100, func(id int64) {
			if id != 1 || refreshed {
				return
			}
			refreshed = true
			if ok, err := server.AcquireRefreshLock(ctx, 1, "server", time.Minute); !ok || err != nil {
				t.Fatalf("refresh lock: %v %v", ok, err)
			}
			if err := server.SaveRefreshedTokens(ctx, 1, "server",
				dispatch.Tokens{Access: "access-new", Refresh: "refresh-new", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Raced != 2 || rep.Rotated != 6 {
			t.Fatalf("report: %+v", rep)
		}
		// The refreshed pair survived; the old key still opens it until a
		// second run, which is why the procedure runs until nothing rotates.
		wantTokens(t, rotating, 1, "access-new", "refresh-new")
		rep, err = rotating.RotateKeys(ctx)
		if err != nil || rep.Rotated != 2 || rep.Raced != 0 {
			t.Fatalf("second run: %+v, %v", rep, err)
		}
		newOnly := dbtest.OpenWithKeys(t, dbURL, dir, nil, newKey)
		wantTokens(t, newOnly, 1, "access-new", "refresh-new")
		wantTokens(t, newOnly, 2, "access-2", "refresh-2")
	})
}
