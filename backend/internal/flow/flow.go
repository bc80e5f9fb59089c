// Package flow is the dispatch flow: amoCRM events become orders in Telegram,
// one executor takes each, and the result goes back to amoCRM. Every call to
// Telegram or amoCRM runs as a durable River job in the product's database,
// enqueued in the same transaction as the state change that causes it.
package flow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// CRM gives the flow an account's amoCRM API (tokens handled by the service).
type CRM interface {
	API(ctx context.Context, accountID int64) (*amocrm.API, error)
}

// Sender is what the flow needs of the Telegram client.
type Sender interface {
	SendHTML(ctx context.Context, chatID int64, html string, rows [][]telegram.Button) (int, error)
	EditHTML(ctx context.Context, chatID int64, messageID int, html string) error
	EditHTMLButtons(ctx context.Context, chatID int64, messageID int, html string, rows [][]telegram.Button) error
	Reachable(ctx context.Context, userID int64, timeout time.Duration) (bool, error)
	DeleteMessage(ctx context.Context, chatID int64, messageID int) error
}

var _ Sender = (*telegram.Client)(nil)

// Chore is another part's periodic upkeep (token renewal, install retries).
// River runs it beside the reconciler, in one process at a time, instead of
// a ticker in every replica.
type Chore struct {
	Name     string // unique; also the job's argument
	Interval time.Duration
	Run      func(ctx context.Context)
}

// Options configure the flow.
type Options struct {
	DB     *store.DB
	CRM    CRM
	Sender Sender // nil: Telegram not configured; posting jobs wait
	Log    *slog.Logger
	Chores []Chore
	// PostgresURL selects PostgreSQL (LISTEN/NOTIFY wakes workers at once);
	// empty means the SQLite database of DB.
	PostgresURL string
	// Workers bounds concurrent jobs in this process (default 20).
	Workers int
	// ReconcileInterval is how often deals in the trigger stages are
	// re-listed from amoCRM to catch lost webhooks (default a minute).
	ReconcileInterval time.Duration
	// Location formats dates in posts and notes (default Europe/Moscow).
	Location *time.Location
	// Now is the flow's clock (default time.Now). A test that sets it moves
	// River's clock too, so jobs scheduled for later run when it says so.
	Now func() time.Time
	// Metrics receives the flow's measurements (nil: none are taken).
	Metrics Metrics
}

// Metrics is what the flow reports to the operator's metrics.
type Metrics interface {
	Job(kind, outcome string)
	Posted(sinceWebhook time.Duration)
	Caught(what string, n int)
}

type noMetrics struct{}

func (noMetrics) Job(string, string)   {}
func (noMetrics) Posted(time.Duration) {}
func (noMetrics) Caught(string, int)   {}

// jobMetrics counts every job worked, by kind and outcome.
type jobMetrics struct {
	river.MiddlewareDefaults
	m Metrics
}

func (j *jobMetrics) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	if job.Kind == (EventArgs{}).Kind() {
		// The webhook's delivery was stored as this job: its post, if the
		// deal gets one, measures from here.
		ctx = context.WithValue(ctx, webhookAtKey{}, job.CreatedAt)
	}
	err := doInner(ctx)
	var (
		cancel *rivertype.JobCancelError
		snooze *rivertype.JobSnoozeError
	)
	outcome := "ok"
	switch {
	case errors.As(err, &cancel):
		outcome = "cancelled"
	case errors.As(err, &snooze):
		outcome = "snoozed"
	case err != nil:
		outcome = "error"
	}
	j.m.Job(job.Kind, outcome)
	return err
}

type webhookAtKey struct{}

// webhookAt is when the webhook being worked was accepted (zero outside one).
func webhookAt(ctx context.Context) time.Time {
	t, _ := ctx.Value(webhookAtKey{}).(time.Time)
	return t
}

// Flow runs the dispatch flow's jobs.
type Flow struct {
	o      Options
	db     *store.DB
	log    *slog.Logger
	river  *river.Client[*sql.Tx]
	pgPool *pgxpool.Pool

	fieldsMu sync.Mutex
	fields   map[int64]cachedFields

	leadLocks  [64]sync.Mutex // striped by lead id
	orderLocks [64]sync.Mutex // striped by order id: takes
	zones      zones          // accounts' time zones, for reminders
	intake     *intake

	probeMu     sync.Mutex
	probeMisses map[int64]time.Time // users Telegram called unreachable, when

	decidedMu sync.Mutex
	decided   map[string]decidedOrder // orders seen taken, for the presses that follow
}

// riverClock is River's view of a stubbed clock: every time it stores or
// compares (scheduled_at, attempted_at) comes from it.
type riverClock func() time.Time

func (c riverClock) Now() time.Time { return c() }

func (c riverClock) NowOrNil() *time.Time {
	t := c().UTC()
	return &t
}

