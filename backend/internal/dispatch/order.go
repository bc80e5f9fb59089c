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
)

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
// or taken; a withdrawn or failed one ended without an executor.
func (o Order) ContactAllowed() bool { return o.Status == OrderOpen || o.Status == OrderTaken }

// TakenBy reports whether the order is taken by this Telegram user.
func (o Order) TakenBy(telegramID int64) bool {
	return o.Status == OrderTaken && o.ExecutorID == telegramID
}

// TakenByOther reports whether another user won the order.
func (o Order) TakenByOther(telegramID int64) bool {
	return o.Status == OrderTaken && o.ExecutorID != telegramID
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
	CreatedAt        time.Time
	UpdatedAt        time.Time
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
