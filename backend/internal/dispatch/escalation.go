package dispatch

import (
	"slices"
	"time"
)

// Ladder is a pipeline's escalation of an order nobody takes: each step
// happens once, at its time after the order opened, unless a take, a
// withdrawal or the deal leaving the search ends the order first. A zero
// duration switches a step off.
type Ladder struct {
	// BumpAfter: post the order again at the bottom of its chat and delete
	// (or, where the bot may not, point) the old post.
	BumpAfter time.Duration
	// FallbackAfter: post it also to FallbackChatID, a wider group.
	FallbackAfter  time.Duration
	FallbackChatID int64
	// TaskAfter: an amoCRM task for the deal's responsible user, and a note.
	TaskAfter time.Duration
	// ExpireAfter: withdraw the order and give the manager a task.
	ExpireAfter time.Duration
}

// DefaultLadder is what a pipeline gets until its admin says otherwise: a
// bump after 15 minutes and a task after an hour.
func DefaultLadder() Ladder {
	return Ladder{BumpAfter: 15 * time.Minute, TaskAfter: 60 * time.Minute}
}

// Timer kinds of the ladder, in the order the steps usually come.
const (
	TimerBump     = "bump"
	TimerFallback = "fallback"
	TimerTask     = "task"
	TimerExpire   = "expire"
)

// Limits of the ladder's times, so a typo cannot schedule a step for next year.
const (
	maxStepAfter   = 7 * 24 * time.Hour
	maxExpireAfter = 30 * 24 * time.Hour
)

// Timer is one scheduled step of an order (a ladder step here; reminders add
// their own kinds): what happens and when. The deal card shows the earliest
// pending one.
type Timer struct {
	Kind string
	At   time.Time
}

// NextTimer is the earliest of the timers, or nil.
func NextTimer(timers ...Timer) *Timer {
	var out *Timer
	for i := range timers {
		if out == nil || timers[i].At.Before(out.At) {
			out = &timers[i]
		}
	}
	return out
}

// Plan lists the ladder's steps for an order opened at opened, earliest first.
// A fallback to the order's own chat is left out.
func (l Ladder) Plan(opened time.Time, chatID int64) []Timer {
	var out []Timer
	if l.BumpAfter > 0 {
		out = append(out, Timer{Kind: TimerBump, At: opened.Add(l.BumpAfter)})
	}
	if l.FallbackAfter > 0 && l.FallbackChatID != 0 && l.FallbackChatID != chatID {
		out = append(out, Timer{Kind: TimerFallback, At: opened.Add(l.FallbackAfter)})
	}
	if l.TaskAfter > 0 {
		out = append(out, Timer{Kind: TimerTask, At: opened.Add(l.TaskAfter)})
	}
	if l.ExpireAfter > 0 {
		out = append(out, Timer{Kind: TimerExpire, At: opened.Add(l.ExpireAfter)})
	}
	slices.SortStableFunc(out, func(a, b Timer) int { return a.At.Compare(b.At) })
	return out
}

// validate checks the ladder of a pipeline whose default chat is defaultChat.
func (l Ladder) validate(accountID, defaultChat int64, chats []Chat) (Ladder, error) {
	for _, d := range []time.Duration{l.BumpAfter, l.FallbackAfter, l.TaskAfter} {
		if d < 0 || d > maxStepAfter || d%time.Minute != 0 {
			return Ladder{}, Invalid("escalation times must be whole minutes between 0 (off) and %d", int(maxStepAfter/time.Minute))
		}
	}
	if l.ExpireAfter < 0 || l.ExpireAfter > maxExpireAfter || l.ExpireAfter%time.Hour != 0 {
		return Ladder{}, Invalid("expiry must be whole hours between 0 (off) and %d", int(maxExpireAfter/time.Hour))
	}
	if l.FallbackAfter == 0 {
		l.FallbackChatID = 0 // a chat without a time is not a step
	}
	if l.FallbackAfter > 0 {
		if l.FallbackChatID == 0 {
			return Ladder{}, Invalid("choose a fallback chat or switch the fallback off")
		}
		if !slices.ContainsFunc(chats, func(ch Chat) bool { return ch.ID == l.FallbackChatID && ch.ActiveFor(accountID) }) {
			return Ladder{}, Invalid("fallback chat %d is not an active chat of this account", l.FallbackChatID)
		}
		if l.FallbackChatID == defaultChat {
			return Ladder{}, Invalid("the fallback chat must differ from the pipeline's chat")
		}
	}
	return l, nil
}

// Post kinds besides an order's first post.
const (
	PostBump     = "bump"     // the order posted again at the bottom of its chat
	PostFallback = "fallback" // the order posted to the pipeline's fallback chat
)

// Post states.
const (
	PostSending   = "sending"   // decided, not answered by Telegram yet
	PostLive      = "live"      // sent and recorded; its buttons act on the order
	PostStray     = "stray"     // sent after the order was decided: shows the outcome
	PostCancelled = "cancelled" // not sent: the order was decided first
)

// Post is one more message of an order: a bump (which becomes the order's
// post, retiring ReplacedMessageID) or a fallback chat's copy. Its buttons are
// the order's: one winner across every post.
type Post struct {
	ID                string
	AccountID         int64
	OrderID           string
	Kind              string
	ChatID            int64
	MessageID         int
	ReplacedMessageID int
	State             string
}

// Event kinds of the ladder's steps that write to amoCRM.
const (
	EventUntaken = "untaken" // nobody took the order within the task step's time
	EventExpired = "expired" // the order expired and was withdrawn
)
