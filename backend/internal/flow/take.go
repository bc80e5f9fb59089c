package flow

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/riverqueue/river"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/orderview"
	"github.com/amodispatch/amodispatch/backend/internal/store"
	"github.com/amodispatch/amodispatch/backend/internal/telegram"
)

// reachable reports whether the bot may write to the user privately.
func (f *Flow) reachable(ctx context.Context, telegramID int64) bool {
	e, err := f.db.Executor(ctx, telegramID)
	return err == nil && e.Started && !e.Blocked
}

// probeTimeout bounds the question to Telegram inside a press, which must
// still be answered within Telegram's limit; a slow answer means the start
// link, which always works.
const probeTimeout = 2 * time.Second

// probeForget is how long a user Telegram called unreachable is not asked
// again: only their /start (which this database sees) can change that, so
// repeated presses cost answers, not calls.
const probeForget = time.Minute

// reachableNow is reachable, and for a user not known to have started the
// bot asks Telegram: the user may have started it where this database did
// not see it. A yes is recorded, so the question is asked once.
func (f *Flow) reachableNow(ctx context.Context, user dispatch.Executor) bool {
	if f.reachable(ctx, user.TelegramID) {
		return true
	}
	if f.o.Sender == nil || f.probeMissed(user.TelegramID) {
		return false
	}
	ok, err := f.o.Sender.Reachable(ctx, user.TelegramID, probeTimeout)
	if err != nil {
		f.log.Warn("telegram could not tell whether the user started the bot", "telegram_id", user.TelegramID, "err", err)
		return false
	}
	if !ok {
		f.rememberProbeMiss(user.TelegramID)
		return false
	}
	if err := f.db.SaveExecutor(ctx, user, true); err != nil {
		f.log.Warn("could not record a user who started the bot", "telegram_id", user.TelegramID, "err", err)
	}
	f.log.Info("user started the bot unseen, recorded", "telegram_id", user.TelegramID)
	return true
}

func (f *Flow) probeMissed(telegramID int64) bool {
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	at, ok := f.probeMisses[telegramID]
	return ok && time.Since(at) < probeForget
}

func (f *Flow) rememberProbeMiss(telegramID int64) {
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	if f.probeMisses == nil || len(f.probeMisses) >= 10000 {
		// Bounded: forgetting early only costs one more question.
		f.probeMisses = map[int64]time.Time{}
	}
	f.probeMisses[telegramID] = time.Now()
}