func driverFor(db *store.DB, pool *pgxpool.Pool) riverdriver.Driver[*sql.Tx] {
	if db.Dialect() == store.SQLite {
		return riversqlite.New(db.SQL())
	}
	if pool != nil {
		return riverdatabasesql.NewWithPgxListener(db.SQL(), pool)
	}
	return riverdatabasesql.New(db.SQL())
}

// Migrate applies River's own versioned schema (its job tables).
func Migrate(ctx context.Context, db *store.DB) error {
	m, err := rivermigrate.New(driverFor(db, nil), nil)
	if err != nil {
		return fmt.Errorf("flow: river migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("flow: river migrate: %w", err)
	}
	return nil
}

// New builds the flow and its River client; Start runs the workers.
func New(ctx context.Context, o Options) (*Flow, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Workers == 0 {
		o.Workers = 20
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.ReconcileInterval == 0 {
		o.ReconcileInterval = time.Minute
	}
	stubbed := o.Now != nil
	if !stubbed {
		o.Now = time.Now
	}
	if o.Location == nil {
		loc, err := time.LoadLocation("Europe/Moscow")
		if err != nil {
			loc = time.FixedZone("MSK", 3*3600)
		}
		o.Location = loc
	}
	f := &Flow{o: o, db: o.DB, log: o.Log, fields: map[int64]cachedFields{}}
	if o.PostgresURL != "" {
		cfg, err := pgxpool.ParseConfig(o.PostgresURL)
		if err != nil {
			return nil, fmt.Errorf("flow: listener pool: %w", err)
		}
		cfg.MaxConns, cfg.MinConns = 2, 0
		if f.pgPool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return nil, fmt.Errorf("flow: listener pool: %w", err)
		}
	}
	workers := river.NewWorkers()
	f.register(workers)
	cfg := &river.Config{
		Queues:       map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.Workers}},
		Workers:      workers,
		Middleware:   []rivertype.Middleware{&jobMetrics{m: o.Metrics}, newFairShare(o.Workers)},
		Logger:       o.Log.With("component", "river"),
		ErrorHandler: errorLogger{log: o.Log},
		JobTimeout:   time.Minute,
		// A process killed mid-job (SIGKILL, OOM, power loss) leaves its
		// jobs 'running'; River's rescuer hands them back to the queue once
		// they are this old. River's default is JobTimeout + 1 hour, which
		// stalled a crashed process's posts and write-backs for an hour.
		RescueStuckJobsAfter: time.Minute + 10*time.Second,
		// With the capped back-off below, 100 attempts keep a job alive through
		// about eight hours of amoCRM or Telegram outage.
		MaxAttempts: 100,
		RetryPolicy: cappedBackoff{},
		// Inserts wake this process's workers at once (LISTEN/NOTIFY on
		// PostgreSQL, River's notification table on SQLite), but River
		// sends at most one insert notification per queue per FetchCooldown:
		// a job queued by a job just woken (webhook → dispatch → post) often
		// falls in that window and waits for the poll. A 50 ms poll, one
		// cheap query, bounds that wait; at 500 ms it was most of a post's
		// latency.
		FetchCooldown:     5 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		PeriodicJobs: append([]*river.PeriodicJob{
			river.NewPeriodicJob(river.PeriodicInterval(o.ReconcileInterval),
				func() (river.JobArgs, *river.InsertOpts) { return ReconcileArgs{}, nil },
				&river.PeriodicJobOpts{ID: "reconcile", RunOnStart: true}),
			river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
				func() (river.JobArgs, *river.InsertOpts) { return DigestsArgs{}, nil },
				&river.PeriodicJobOpts{ID: "stats_digests", RunOnStart: true}),
		}, f.chorePeriodicJobs(o.Now())...),
	}
	if stubbed {
		cfg.Test.Time = riverClock(o.Now)
	}
	client, err := river.NewClient(driverFor(o.DB, f.pgPool), cfg)
	if err != nil {
		return nil, fmt.Errorf("flow: river client: %w", err)
	}
	f.river = client
	// A few inserters: while one commits, the next batch gathers.
	f.intake = newIntake(f, 2)
	return f, nil
}

// choreDelay is how long after start a chore first runs: soon enough to catch
// up after downtime, late enough not to add to start-up's work.
const choreDelay = time.Minute

func (f *Flow) chorePeriodicJobs(start time.Time) []*river.PeriodicJob {
	var jobs []*river.PeriodicJob
	for _, c := range f.o.Chores {
		args := ChoreArgs{Name: c.Name}
		jobs = append(jobs, river.NewPeriodicJob(afterStart{first: start.Add(choreDelay), every: c.Interval},
			func() (river.JobArgs, *river.InsertOpts) { return args, nil },
			&river.PeriodicJobOpts{ID: "chore:" + c.Name}))
	}
	return jobs
}

// afterStart schedules a first run at a fixed time, then one every interval.
type afterStart struct {
	first time.Time
	every time.Duration
}

func (s afterStart) Next(t time.Time) time.Time {
	if t.Before(s.first) {
		return s.first
	}
	return t.Add(s.every)
}

