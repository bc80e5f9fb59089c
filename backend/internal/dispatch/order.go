package dispatch

import (
	"errors"
	"slices"
	"time"
)

var (
	// ErrAlreadyTaken: another executor won the order first.
	ErrAlreadyTaken = errors.New("order already taken")
	// ErrOrderClosed: the order was withdrawn or its deal left the search stage.
	ErrOrderClosed = errors.New("order is no longer open")
	// ErrLinkExpired: a contact start link older than StartLinkTTL.
	ErrLinkExpired = errors.New("link expired")
)

// StartLinkTTL is how long a "Get client phone" start link delivers the
// contact: a link forwarded or opened days later must not.
const StartLinkTTL = 24 * time.Hour

// OrderStatus is the lifecycle of an order.
type OrderStatus string

const (
	OrderPosting   OrderStatus = "posting"   // accepted, the post is on its way
	OrderOpen      OrderStatus = "open"      // posted, waiting for an executor
	OrderTaken     OrderStatus = "taken"     // an executor won it
	OrderWithdrawn OrderStatus = "withdrawn" // the deal left the search stage or the manager withdrew it
	OrderFailed    OrderStatus = "failed"    // could not be posted (no chat, chat gone)
	OrderOnWay     OrderStatus = "on_way"    // the executor is on the way
	OrderStarted   OrderStatus = "started"   // the executor started the work
	OrderDone      OrderStatus = "done"      // the executor finished: the order is closed
	OrderReleased  OrderStatus = "released"  // the executor dropped out or was unassigned; the deal is searched again
	OrderEnded     OrderStatus = "ended"     // the manager closed the deal or moved it out of the flow under the executor
)

// ExecutorStatuses are the statuses an executor reports with the private
// card's buttons, in the order the card offers them; OrderReleased is the
// card's "Release".
var ExecutorStatuses = []OrderStatus{OrderOnWay, OrderStarted, OrderDone, OrderReleased}

// Transition is one step an order's status may take.
type Transition struct {
	From, To OrderStatus
	// ByPress: only a press on the order's post may make this step. A press
	// proves the post exists even when its sender died before recording it.
	ByPress bool
}

// Lifecycle is the one place that says which status may follow which. The
// store builds its conditional UPDATEs from it, so the database, not a read
// before the write, decides between concurrent writers.
var Lifecycle = []Transition{
	{From: OrderPosting, To: OrderOpen},                 // the post went out (or a press proved it)
	{From: OrderPosting, To: OrderTaken, ByPress: true}, // pressed before the post was recorded
	{From: OrderPosting, To: OrderWithdrawn},
	{From: OrderPosting, To: OrderFailed},
	{From: OrderOpen, To: OrderTaken},
	{From: OrderOpen, To: OrderWithdrawn},
	// The executor's side, after the take: forward only, so a repeated
	// press finds nothing to change.
	{From: OrderTaken, To: OrderOnWay},
	{From: OrderTaken, To: OrderStarted},
	{From: OrderOnWay, To: OrderStarted},
	{From: OrderTaken, To: OrderDone},
	{From: OrderOnWay, To: OrderDone},
	{From: OrderStarted, To: OrderDone},
	{From: OrderTaken, To: OrderReleased},
	{From: OrderOnWay, To: OrderReleased},
	{From: OrderStarted, To: OrderReleased},
	{From: OrderTaken, To: OrderEnded},
	{From: OrderOnWay, To: OrderEnded},
	{From: OrderStarted, To: OrderEnded},
}

// CanBecome reports whether the lifecycle lets from become to; pressed says
// whether a press on the post asks for it.
func CanBecome(from, to OrderStatus, pressed bool) bool {
	for _, t := range Lifecycle {
		if t.From == from && t.To == to && (pressed || !t.ByPress) {
			return true
		}
	}
	return false
}

// Sources lists the statuses that may become to, in the table's order.
func Sources(to OrderStatus, pressed bool) []OrderStatus {
	var out []OrderStatus
	for _, t := range Lifecycle {
		if t.To == to && (pressed || !t.ByPress) && !slices.Contains(out, t.From) {
			out = append(out, t.From)
		}
	}
	return out
}