// Take decides the order for the first presser, atomically in the database,
// and enqueues everything that follows in the same transaction: the group
// edit, the winner's private order, the amoCRM update and the note. A lost
// race, a closed order or an unknown one is an outcome, not an error.
func (f *Flow) Take(ctx context.Context, chatID int64, messageID int, orderID string, user dispatch.Executor) (PressResult, error) {
	// A storm of presses on a decided order is answered from one read, with
	// no write and no row lock to queue on; the race itself is still decided
	// by TakeOrder's conditional UPDATE below.
	//
	// Presses on one order in this process take turns at the decision: the
	// first decides, and the others find the order decided with one more
	// read instead of queueing on the row's lock in the database, each
	// holding a transaction and a connection.
	decided := func() (dispatch.Order, bool) {
		cur, err := f.db.OrderByID(ctx, orderID)
		ok := err == nil && cur.ChatID == chatID && cur.Status == dispatch.OrderTaken
		if ok {
			f.rememberDecided(cur)
		}
		return cur, ok
	}
	if cur, ok := f.recallDecided(orderID); ok && cur.ChatID == chatID {
		return f.pressedTaken(ctx, cur, chatID, messageID, user), nil
	}
	if cur, ok := decided(); ok {
		return f.pressedTaken(ctx, cur, chatID, messageID, user), nil
	}
	unlock := f.lockOrder(orderID)
	if cur, ok := f.recallDecided(orderID); ok && cur.ChatID == chatID { // decided while this press waited its turn
		unlock()
		return f.pressedTaken(ctx, cur, chatID, messageID, user), nil
	}
	if cur, ok := decided(); ok {
		unlock()
		return f.pressedTaken(ctx, cur, chatID, messageID, user), nil
	}
	var (
		o     dispatch.Order
		token string
	)
	err := f.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		o, err = tx.TakeOrder(chatID, messageID, orderID, user)
		if err != nil {
			return err // a lost race costs one UPDATE and one SELECT
		}
		reachable, err := tx.SaveExecutor(user)
		if err != nil {
			return err
		}
		if _, _, err := tx.AddEvent(dispatch.Event{AccountID: o.AccountID, OrderID: o.ID, Kind: dispatch.EventTaken,
			TelegramID: user.TelegramID, Actor: orderview.ExecutorLabel(executorView(o))}); err != nil {
			return err
		}
		reveal, err := tx.CreateReveal(o, user.TelegramID, store.RevealWinner)
		if err != nil {
			return err
		}
		jobs := []river.JobArgs{EditTakenArgs{AccountID: o.AccountID, OrderID: o.ID}, UpdateLeadArgs{AccountID: o.AccountID, OrderID: o.ID},
			AddNoteArgs{AccountID: o.AccountID, OrderID: o.ID}, PlanRemindersArgs{AccountID: o.AccountID, OrderID: o.ID}}
		if isCopy(o, chatID, messageID) {
			jobs = append(jobs, copyArgs(o, chatID, messageID))
		}
		if reachable {
			jobs = append(jobs, SendContactArgs{AccountID: o.AccountID, RevealID: reveal.ID, TelegramID: user.TelegramID, Winner: true})
		} else {
			token = reveal.ID
		}
		return f.enqueue(ctx, tx, jobs...)
	})
	if (err == nil || errors.Is(err, dispatch.ErrAlreadyTaken)) && o.Status == dispatch.OrderTaken {
		f.rememberDecided(o)
	}
	unlock()
	switch {
	case errors.Is(err, dispatch.ErrAlreadyTaken):
		return f.pressedTaken(ctx, o, chatID, messageID, user), nil
	case errors.Is(err, dispatch.ErrOrderClosed):
		f.tidyIfCopy(ctx, o, chatID, messageID)
		return PressResult{Outcome: Closed}, nil
	case errors.Is(err, dispatch.ErrNotFound):
		return PressResult{Outcome: Closed}, nil
	case err != nil:
		return PressResult{}, err
	}
	// Only the winner is asked about, after the decision: the question to
	// Telegram must not hold the transaction that decides the race.
	if token != "" && f.reachableNow(ctx, user) {
		qerr := f.db.InTx(ctx, func(tx *store.Tx) error {
			return f.enqueue(ctx, tx, SendContactArgs{AccountID: o.AccountID, RevealID: token, TelegramID: user.TelegramID, Winner: true})
		})
		if qerr == nil {
			token = ""
		} else {
			f.log.Warn("could not queue the winner's contact, the start link stays", "order_id", orderID, "err", qerr)
		}
	}
	f.log.Info("order taken", "account_id", o.AccountID, "order_id", orderID, "chat_id", chatID, "executor_id", user.TelegramID)
	if token != "" {
		return PressResult{Outcome: WonOpenBot, StartToken: token}, nil
	}
	return PressResult{Outcome: Won}, nil
}

// decidedOrder is an order this process saw taken. Presses on it are
// answered from memory for decidedFor: the answer ("taken", or "yours" to the
// executor) depends only on who took it, and nothing is written for them. An
// order released meanwhile is answered "taken" instead of "closed" for that
// long; its buttons are gone from the post by then.
type decidedOrder struct {
	order dispatch.Order
	until time.Time
}

const decidedFor = 10 * time.Second

func (f *Flow) rememberDecided(o dispatch.Order) {
	f.decidedMu.Lock()
	defer f.decidedMu.Unlock()
	now := time.Now()
	if f.decided == nil || len(f.decided) >= 1000 {
		for id, d := range f.decided {
			if now.After(d.until) {
				delete(f.decided, id)
			}
		}
		if f.decided == nil || len(f.decided) >= 1000 {
			f.decided = map[string]decidedOrder{} // bounded: forgetting costs a read
		}
	}
	f.decided[o.ID] = decidedOrder{order: o, until: now.Add(decidedFor)}
}

func (f *Flow) recallDecided(orderID string) (dispatch.Order, bool) {
	f.decidedMu.Lock()
	defer f.decidedMu.Unlock()
	d, ok := f.decided[orderID]
	return d.order, ok && time.Now().Before(d.until)
}

// lockOrder serialises this process's takes of one order; it returns the
// unlock.
func (f *Flow) lockOrder(orderID string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(orderID))
	mu := &f.orderLocks[h.Sum32()%uint32(len(f.orderLocks))]
	mu.Lock()
	return mu.Unlock
}

// pressedTaken is the outcome of a press on an order someone has taken.
func (f *Flow) pressedTaken(ctx context.Context, o dispatch.Order, chatID int64, messageID int, user dispatch.Executor) PressResult {
	f.tidyIfCopy(ctx, o, chatID, messageID)
	if o.TakenBy(user.TelegramID) {
		return PressResult{Outcome: AlreadyYours}
	}
	return PressResult{Outcome: AlreadyTaken}
}

