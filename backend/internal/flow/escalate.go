package flow

import (
	"context"
	"errors"
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// The escalation ladder of an order nobody takes (dispatch.Ladder). When an
// order opens, its steps are planned as timers (order_timers) and one River
// job per timer is inserted in the same transaction, scheduled for the
// step's time. The job's FireTimer is the once-gate: the order must still be
// open and the timer unfired, so a take, a withdrawal or the deal leaving
// the search cancels every later step, and a retried, rescued or duplicated
// job does nothing twice. Each step's effects are jobs of their own,
// inserted in the gate's transaction: a post to send (bump, fallback chat),
// an amoCRM task and note (task, expiry).

// TimerArgs fires one ladder step of an order.
type TimerArgs struct {
	OrderID string `json:"order_id"`
	Step    string `json:"step"`
	// After is the step's time after the order opened, as planned, for
	// the texts of the task and expiry steps.
	After time.Duration `json:"after"`
}

func (TimerArgs) Kind() string { return "order_timer" }

// SendPostArgs sends one more post of an order (a bump, the fallback chat's).
type SendPostArgs struct {
	PostID string `json:"post_id"`
}

func (SendPostArgs) Kind() string { return "send_order_post" }

func (SendPostArgs) InsertOpts() river.InsertOpts { return onceLive() }

// RetirePostArgs deletes the post a bump replaced (or points it at the new one).
type RetirePostArgs struct {
	PostID string `json:"post_id"`
}

func (RetirePostArgs) Kind() string { return "retire_order_post" }

func (RetirePostArgs) InsertOpts() river.InsertOpts { return onceLive() }

// OrderTaskArgs writes a ladder step's amoCRM task and note; After is the
// step's time (minutes for the task step, hours for expiry), for the texts,
// and At (unix seconds) when the step fired, which sets the task's deadline.
type OrderTaskArgs struct {
	EventID string `json:"event_id"`
	After   int    `json:"after"`
	At      int64  `json:"at"`
}

func (OrderTaskArgs) Kind() string { return "amo_order_task" }

func (OrderTaskArgs) InsertOpts() river.InsertOpts { return onceLive() }

// taskDue is how long the responsible user has for a ladder step's task.
const taskDue = 15 * time.Minute

// postingRetry is how often a step due while its order is still being posted
// (Telegram unreachable) looks again.
const postingRetry = time.Minute

func (f *Flow) registerEscalation(w *river.Workers) {
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[TimerArgs]) error {
		return outcome(f.fireTimer(ctx, j.Args))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[SendPostArgs]) error {
		return outcome(f.sendPost(ctx, j.Args.PostID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[RetirePostArgs]) error {
		return outcome(f.retirePost(ctx, j.Args.PostID))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[OrderTaskArgs]) error {
		return outcome(f.addOrderTask(ctx, j.Args))
	}))
}

// planLadder plans a new order's ladder in tx: its timers and their jobs.
func (f *Flow) planLadder(ctx context.Context, tx *store.Tx, s dispatch.Settings, o dispatch.Order) error {
	rule, _ := s.Rule(o.PipelineID)
	// The flow's clock, not the row's: River schedules by it.
	opened := f.o.Now()
	timers := rule.Ladder.Plan(opened, o.ChatID)
	if len(timers) == 0 {
		return nil
	}
	if err := tx.AddTimers(o, timers); err != nil {
		return err
	}
	params := make([]river.InsertManyParams, len(timers))
	for i, t := range timers {
		opts := onceLive()
		opts.ScheduledAt = t.At
		params[i] = river.InsertManyParams{Args: TimerArgs{OrderID: o.ID, Step: t.Kind, After: t.At.Sub(opened)}, InsertOpts: &opts}
	}
	if _, err := f.river.InsertManyTx(ctx, tx.SQL(), params); err != nil {
		return fmt.Errorf("flow: schedule ladder: %w", err)
	}
	return nil
}

