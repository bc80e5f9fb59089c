package flow

// Callback data of the order buttons: a one-letter action and the order id,
// well inside Telegram's 64 bytes.
const (
	ActionPhone = "p:"
	ActionTake  = "t:"
	// ActionStatus prefixes the executor card's buttons: a status code
	// (StatusData) and the order id, 39 bytes.
	ActionStatus = "s:"
	// StartContactPrefix marks a /start payload that asks for a contact (a
	// reveal id, which store makes start with it).
	StartContactPrefix = "c"
)

// Outcome is how a press ended for the presser.
type Outcome int

const (
	// Closed: the order was withdrawn or failed, is unknown in this chat, or
	// the button is not one this version makes.
	Closed Outcome = iota
	// Won: this press took the order; the contact is on its way privately.
	Won
	// WonOpenBot: this press took the order; the contact waits until the
	// winner opens the bot through the start link.
	WonOpenBot
	// AlreadyYours: the winner pressed again.
	AlreadyYours
	// AlreadyTaken: another executor won the order.
	AlreadyTaken
	// ContactSent: the contact is on its way privately.
	ContactSent
	// ContactOpenBot: the contact waits until the user opens the bot.
	ContactOpenBot
	// ContactExecutorOnly: the account gives the contact to the executor
	// alone, with the take.
	ContactExecutorOnly
	// StatusSaved: the executor's status press changed the order.
	StatusSaved
	// StatusAlready: the order already has that status (or a later one).
	StatusAlready
	// NotYours: someone other than the order's executor pressed its card.
	NotYours
	// ReleaseAsk: the card now asks the executor to confirm the release.
	ReleaseAsk
	// Released: the executor released the order.
	Released
	// ReleaseKept: the executor answered "no" to the release question.
	ReleaseKept
	// Confirmed: the executor confirmed the job time from a reminder.
	Confirmed
	// ConfirmedAlready: the job time was confirmed before.
	ConfirmedAlready
)

// PressResult tells the presser how a press ended.
type PressResult struct {
	Outcome Outcome
	// StartToken is set with WonOpenBot and ContactOpenBot: the answer sends
	// the user to t.me/<bot>?start=<token>, and the contact follows that /start.
	StartToken string
}