// isCopy reports whether a pressed message is not the order's recorded post:
// a copy a timed-out send left, a post a bump replaced, or a post in the
// fallback chat (whose edits then cost one call more, the same edit).
func isCopy(o dispatch.Order, chatID int64, messageID int) bool {
	return o.ID != "" && messageID != 0 && (messageID != o.MessageID || (chatID != 0 && chatID != o.ChatID))
}

func copyArgs(o dispatch.Order, chatID int64, messageID int) TidyCopyArgs {
	args := TidyCopyArgs{AccountID: o.AccountID, OrderID: o.ID, MessageID: messageID}
	if chatID != o.ChatID {
		args.ChatID = chatID
	}
	return args
}

// tidyIfCopy queues the edit of a pressed post that is not the order's
// recorded one, once the order is decided. Best effort: the next press on the
// copy asks again.
func (f *Flow) tidyIfCopy(ctx context.Context, o dispatch.Order, chatID int64, messageID int) {
	if !isCopy(o, chatID, messageID) {
		return
	}
	err := f.db.InTx(ctx, func(tx *store.Tx) error {
		return f.enqueue(ctx, tx, copyArgs(o, chatID, messageID))
	})
	if err != nil {
		f.log.Warn("could not queue the edit of a second post", "order_id", o.ID, "message_id", messageID, "err", err)
		return
	}
	f.log.Info("a second post of the order was pressed", "account_id", o.AccountID, "order_id", o.ID, "chat_id", o.ChatID, "message_id", messageID)
}

// RequestContact handles "Get client phone": the contact goes privately to
// the presser — while the order is open, or to its executor once taken.
func (f *Flow) RequestContact(ctx context.Context, chatID int64, messageID int, orderID string, user dispatch.Executor) (PressResult, error) {
	o, err := f.db.OrderInChat(ctx, chatID, orderID)
	if errors.Is(err, dispatch.ErrNotFound) {
		return PressResult{Outcome: Closed}, nil
	}
	if err != nil {
		return PressResult{}, err
	}
	if o.AwaitsPost() && messageID != 0 {
		// Pressed before the post's message id was recorded (its sender
		// died): the press proves the post, so record it and go on.
		if o, err = f.db.ConfirmPosted(ctx, chatID, orderID, messageID); err != nil {
			return PressResult{}, err
		}
	}
	if o.Status != dispatch.OrderOpen {
		f.tidyIfCopy(ctx, o, chatID, messageID)
	}
	switch {
	case o.TakenByOther(user.TelegramID):
		return PressResult{Outcome: AlreadyTaken}, nil
	case !o.ContactAllowed():
		return PressResult{Outcome: Closed}, nil
	}
	if !o.TakenBy(user.TelegramID) {
		s, err := f.db.Settings(ctx, o.AccountID)
		if err != nil {
			return PressResult{}, err
		}
		if s.ContactPolicy == dispatch.ContactExecutorOnly {
			return PressResult{Outcome: ContactExecutorOnly}, nil
		}
	}
	if err := f.db.SaveExecutor(ctx, user, false); err != nil {
		return PressResult{}, err
	}
	reachable := f.reachableNow(ctx, user)
	res := PressResult{Outcome: ContactSent}
	// Pressing again costs an answer, not another message: the press reuses
	// the user's reveal, a sent one is not sent again, and its job is unique.
	err = f.db.InTx(ctx, func(tx *store.Tx) error {
		reveal, err := tx.CreateReveal(o, user.TelegramID, store.RevealRequest)
		if err != nil || reveal.SentAt != nil {
			return err
		}
		if !reachable {
			res = PressResult{Outcome: ContactOpenBot, StartToken: reveal.ID}
			return nil
		}
		return f.enqueue(ctx, tx, SendContactArgs{AccountID: o.AccountID, RevealID: reveal.ID, TelegramID: user.TelegramID})
	})
	if err != nil {
		return PressResult{}, err
	}
	return res, nil
}

// StartToken handles `/start <token>` from a user sent to the bot by a
// contact request they could not receive before.
func (f *Flow) StartToken(ctx context.Context, user dispatch.Executor, token string) error {
	r, err := f.db.Reveal(ctx, user.TelegramID, token)
	if err != nil {
		return err
	}
	if r.SentAt == nil && f.db.Now().Sub(r.RequestedAt) > dispatch.StartLinkTTL {
		return fmt.Errorf("start link of order %s: %w", r.OrderID, dispatch.ErrLinkExpired)
	}
	o, err := f.db.OrderByID(ctx, r.OrderID)
	if err != nil {
		return err
	}
	if !o.ContactAllowed() {
		return fmt.Errorf("start link of order %s: %w", o.ID, dispatch.ErrOrderClosed)
	}
	return f.db.InTx(ctx, func(tx *store.Tx) error {
		return f.enqueue(ctx, tx, SendContactArgs{AccountID: o.AccountID, RevealID: r.ID, TelegramID: user.TelegramID, Winner: o.ExecutorID == user.TelegramID})
	})
}

