package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
)

// maxLimiterWait is the longest a job waits on a worker for amoCRM's rate
// limit; a later slot snoozes the job (the Telegram pacer has its own bound
// of about a second). A worker that sleeps is one another account's job
// cannot use.
const maxLimiterWait = time.Second

// fairShare is worker middleware: it bounds how long jobs wait in limiters
// and how many jobs of one account run at once in this process, so that one
// account's bulk cannot hold every worker. A job over its account's share
// gives its worker back at once and is snoozed briefly; River's fetch then
// reaches other accounts' jobs.
type fairShare struct {
	river.MiddlewareDefaults
	perAccount int

	mu      sync.Mutex
	running map[int64]int
}

func newFairShare(workers int) *fairShare {
	return &fairShare{perAccount: fairSharePerAccount(workers), running: map[int64]int{}}
}

// fairSharePerAccount is a quarter of the workers, at least two: four
// accounts busy at once still leave each its share.
func fairSharePerAccount(workers int) int { return max(2, workers/4) }

// fairShareSnooze is how long a job over its account's share waits before
// it is fetched again; short, so the account's work keeps flowing as soon as
// one of its running jobs ends.
func fairShareSnooze() time.Duration {
	return 200*time.Millisecond + time.Duration(rand.Int64N(int64(200*time.Millisecond)))
}

func (s *fairShare) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	ctx = amocrm.WithMaxWait(ctx, maxLimiterWait)
	account := jobAccount(job)
	if account == 0 {
		return doInner(ctx)
	}
	if !s.acquire(account) {
		return river.JobSnooze(fairShareSnooze())
	}
	defer s.release(account)
	return doInner(ctx)
}

func (s *fairShare) acquire(account int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[account] >= s.perAccount {
		return false
	}
	s.running[account]++
	return true
}

func (s *fairShare) release(account int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[account]--; s.running[account] <= 0 {
		delete(s.running, account)
	}
}

// jobAccount is the account a job's arguments name. Every kind of an
// order's work names it (see jobs.go); 0 for the reconciler's fan-out,
// chores and /my, and for jobs queued by a version before every kind
// carried it (those run once outside the share).
func jobAccount(job *rivertype.JobRow) int64 {
	// The keys are read in order and the reading stops at account_id, the
	// first field of most arguments: a webhook's body is not scanned.
	dec := json.NewDecoder(bytes.NewReader(job.EncodedArgs))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return 0
		}
		if key == "account_id" {
			var id int64
			if dec.Decode(&id) != nil {
				return 0
			}
			return id
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return 0
		}
	}
	return 0
}