// fireTimer makes one ladder step happen, once, if its order is still open.
func (f *Flow) fireTimer(ctx context.Context, args TimerArgs) error {
	var fallbackChat int64
	cur, err := f.db.OrderByID(ctx, args.OrderID)
	if errors.Is(err, dispatch.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	s, err := f.db.Settings(ctx, cur.AccountID)
	if err != nil {
		return err
	}
	rule, _ := s.Rule(cur.PipelineID)
	if args.Step == dispatch.TimerFallback {
		// The chat as the settings name it now: an admin who changed it
		// meant the new one.
		fallbackChat = rule.Ladder.FallbackChatID
		c, err := f.db.Chat(ctx, fallbackChat)
		if fallbackChat == 0 || fallbackChat == cur.ChatID || err != nil || !c.ActiveFor(cur.AccountID) {
			f.log.Warn("fallback chat not available, step skipped", "account_id", cur.AccountID, "order_id", cur.ID, "chat_id", fallbackChat)
			fallbackChat = 0
		}
	}
	firedAt := f.o.Now().Unix()
	var (
		o     dispatch.Order
		fired bool
	)
	err = f.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		o, fired, err = tx.FireTimer(args.OrderID, args.Step)
		if err != nil || !fired {
			return err
		}
		switch args.Step {
		case dispatch.TimerBump:
			p, err := tx.AddPost(o, dispatch.PostBump, o.ChatID)
			if err != nil {
				return err
			}
			return f.enqueue(ctx, tx, SendPostArgs{PostID: p.ID})
		case dispatch.TimerFallback:
			if fallbackChat == 0 {
				return nil
			}
			p, err := tx.AddPost(o, dispatch.PostFallback, fallbackChat)
			if err != nil {
				return err
			}
			return f.enqueue(ctx, tx, SendPostArgs{PostID: p.ID})
		case dispatch.TimerTask:
			ev, _, err := tx.AddEvent(dispatch.Event{AccountID: o.AccountID, OrderID: o.ID, Kind: dispatch.EventUntaken})
			if err != nil {
				return err
			}
			return f.enqueue(ctx, tx, OrderTaskArgs{EventID: ev.ID, After: int(args.After.Round(time.Minute) / time.Minute), At: firedAt})
		case dispatch.TimerExpire:
			if _, err := tx.ExpireOrder(o.ID); err != nil {
				return err
			}
			ev, _, err := tx.AddEvent(dispatch.Event{AccountID: o.AccountID, OrderID: o.ID, Kind: dispatch.EventExpired})
			if err != nil {
				return err
			}
			return f.enqueue(ctx, tx, WithdrawPostArgs{OrderID: o.ID},
				OrderTaskArgs{EventID: ev.ID, After: max(1, int(args.After.Round(time.Hour)/time.Hour)), At: firedAt})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !fired {
		if o.Status == dispatch.OrderPosting && o.Active {
			return river.JobSnooze(postingRetry)
		}
		return nil
	}
	f.log.Info("escalation step", "account_id", o.AccountID, "order_id", o.ID, "lead_id", o.LeadID, "step", args.Step)
	return nil
}

// sendPost sends a bump or a fallback post, unless its order was decided
// first. A crash between the send and its record sends it again on retry;
// the earlier message's buttons still act on the same order, and a press on
// it is answered and tidied like any second post (tidyCopy).
func (f *Flow) sendPost(ctx context.Context, postID string) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	p, err := f.db.Post(ctx, postID)
	if err != nil || p.MessageID != 0 || p.State != dispatch.PostSending {
		return err
	}
	o, err := f.db.OrderByID(ctx, p.OrderID)
	if err != nil {
		return err
	}
	if o.Status != dispatch.OrderOpen || !o.Active {
		return f.db.CancelPost(ctx, p.ID)
	}
	if c, err := f.db.Chat(ctx, p.ChatID); err != nil || !c.ActiveFor(o.AccountID) {
		return f.db.CancelPost(ctx, p.ID)
	}
	a, s, err := f.accountSettings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	msgID, err := f.o.Sender.SendHTML(ctx, p.ChatID, o.GroupText, buttons(i18n.Lang(s.Lang(a)), o.ID, s.ContactPolicy))
	if err != nil {
		var mig *telegram.MigratedError
		switch {
		case errors.As(err, &mig):
			if _, merr := f.db.MigrateChat(ctx, p.ChatID, mig.NewChatID, "supergroup"); merr != nil {
				return merr
			}
			return f.db.CancelPost(ctx, p.ID)
		case errors.Is(err, telegram.ErrChatGone):
			f.log.Warn("chat is gone, order not posted again", "order_id", o.ID, "chat_id", p.ChatID, "err", err)
			if _, derr := f.db.DeactivateChat(ctx, p.ChatID); derr != nil {
				return derr
			}
			return f.db.CancelPost(ctx, p.ID)
		}
		return err
	}
	var (
		rec      dispatch.Post
		recorded bool
	)
	err = f.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		rec, recorded, err = tx.RecordPost(p.ID, msgID)
		if err != nil || !recorded || rec.Kind != dispatch.PostBump || rec.State != dispatch.PostLive {
			return err
		}
		return f.enqueue(ctx, tx, RetirePostArgs{PostID: p.ID})
	})
	if err != nil {
		return err
	}
	f.log.Info("order posted again", "account_id", o.AccountID, "order_id", o.ID, "chat_id", p.ChatID, "message_id", msgID,
		"kind", p.Kind, "state", rec.State)
	// A decision that overtook the send: this message shows its outcome.
	// A fallback post recorded live is also seen by the decision's own
	// edits if they come later; the edit is the same.
	now, err := f.db.OrderByID(ctx, o.ID)
	if err != nil {
		return err
	}
	if !recorded || rec.State == dispatch.PostStray || now.Status != dispatch.OrderOpen {
		return f.tidyCopy(ctx, TidyCopyArgs{OrderID: o.ID, MessageID: msgID, ChatID: p.ChatID})
	}
	return nil
}

