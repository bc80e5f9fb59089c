// Package dbtest gives each test a fresh database of each kind: a temporary
// SQLite file and, when reachable, a randomly named PostgreSQL database that
// is dropped afterwards. With REQUIRE_POSTGRES=1 (set by .ci/run) an
// unreachable PostgreSQL fails the test instead of being left out.
package dbtest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/amodispatch/amodispatch/backend/internal/secret"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// Kind is a database the suite runs against.
type Kind string

const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// AdminURL is the PostgreSQL server used to create test databases.
func AdminURL() string {
	if u := os.Getenv("TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	pgOnce sync.Once
	pgErr  error
)

func postgresAvailable() error {
	pgOnce.Do(func() {
		db, err := sql.Open("pgx", AdminURL())
		if err != nil {
			pgErr = err
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		pgErr = db.PingContext(ctx)
	})
	return pgErr
}

// Kinds returns the databases this run covers. PostgreSQL missing is a
// failure under REQUIRE_POSTGRES=1 and a loud skip otherwise.
func Kinds(t testing.TB) []Kind {
	t.Helper()
	if err := postgresAvailable(); err != nil {
		if os.Getenv("REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable at %s: %v", redact(AdminURL()), err)
		}
		t.Logf("LEFT OUT: PostgreSQL unreachable (%v); this test ran on SQLite only", err)
		return []Kind{SQLite}
	}
	return []Kind{SQLite, Postgres}
}

// Each runs fn as a subtest once per available database kind.
func Each(t *testing.T, fn func(t *testing.T, kind Kind)) {
	for _, k := range Kinds(t) {
		t.Run(string(k), func(t *testing.T) { fn(t, k) })
	}
}

// NewURL creates a fresh database of kind and returns what DATABASE_URL (or,
// for SQLite, the data directory) should be for it. Dropped on cleanup.
func NewURL(t testing.TB, kind Kind) (databaseURL, dataDir string) {
	t.Helper()
	if kind == SQLite {
		return "", t.TempDir()
	}
	name := "amod_test_" + strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(secret.Token(9)))
	admin, err := sql.Open("pgx", AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, _ := url.Parse(AdminURL())
	u.Path = "/" + name
	return u.String(), ""
}

// Key is the fixed encryption key of test databases.
var Key = bytes.Repeat([]byte{7}, 32)

// Open creates a fresh, migrated database of kind.
func Open(t testing.TB, kind Kind, now func() time.Time) *store.DB {
	t.Helper()
	dbURL, dir := NewURL(t, kind)
	return OpenAt(t, dbURL, dir, now)
}

// OpenAt opens (and migrates) an existing test database, e.g. a second
// "process" on the same database.
func OpenAt(t testing.TB, dbURL, dir string, now func() time.Time) *store.DB {
	t.Helper()
	return OpenWithKeys(t, dbURL, dir, now, Key)
}

// OpenWithKeys is OpenAt with ENCRYPTION_KEY's list in place of Key: the
// first key seals, all open (key rotation tests).
func OpenWithKeys(t testing.TB, dbURL, dir string, now func() time.Time, keys ...[]byte) *store.DB {
	t.Helper()
	box, err := secret.New(keys)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), store.Options{URL: dbURL, SQLitePath: filepath.Join(dir, "dispatcher.db"), Box: box, Now: now})
	if err != nil {
		t.Fatalf("open %s: %v", kindOf(dbURL), err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

func kindOf(dbURL string) Kind {
	if dbURL == "" {
		return SQLite
	}
	return Postgres
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	return fmt.Sprint(u.Redacted())
}