// sendContact writes the client's contact (and the order) to one user. A
// reveal is sent once; after the take only the executor may receive it.
func (f *Flow) sendContact(ctx context.Context, args SendContactArgs) error {
	if f.o.Sender == nil {
		return errNoBot
	}
	r, err := f.db.Reveal(ctx, args.TelegramID, args.RevealID)
	if err != nil || r.SentAt != nil {
		return err
	}
	o, err := f.db.OrderByID(ctx, r.OrderID)
	if err != nil {
		return err
	}
	lang := "ru"
	recipient := dispatch.Executor{TelegramID: args.TelegramID}
	if e, err := f.db.Executor(ctx, args.TelegramID); err == nil {
		lang, recipient = i18n.Lang(e.LanguageCode), e
	}
	var (
		text string
		rows [][]telegram.Button
		card bool // the executor's card: status buttons, edited with each status
		sent bool // the client's contact is in the message
	)
	switch {
	case o.TakenByOther(args.TelegramID):
		text = i18n.T(lang, "contact.taken", o.LeadID)
	case !o.ContactAllowed():
		// Withdrawn between the press and this job: the client is no
		// longer anyone's to call.
		text = i18n.T(lang, "contact.closed", o.LeadID)
	default:
		var err error
		text, sent, err = f.privateText(ctx, o, lang, args.Winner)
		if err != nil {
			return err
		}
		if o.TakenBy(args.TelegramID) {
			_, s, err := f.accountSettings(ctx, o.AccountID)
			if err != nil {
				return err
			}
			rule, _ := s.Rule(o.PipelineID)
			card, rows = true, statusButtons(lang, o, rule)
		}
	}
	msgID, err := f.o.Sender.SendHTML(ctx, args.TelegramID, text, rows)
	if err != nil {
		if errors.Is(err, telegram.ErrUserUnreachable) {
			f.log.Warn("executor cannot be written to", "telegram_id", args.TelegramID, "order_id", o.ID, "err", err)
			return f.db.SetExecutorBlocked(ctx, args.TelegramID, true)
		}
		return err
	}
	f.log.Info("contact sent", "account_id", o.AccountID, "order_id", o.ID, "telegram_id", args.TelegramID)
	if card {
		if err := f.db.SetCard(ctx, o.ID, msgID, text); err != nil {
			return err
		}
	}
	if sent && !card {
		// One note per person who has the client's contact; the executor's
		// is the take's own note.
		err := f.db.InTx(ctx, func(tx *store.Tx) error {
			ev, added, err := tx.AddEvent(dispatch.Event{AccountID: o.AccountID, OrderID: o.ID, Kind: dispatch.EventContact,
				TelegramID: args.TelegramID, Actor: orderview.ExecutorLabel(orderview.Executor{TelegramID: recipient.TelegramID,
					FirstName: recipient.FirstName, LastName: recipient.LastName, Username: recipient.Username})})
			if err != nil || !added {
				return err
			}
			return f.enqueue(ctx, tx, EventWriteArgs{AccountID: o.AccountID, EventID: ev.ID})
		})
		if err != nil {
			return err
		}
	}
	return f.db.MarkRevealSent(ctx, r.ID)
}

// executorFieldText is what the deal's executor field shows.
func executorFieldText(o dispatch.Order) string {
	return fmt.Sprintf("%s, Telegram ID %d", orderview.ExecutorLabel(executorView(o)), o.ExecutorID)
}

// privateText renders the order with the client's contact for one user, as
// amoCRM has the deal now; winner adds "you took it". It reports whether the
// deal has a contact to show.
func (f *Flow) privateText(ctx context.Context, o dispatch.Order, lang string, winner bool) (string, bool, error) {
	api, lead, view, err := f.orderContext(ctx, o, true)
	if err != nil {
		return "", false, err
	}
	view.Lang = lang
	var contact *amocrm.Contact
	if id := lead.MainContactID(); id != 0 {
		c, err := api.GetContact(ctx, id)
		if err != nil && !errors.Is(err, amocrm.ErrNotFound) {
			return "", false, err
		}
		if err == nil {
			contact = &c
		}
	}
	text := orderview.Private(lead, contact, view)
	if winner {
		text = i18n.T(lang, "order.yours") + "\n\n" + text
	}
	if contact == nil {
		text += "\n\n" + i18n.T(lang, "contact.none")
	}
	return text, contact != nil, nil
}