// retirePost deletes the post a bump replaced; where the bot may not delete
// it, the old post is edited to point at the new one, without buttons.
func (f *Flow) retirePost(ctx context.Context, postID string) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	p, err := f.db.Post(ctx, postID)
	if err != nil || p.ReplacedMessageID == 0 {
		return err
	}
	err = f.o.Sender.DeleteMessage(ctx, p.ChatID, p.ReplacedMessageID)
	switch {
	case err == nil, errors.Is(err, telegram.ErrMessageGone):
		return nil
	case !errors.Is(err, telegram.ErrNotDeletable):
		return err
	}
	o, err := f.db.OrderByID(ctx, p.OrderID)
	if err != nil {
		return err
	}
	a, s, err := f.accountSettings(ctx, o.AccountID)
	if err != nil {
		return err
	}
	lang := s.Lang(a)
	text := html.EscapeString(i18n.T(lang, "order.bumped"))
	if link := messageLink(p.ChatID, p.MessageID); link != "" {
		text += ` <a href="` + link + `">` + html.EscapeString(i18n.T(lang, "order.bumped_open")) + `</a>`
	}
	o.ChatID, o.MessageID = p.ChatID, p.ReplacedMessageID
	return f.editPost(ctx, o, text)
}

// messageLink is a t.me link to a message of a supergroup ("" for a basic
// group, whose messages have no links).
func messageLink(chatID int64, messageID int) string {
	id := strconv.FormatInt(chatID, 10)
	if !strings.HasPrefix(id, "-100") || messageID == 0 {
		return ""
	}
	return "https://t.me/c/" + strings.TrimPrefix(id, "-100") + "/" + strconv.Itoa(messageID)
}

// addOrderTask writes a ladder step into the deal: a task for its responsible
// user and a note. The task is looked for (same text, same deadline) before it
// is added, and the note by its marker, so a retry writes each once.
func (f *Flow) addOrderTask(ctx context.Context, args OrderTaskArgs) error {
	e, noted, _, err := f.db.Event(ctx, args.EventID)
	if err != nil {
		return err
	}
	o, err := f.db.OrderByID(ctx, e.OrderID)
	if err != nil {
		return err
	}
	a, s, api, err := f.tenant(ctx, o.AccountID)
	if err != nil {
		return err
	}
	lead, err := api.GetLead(ctx, o.LeadID, false)
	if errors.Is(err, amocrm.ErrNotFound) {
		return nil // the deal is gone: nobody to remind
	}
	if err != nil {
		return err
	}
	lang := s.Lang(a)
	due := time.Unix(args.At, 0).Add(taskDue)
	var text, note string
	if e.Kind == dispatch.EventExpired {
		text, note = i18n.T(lang, "task.expired", args.After), i18n.T(lang, "note.expired", args.After)
	} else {
		text = i18n.T(lang, "task.untaken", args.After)
		note = i18n.T(lang, "note.untaken", args.After, due.In(f.o.Location).Format("15:04"))
	}
	tasks, err := api.ListLeadTasks(ctx, o.LeadID)
	if err != nil && !errors.Is(err, amocrm.ErrNotFound) {
		return err
	}
	if !slices.ContainsFunc(tasks, func(t amocrm.Task) bool { return t.Text == text && t.CompleteTill == due.Unix() }) {
		if _, err := api.AddLeadTask(ctx, amocrm.Task{EntityID: o.LeadID, Text: text, CompleteTill: due.Unix(),
			ResponsibleUserID: lead.ResponsibleUserID}); err != nil {
			return err
		}
		f.log.Info("amoCRM task added", "account_id", o.AccountID, "order_id", o.ID, "lead_id", o.LeadID, "kind", e.Kind)
	}
	if noted {
		return nil
	}
	return f.noteOnce(ctx, api, o, e.ID, note)
}

// eachPost runs edit on the order's post and on its posts in other chats
// (the fallback chat's): after the decision every post shows it.
func (f *Flow) eachPost(ctx context.Context, o dispatch.Order, edit func(post dispatch.Order) error) error {
	if o.MessageID != 0 {
		if err := edit(o); err != nil {
			return err
		}
	}
	posts, err := f.db.LivePosts(ctx, o.ID)
	if err != nil {
		return err
	}
	for _, p := range posts {
		c := o
		c.ChatID, c.MessageID = p.ChatID, p.MessageID
		if err := edit(c); err != nil {
			return err
		}
	}
	return nil
}
