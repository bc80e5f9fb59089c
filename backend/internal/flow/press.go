package flow

// Callback data of the order buttons: a one-letter action and the order id,
// well inside Telegram's 64 bytes.
const (
	ActionPhone = "p:"
	ActionTake  = "t:"
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
)

// PressResult tells the presser how a press ended.
type PressResult struct {
	Outcome Outcome
	// StartToken is set with WonOpenBot and ContactOpenBot: the answer sends
	// the user to t.me/<bot>?start=<token>, and the contact follows that /start.
	StartToken string
}
