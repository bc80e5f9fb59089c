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

// Settings are an account's dispatch preferences.
type Settings struct {
	AccountID int64
	// Language of group posts: "" follows the account's amoCRM language.
	Language string
	// OrderFieldIDs lists the deal fields shown in an order; nil shows every
	// non-empty custom field in the account's field order.
	OrderFieldIDs []int64
	ShowBudget    bool
	// Rules per pipeline, and the Telegram → amoCRM user map.
	Rules         []Rule
	ExecutorUsers map[int64]int64
}

// Rule says what "searching for an executor" means in one pipeline.
type Rule struct {
	PipelineID      int64
	TriggerStageIDs []int64
	FoundStageID    int64 // 0: leave the deal's stage alone
	DefaultChatID   int64
}

// Rule returns the rule of a pipeline.
func (s Settings) Rule(pipelineID int64) (Rule, bool) {
	for _, r := range s.Rules {
		if r.PipelineID == pipelineID {
			return r, true
		}
	}
	return Rule{}, false
}

// IsTrigger reports whether a deal in this pipeline and stage is searching.
func (s Settings) IsTrigger(pipelineID, stageID int64) bool {
	r, ok := s.Rule(pipelineID)
	return ok && slices.Contains(r.TriggerStageIDs, stageID)
}

// IsTriggerStage reports whether a stage is a trigger stage of any pipeline
// (amoCRM stage ids are unique across pipelines, but for the shared 142/143).
func (s Settings) IsTriggerStage(stageID int64) bool {
	if stageID == 0 || stageID == 142 || stageID == 143 {
		return false
	}
	for _, r := range s.Rules {
		if slices.Contains(r.TriggerStageIDs, stageID) {
			return true
		}
	}
	return false
}

// HasTriggers reports whether any pipeline is configured to dispatch.
func (s Settings) HasTriggers() bool {
	for _, r := range s.Rules {
		if len(r.TriggerStageIDs) > 0 {
			return true
		}
	}
	return false
}

// Lang is the language of group posts for an account.
func (s Settings) Lang(a Account) string {
	if s.Language != "" {
		return s.Language
	}
	return a.Language
}

// OrderStatus is the lifecycle of an order.
type OrderStatus string

const (
	OrderPosting   OrderStatus = "posting"   // accepted, the post is on its way
	OrderOpen      OrderStatus = "open"      // posted, waiting for an executor
	OrderTaken     OrderStatus = "taken"     // an executor won it
	OrderWithdrawn OrderStatus = "withdrawn" // the deal left the search stage or the manager withdrew it
	OrderFailed    OrderStatus = "failed"    // could not be posted (no chat, chat gone)
)

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