// Takeable reports whether a "Take order" press may win the order now.
func (o Order) Takeable(pressed bool) bool { return CanBecome(o.Status, OrderTaken, pressed) }

// CanWithdraw reports whether the order may still end without an executor.
func (o Order) CanWithdraw() bool { return CanBecome(o.Status, OrderWithdrawn, false) }

// AwaitsPost reports whether the order's post still has to be sent.
func (o Order) AwaitsPost() bool { return o.Status == OrderPosting && o.MessageID == 0 }

// ContactAllowed: a client's contact goes out only for an order that is open
// or in its executor's hands; a withdrawn, failed, released or ended one has
// nobody to call the client.
func (o Order) ContactAllowed() bool { return o.Status == OrderOpen || o.InProgress() }

// Assigned reports whether an executor won the order and still holds it or
// finished it (taken, on the way, started, done).
func (o Order) Assigned() bool {
	return o.Status == OrderDone || o.InProgress()
}

// InProgress reports whether the executor works on the order: the private
// card's buttons act (taken, on the way, started).
func (o Order) InProgress() bool {
	return CanBecome(o.Status, OrderDone, false)
}

// TakenBy reports whether the order is taken by this Telegram user.
func (o Order) TakenBy(telegramID int64) bool {
	return o.Assigned() && o.ExecutorID == telegramID
}

// TakenByOther reports whether another user won the order.
func (o Order) TakenByOther(telegramID int64) bool {
	return o.Assigned() && o.ExecutorID != telegramID
}

// Reached reports whether the order has reached status to or a later one on
// the executor's path, so a press asking for it again changes nothing.
func (o Order) Reached(to OrderStatus) bool {
	if o.Status == to {
		return true
	}
	return to != OrderDone && CanBecome(to, o.Status, false)
}

// Order is one round of searching for an executor for a deal.
type Order struct {
	ID               string
	AccountID        int64
	LeadID           int64
	PipelineID       int64
	StageID          int64
	ChatID           int64
	MessageID        int
	Status           OrderStatus
	Active           bool
	GroupText        string
	ExecutorID       int64
	ExecutorName     string
	ExecutorUsername string
	TakenAt          *time.Time
	FailReason       string
	// CardMessageID and CardText are the executor's private card (the order
	// with the client's contact), edited with each status.
	CardMessageID int
	CardText      string
	// PrevResponsibleID is the deal's responsible user before the take,
	// restored when the executor releases the order.
	PrevResponsibleID int64
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Executor returns the winner of a taken order.
func (o Order) Executor() Executor {
	first, last, _ := cutName(o.ExecutorName)
	return Executor{TelegramID: o.ExecutorID, FirstName: first, LastName: last, Username: o.ExecutorUsername}
}

func cutName(full string) (string, string, bool) {
	for i := 0; i < len(full); i++ {
		if full[i] == ' ' {
			return full[:i], full[i+1:], true
		}
	}
	return full, "", false
}

// FullName is "First Last".
func (e Executor) FullName() string {
	if e.LastName == "" {
		return e.FirstName
	}
	return e.FirstName + " " + e.LastName
}

// Reveal is one request for a deal's client contact by a Telegram user.
type Reveal struct {
	ID          string
	AccountID   int64
	OrderID     string
	TelegramID  int64
	RequestedAt time.Time
	SentAt      *time.Time
}

// Event kinds of an order's timeline besides its executor statuses.
const (
	EventPosted  = "posted"
	EventTaken   = "taken"
	EventContact = "contact" // one per person who received the client's contact
)

// Event is one step of an order's timeline (posted, taken, on the way,
// started, done, released, a contact sent), as the deal card shows it and as
// the note written to the deal names it. A step happens once per order and
// person, which the store enforces.
type Event struct {
	ID         string
	AccountID  int64
	OrderID    string
	Kind       string // an OrderStatus of the executor's path or an Event* kind
	TelegramID int64
	Actor      string // "Name (@login)"
	At         time.Time
}
