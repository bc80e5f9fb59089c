package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river"
)

// Intake stores an authenticated amoCRM webhook delivery as the job that
// processes it; the HTTP answer waits only for this insert (shared with the
// deliveries arriving at the same moment).
func (f *Flow) Intake(ctx context.Context, accountID int64, body []byte) error {
	return f.intake.add(ctx, EventArgs{AccountID: accountID, Body: string(body)})
}

// EventsReceived counts the webhook deliveries stored for an account (the
// job rows River still keeps), for tests and diagnostics.
func (f *Flow) EventsReceived(ctx context.Context, accountID int64) (int, error) {
	res, err := f.river.JobList(ctx, river.NewJobListParams().Kinds(EventArgs{}.Kind()).First(10000))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, j := range res.Jobs {
		var a EventArgs
		if json.Unmarshal(j.EncodedArgs, &a) == nil && a.AccountID == accountID {
			n++
		}
	}
	return n, nil
}

// errStopped answers webhooks that arrive while the flow shuts down; amoCRM
// sees a 5xx and the delivery is not taken as accepted.
var errStopped = errors.New("flow: stopping")

// intakeBatch is how many waiting webhooks go into one insert at most.
const intakeBatch = 64

// intakeItem is one webhook waiting for its insert.
type intakeItem struct {
	args EventArgs
	done chan error
}

// intake groups webhooks that arrive together into one multi-row insert
// and one commit: under load, most of a webhook's cost was its own
// transaction. Each caller still gets its answer only after the commit
// that stores its delivery.
type intake struct {
	f     *Flow
	queue chan *intakeItem
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func newIntake(f *Flow, inserters int) *intake {
	in := &intake{f: f, queue: make(chan *intakeItem), stop: make(chan struct{})}
	for range inserters {
		in.wg.Add(1)
		go in.run()
	}
	return in
}

// add stores one delivery; it returns once it is committed.
func (in *intake) add(ctx context.Context, args EventArgs) error {
	it := &intakeItem{args: args, done: make(chan error, 1)}
	select {
	case in.queue <- it:
	case <-in.stop:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		// The insert may still commit; amoCRM's resend is then a duplicate
		// that dispatching absorbs.
		return ctx.Err()
	}
}

func (in *intake) run() {
	defer in.wg.Done()
	for {
		var first *intakeItem
		select {
		case first = <-in.queue:
		case <-in.stop:
			return
		}
		batch := []*intakeItem{first}
	more:
		for len(batch) < intakeBatch {
			select {
			case it := <-in.queue:
				batch = append(batch, it)
			default:
				break more
			}
		}
		params := make([]river.InsertManyParams, len(batch))
		for i, it := range batch {
			params[i] = river.InsertManyParams{Args: it.args}
		}
		// Not the callers' contexts: one gone caller must not fail the others.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := in.f.river.InsertMany(ctx, params)
		cancel()
		if err != nil {
			err = fmt.Errorf("flow: store webhook: %w", err)
		}
		for _, it := range batch {
			it.done <- err
		}
	}
}

// close lets the inserters finish the batch in hand and stop, waiting no
// longer than ctx allows.
func (in *intake) close(ctx context.Context) {
	in.once.Do(func() { close(in.stop) })
	done := make(chan struct{})
	go func() { in.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
