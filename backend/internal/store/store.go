// Package store keeps amoDispatch's state in PostgreSQL or in an embedded
// SQLite file through gorm. Every tenant-owned query is scoped by account id,
// and gorm/driver errors are translated into dispatch's sentinel errors here.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/pressly/goose/v3"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/secret"
	"github.com/amodispatch/amodispatch/migrations"
)

// Dialect names the database behind a DB.
type Dialect string

const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DB is the storage handle shared by the whole process.
type DB struct {
	gorm    *gorm.DB
	sql     *sql.DB
	dialect Dialect
	box     *secret.Box
	now     func() time.Time
	log     *slog.Logger
}

// Options configure Open.
type Options struct {
	// URL is a postgres:// URL; empty selects SQLite at SQLitePath.
	URL        string
	SQLitePath string
	Box        *secret.Box
	Now        func() time.Time
	Logger     *slog.Logger
}

// Open connects to the database. It does not migrate; call Migrate or CheckSchema.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.Box == nil {
		return nil, errors.New("store: encryption box is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := &gorm.Config{
		Logger:                 logger.Default.LogMode(logger.Silent),
		NowFunc:                func() time.Time { return o.Now().UTC() },
		SkipDefaultTransaction: true,
		TranslateError:         true,
	}
	var (
		dial    gorm.Dialector
		dialect Dialect
	)
	if o.URL != "" {
		dial, dialect = postgres.Open(o.URL), Postgres
	} else {
		if err := os.MkdirAll(filepath.Dir(o.SQLitePath), 0o700); err != nil {
			return nil, fmt.Errorf("store: create data directory: %w", err)
		}
		// WAL lets readers work beside the single writer; IMMEDIATE transactions
		// take the write lock up front so two writers queue on busy_timeout
		// instead of failing with SQLITE_BUSY half-way through.
		dsn := "file:" + o.SQLitePath + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate&_time_format=sqlite"
		dial, dialect = sqlite.Open(dsn), SQLite
	}
	g, err := gorm.Open(dial, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dialect, err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if dialect == Postgres {
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetMaxIdleConns(20)
	} else {
		// SQLite has one writer. A single connection serialises everything
		// in-process (River's SQLite driver asks for it too); with several,
		// concurrent writers hit SQLITE_BUSY despite busy_timeout. Nothing may
		// use the DB handle while holding one of its transactions.
		sqlDB.SetMaxOpenConns(1)
	}
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{gorm: g, sql: sqlDB, dialect: dialect, box: o.Box, now: o.Now, log: o.Logger}
	if err := db.Ping(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) Dialect() Dialect { return db.dialect }

// Now is the store's clock, injectable in tests.
func (db *DB) Now() time.Time { return db.utcNow() }

// SQL exposes the connection pool for libraries that need database/sql.
func (db *DB) SQL() *sql.DB { return db.sql }

func (db *DB) Close() error { return db.sql.Close() }

func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := db.sql.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

func (db *DB) provider(opts ...goose.ProviderOption) (*goose.Provider, error) {
	d := goose.DialectPostgres
	if db.dialect == SQLite {
		d = goose.DialectSQLite3
	}
	p, err := goose.NewProvider(d, db.sql, migrations.FS, opts...)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return p, nil
}

// Migrate applies every embedded migration not yet applied. On PostgreSQL a
// session advisory lock keeps replicas starting together from racing.
func (db *DB) Migrate(ctx context.Context) ([]string, error) {
	var opts []goose.ProviderOption
	if db.dialect == Postgres {
		locker, err := newPostgresLocker()
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := db.provider(opts...)
	if err != nil {
		return nil, err
	}
	if err := db.refuseNewerSchema(ctx, p); err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	// Every time, not only when 00005 was just applied: a process that died
	// between the two steps left rows for the next start to finish.
	if err := db.sealLegacyLinkCodes(ctx); err != nil {
		return nil, err
	}
	var applied []string
	for _, r := range results {
		applied = append(applied, r.Source.Path)
	}
	return applied, nil
}

// CheckSchema fails when migrations are pending or the database is newer than
// this binary, so a replica never runs against a schema it does not know.
func (db *DB) CheckSchema(ctx context.Context) error {
	p, err := db.provider()
	if err != nil {
		return err
	}
	if err := db.refuseNewerSchema(ctx, p); err != nil {
		return err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("store: schema status: %w", err)
	}
	if pending {
		return fmt.Errorf("store: %w: run `dispatcher migrate`", dispatch.ErrSchemaOutdated)
	}
	return nil
}

func (db *DB) refuseNewerSchema(ctx context.Context, p *goose.Provider) error {
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		// A fresh database has no version table yet: nothing to compare.
		return nil
	}
	sources := p.ListSources()
	if len(sources) > 0 && current > sources[len(sources)-1].Version {
		return fmt.Errorf("store: database schema version %d is newer than this binary knows (%d); upgrade the binary",
			current, sources[len(sources)-1].Version)
	}
	return nil
}

// translate maps gorm/driver errors onto the domain's sentinel errors.
func translate(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("%s: %w", what, dispatch.ErrNotFound)
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return fmt.Errorf("%s: %w", what, dispatch.ErrConflict)
	default:
		return fmt.Errorf("store: %s: %w", what, err)
	}
}

func (db *DB) utcNow() time.Time { return db.now().UTC() }

func (db *DB) nowMillis() int64 { return db.now().UnixMilli() }

// transaction runs fn in a transaction. On SQLite a transaction refused with
// SQLITE_BUSY (another process holds the file's write lock past busy_timeout,
// or SQLite refused to wait to avoid a deadlock) is retried a few times: it
// rolled back whole, so running it again is safe.
func (db *DB) transaction(ctx context.Context, fn func(tx *gorm.DB) error) error {
	for attempt := 1; ; attempt++ {
		err := db.gorm.WithContext(ctx).Transaction(fn)
		if err == nil || db.dialect != SQLite || attempt == 5 || !strings.Contains(err.Error(), "SQLITE_BUSY") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt*attempt) * 20 * time.Millisecond):
		}
	}
}