// runChore runs the named chore; a name no longer configured is dropped.
func (f *Flow) runChore(ctx context.Context, name string) error {
	for _, c := range f.o.Chores {
		if c.Name == name {
			c.Run(ctx)
			return nil
		}
	}
	f.log.Warn("unknown chore, skipped", "chore", name)
	return nil
}

// Start runs the job workers until Stop.
func (f *Flow) Start(ctx context.Context) error {
	if err := f.river.Start(ctx); err != nil {
		return fmt.Errorf("flow: start workers: %w", err)
	}
	return nil
}

// stopGrace is how long Stop lets running jobs finish before it cancels
// them. No job sleeps in a limiter for longer than about a second, so a job
// in hand usually ends within it; a cancelled one is retried, here after a
// restart or at once by another replica.
const stopGrace = 2 * time.Second

// Stop lets running jobs finish for stopGrace (or less, as ctx allows),
// cancels the ones left, then closes the listener pool. Queued jobs stay in
// the database for the next start or another replica.
func (f *Flow) Stop(ctx context.Context) error {
	f.intake.close(ctx)
	soft, cancel := context.WithTimeout(ctx, stopGrace)
	err := f.river.Stop(soft)
	cancel()
	if err != nil {
		hard, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopGrace)
		err = f.river.StopAndCancel(hard)
		cancel()
	}
	if f.pgPool != nil {
		f.pgPool.Close()
	}
	return err
}

// enqueue inserts jobs inside tx: they run only if tx commits.
func (f *Flow) enqueue(ctx context.Context, tx *store.Tx, jobs ...river.JobArgs) error {
	params := make([]river.InsertManyParams, len(jobs))
	for i, j := range jobs {
		params[i] = river.InsertManyParams{Args: j}
	}
	if _, err := f.river.InsertManyTx(ctx, tx.SQL(), params); err != nil {
		return fmt.Errorf("flow: enqueue: %w", err)
	}
	return nil
}

// cappedBackoff retries after 1 s, 2 s, 4 s … up to 5 minutes, with 10%
// jitter. River's default (attempt⁴ seconds) would leave a post waiting 81 s
// after three failures of a short Telegram outage.
type cappedBackoff struct{}

func (cappedBackoff) NextRetry(job *rivertype.JobRow) time.Time {
	d := 5 * time.Minute
	if n := job.Attempt - 1; n < 9 {
		d = min(time.Second<<n, d)
	}
	jitter := time.Duration(rand.Int64N(int64(d/10) + 1))
	return time.Now().Add(d + jitter)
}

type errorLogger struct{ log *slog.Logger }

func (e errorLogger) HandleError(ctx context.Context, job *rivertype.JobRow, err error) *river.ErrorHandlerResult {
	e.log.Warn("job failed, will retry", "job", job.Kind, "job_id", job.ID, "attempt", job.Attempt, "err", err)
	return nil
}

func (e errorLogger) HandlePanic(ctx context.Context, job *rivertype.JobRow, panicVal any, trace string) *river.ErrorHandlerResult {
	e.log.Error("job panicked", "job", job.Kind, "job_id", job.ID, "panic", fmt.Sprint(panicVal), "trace", trace)
	return nil
}

// outcome maps a Telegram or amoCRM failure onto River's retry controls:
// honour retry_after by snoozing, give up on what can never succeed.
func outcome(err error) error {
	if err == nil {
		return nil
	}
	var ra *telegram.RetryAfterError
	if errors.As(err, &ra) {
		return river.JobSnooze(ra.After)
	}
	var busy *amocrm.BusyError
	if errors.As(err, &busy) {
		return river.JobSnooze(busy.After)
	}
	var ae *amocrm.Error
	if errors.As(err, &ae) {
		switch {
		case ae.StatusCode == 429 && ae.RetryAfter > 0:
			return river.JobSnooze(ae.RetryAfter)
		case ae.StatusCode == 400 || ae.StatusCode == 403:
			return river.JobCancel(err)
		}
	}
	if errors.Is(err, dispatch.ErrAccountOff) || errors.Is(err, amocrm.ErrUnauthorized) {
		return river.JobCancel(err)
	}
	return err
}

// PendingJobs counts jobs not finished yet (queued, running, waiting for a
// retry or snoozed), for readiness checks and tests. A ladder step waiting
// for its time is a timer, not pending work.
func (f *Flow) PendingJobs(ctx context.Context) (int64, error) {
	var n int64
	err := f.db.SQL().QueryRowContext(ctx,
		`SELECT COUNT(*) FROM river_job WHERE state IN ('available', 'running', 'retryable', 'scheduled', 'pending')
		 AND NOT (kind = 'order_timer' AND state = 'scheduled')`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("flow: count jobs: %w", err)
	}
	return n, nil
}

// Reconcile runs a reconciler pass now instead of waiting for the period.
func (f *Flow) Reconcile(ctx context.Context) error {
	_, err := f.river.Insert(ctx, ReconcileArgs{}, nil)
	return err
}
