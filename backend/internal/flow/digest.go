package flow

import (
	"context"
	"errors"
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// The weekly digest (issue #15, optional): an account's admin picks a chat in
// the settings, and every Monday from 09:00 in the account's time zone it
// gets the past week's figures. An hourly River periodic job (one replica
// runs it) checks the accounts; the week's row in stats_digests, written
// with the sending job, makes it one digest a week.

// DigestHour is when, on Monday in the account's zone, the digest is due.
const DigestHour = 9

// DigestsArgs is the hourly check.
type DigestsArgs struct{}

func (DigestsArgs) Kind() string { return "stats_digests" }

// SendDigestArgs sends an account's digest of the week before Week (the
// Monday it is sent, YYYY-MM-DD in the account's zone).
type SendDigestArgs struct {
	AccountID int64  `json:"account_id"`
	Week      string `json:"week"`
}

func (SendDigestArgs) Kind() string { return "send_stats_digest" }

func (f *Flow) now() time.Time {
	if f.o.Now != nil {
		return f.o.Now()
	}
	return time.Now()
}

// accountZone is the account's time zone from amoCRM (cached with the
// reminders' zones).
func (f *Flow) accountZone(ctx context.Context, accountID int64) (*time.Location, error) {
	api, err := f.o.CRM.API(ctx, accountID)
	if err != nil {
		return nil, err
	}
	name, err := f.zoneName(ctx, api, accountID)
	if err != nil {
		return nil, err
	}
	return time.LoadLocation(name)
}

// checkDigests queues the digests due: Monday from DigestHour in the
// account's zone, once a week.
func (f *Flow) checkDigests(ctx context.Context) error {
	// Monday 09:00 anywhere (UTC-12 to UTC+14) falls on Sunday to Tuesday in
	// UTC; the other days ask amoCRM nothing.
	switch f.now().UTC().Weekday() {
	case time.Sunday, time.Monday, time.Tuesday:
	default:
		return nil
	}
	targets, err := f.db.DigestTargets(ctx)
	if err != nil {
		return err
	}
	for _, t := range targets {
		loc, err := f.accountZone(ctx, t.AccountID)
		if err != nil {
			f.log.Warn("weekly digest: account's time zone unknown, retried next hour", "account_id", t.AccountID, "err", err)
			continue
		}
		local := f.now().In(loc)
		if local.Weekday() != time.Monday || local.Hour() < DigestHour {
			continue
		}
		week := local.Format(time.DateOnly)
		err = f.db.InTx(ctx, func(tx *store.Tx) error {
			claimed, err := tx.ClaimDigest(t.AccountID, week, t.ChatID)
			if err != nil || !claimed {
				return err
			}
			return f.enqueue(ctx, tx, SendDigestArgs{AccountID: t.AccountID, Week: week})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// sendDigest posts the week's figures to the digest's chat, once.
func (f *Flow) sendDigest(ctx context.Context, args SendDigestArgs) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	chatID, sent, err := f.db.Digest(ctx, args.AccountID, args.Week)
	if err != nil || sent {
		return err
	}
	if c, err := f.db.Chat(ctx, chatID); err != nil || !c.ActiveFor(args.AccountID) {
		f.log.Info("weekly digest: its chat is no longer linked, skipped", "account_id", args.AccountID, "chat_id", chatID)
		return nil
	}
	loc, err := f.accountZone(ctx, args.AccountID)
	if err != nil {
		return err
	}
	monday, err := time.ParseInLocation(time.DateOnly, args.Week, loc)
	if err != nil {
		return fmt.Errorf("digest week %q: %w", args.Week, err)
	}
	st, err := f.db.Stats(ctx, dispatch.StatsQuery{AccountID: args.AccountID, From: monday.AddDate(0, 0, -7), To: monday})
	if err != nil {
		return err
	}
	a, s, err := f.accountSettings(ctx, args.AccountID)
	if err != nil {
		return err
	}
	if _, err := f.o.Sender.SendHTML(ctx, chatID, digestText(i18n.Lang(s.Lang(a)), st), nil); err != nil {
		if errors.Is(err, telegram.ErrChatGone) {
			f.log.Info("weekly digest: the chat is gone, skipped", "account_id", args.AccountID, "chat_id", chatID, "err", err)
			return nil
		}
		return err // retried by the job, pace and 429s included
	}
	f.log.Info("weekly digest sent", "account_id", args.AccountID, "chat_id", chatID, "week", args.Week)
	return f.db.MarkDigestSent(ctx, args.AccountID, args.Week)
}

// digestText is the digest's message: the week's totals, the take times and
// the executor who took the most.
func digestText(lang string, st dispatch.Stats) string {
	x := st.Totals
	dur := func(d *time.Duration) string {
		if d == nil {
			return "—"
		}
		return d.Round(time.Second).String()
	}
	share := 0
	if x.Posted > 0 {
		share = int(100 * x.Within15m / x.Posted)
	}
	lines := []string{
		"<b>" + html.EscapeString(i18n.T(lang, "digest.title", st.Query.From.Format("02.01"), st.Query.To.AddDate(0, 0, -1).Format("02.01"))) + "</b>",
		html.EscapeString(i18n.T(lang, "digest.orders", x.Posted, x.Taken, x.Done, x.Released, x.Withdrawn)),
		html.EscapeString(i18n.T(lang, "digest.take", dur(x.TakeMedian), dur(x.TakeP90), share)),
	}
	if len(st.Executors) > 0 {
		e := st.Executors[0]
		lines = append(lines, html.EscapeString(i18n.T(lang, "digest.top", e.Name, e.Taken)))
	}
	return strings.Join(lines, "\n")
}

func (f *Flow) registerDigests(w *river.Workers) {
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[DigestsArgs]) error {
		return f.checkDigests(ctx)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[SendDigestArgs]) error {
		return outcome(f.sendDigest(ctx, j.Args))
	}))
}
