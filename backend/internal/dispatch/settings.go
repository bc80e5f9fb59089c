package dispatch

import (
	"slices"
	"strconv"
	"time"
)

// amoCRM's closing stages, shared by every pipeline: a deal there is done.
const (
	StageWon  int64 = 142
	StageLost int64 = 143
)

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
	// ContactPolicy says who may get the client's contact.
	ContactPolicy ContactPolicy
	// DigestChatID is the chat that gets the weekly statistics digest on
	// Monday mornings (0: none).
	DigestChatID int64
}

// ContactPolicy says who may receive a client's contact.
type ContactPolicy string

const (
	// ContactAnyMember: any group member may ask before the take (the post
	// has "Get client phone").
	ContactAnyMember ContactPolicy = ""
	// ContactExecutorOnly: only the executor, with the take (the post has
	// only "Take order").
	ContactExecutorOnly ContactPolicy = "executor"
)

// Rule says what "searching for an executor" means in one pipeline.
type Rule struct {
	PipelineID      int64
	TriggerStageIDs []int64
	FoundStageID    int64 // 0: leave the deal's stage alone
	DefaultChatID   int64
	// StatusStages maps an executor status (on the way, started, done) to
	// the stage the deal moves to; a missing status leaves the stage alone.
	StatusStages map[OrderStatus]int64
	// StatusButtons lists the buttons the executor's card shows, from
	// ExecutorStatuses; nil shows all of them.
	StatusButtons []OrderStatus
	// Ladder escalates an order nobody takes (see escalation.go).
	Ladder Ladder
	// JobTimeFieldID is the deal field (date or date_time) holding the job
	// time the executor is reminded of; 0: no reminders (see reminders.go).
	JobTimeFieldID int64
	// ReminderOffsets are how long before the job time the reminders go
	// out; nil means DefaultReminderOffsets.
	ReminderOffsets []time.Duration
}

// Buttons lists the status buttons of the executor's card, in the card's order.
func (r Rule) Buttons() []OrderStatus {
	if r.StatusButtons == nil {
		return ExecutorStatuses
	}
	var out []OrderStatus
	for _, st := range ExecutorStatuses {
		if slices.Contains(r.StatusButtons, st) {
			out = append(out, st)
		}
	}
	return out
}

// FlowStage reports whether the backend itself may put a deal of this
// pipeline in stage: a search stage, the "executor found" stage or a
// status's stage. A deal moved anywhere else was moved by a person.
func (r Rule) FlowStage(stage int64) bool {
	if slices.Contains(r.TriggerStageIDs, stage) || (r.FoundStageID != 0 && r.FoundStageID == stage) {
		return true
	}
	for _, st := range r.StatusStages {
		if st == stage {
			return true
		}
	}
	return false
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
	if stageID == 0 || stageID == StageWon || stageID == StageLost {
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

// Catalog is what an account has in amoCRM and Telegram now: what the
// settings page offers and what settings are checked against.
type Catalog struct {
	Pipelines []Pipeline
	Chats     []Chat
	Fields    []Field
	Users     []User
}

// Field is one of the account's deal custom fields.
type Field struct {
	ID   int64
	Name string
	Type string
}

// User is one of the account's amoCRM users.
type User struct {
	ID   int64
	Name string
}

// CheckLanguage refuses a post language the bot has no texts for ("" follows
// the account's amoCRM language).
func CheckLanguage(lang string) error {
	switch lang {
	case "", "ru", "en":
		return nil
	}
	return Invalid("language must be \"\", \"ru\" or \"en\"")
}

// Validate checks settings against the account's catalog and returns them
// normalised (trigger stages sorted without repeats, unmapped users dropped).
// Each refusal wraps ErrInvalid with a message for the admin.
func (s Settings) Validate(c Catalog) (Settings, error) {
	if err := CheckLanguage(s.Language); err != nil {
		return Settings{}, err
	}
	if s.ContactPolicy != ContactAnyMember && s.ContactPolicy != ContactExecutorOnly {
		return Settings{}, Invalid("contact policy must be \"\" or \"executor\"")
	}
	out := Settings{AccountID: s.AccountID, Language: s.Language, ShowBudget: s.ShowBudget, ExecutorUsers: map[int64]int64{},
		ContactPolicy: s.ContactPolicy, DigestChatID: s.DigestChatID}
	if s.DigestChatID != 0 && !slices.ContainsFunc(c.Chats, func(ch Chat) bool { return ch.ID == s.DigestChatID && ch.ActiveFor(s.AccountID) }) {
		return Settings{}, Invalid("chat %d is not an active chat of this account", s.DigestChatID)
	}
	seen := map[int64]bool{}
	var err error
	for _, r := range s.Rules {
		i := slices.IndexFunc(c.Pipelines, func(p Pipeline) bool { return p.ID == r.PipelineID })
		if i < 0 {
			return Settings{}, Invalid("pipeline %d does not exist in this account", r.PipelineID)
		}
		if seen[r.PipelineID] {
			return Settings{}, Invalid("pipeline %d is configured twice", r.PipelineID)
		}
		seen[r.PipelineID] = true
		p := c.Pipelines[i]
		for _, st := range r.TriggerStageIDs {
			if !p.HasStage(st) || st == StageWon || st == StageLost {
				return Settings{}, Invalid("stage %d is not a working stage of pipeline %d", st, r.PipelineID)
			}
		}
		if r.FoundStageID != 0 {
			if !p.HasStage(r.FoundStageID) {
				return Settings{}, Invalid("stage %d does not belong to pipeline %d", r.FoundStageID, r.PipelineID)
			}
			if slices.Contains(r.TriggerStageIDs, r.FoundStageID) {
				return Settings{}, Invalid("the \"executor found\" stage cannot also be a search stage")
			}
		}
		if r.DefaultChatID != 0 && !slices.ContainsFunc(c.Chats, func(ch Chat) bool { return ch.ID == r.DefaultChatID && ch.ActiveFor(s.AccountID) }) {
			return Settings{}, Invalid("chat %d is not an active chat of this account", r.DefaultChatID)
		}
		rule := Rule{PipelineID: r.PipelineID, TriggerStageIDs: slices.Compact(slices.Sorted(slices.Values(r.TriggerStageIDs))),
			FoundStageID: r.FoundStageID, DefaultChatID: r.DefaultChatID}
		if rule.Ladder, err = r.Ladder.validate(s.AccountID, r.DefaultChatID, c.Chats); err != nil {
			return Settings{}, err
		}
		for st, stage := range r.StatusStages {
			if st != OrderOnWay && st != OrderStarted && st != OrderDone {
				return Settings{}, Invalid("%q is not a status that moves the deal", st)
			}
			if stage == 0 {
				continue
			}
			if !p.HasStage(stage) || slices.Contains(r.TriggerStageIDs, stage) {
				return Settings{}, Invalid("stage %d is not a stage of pipeline %d outside the search", stage, r.PipelineID)
			}
			if rule.StatusStages == nil {
				rule.StatusStages = map[OrderStatus]int64{}
			}
			rule.StatusStages[st] = stage
		}
		if r.StatusButtons != nil {
			rule.StatusButtons = []OrderStatus{}
			for _, st := range r.StatusButtons {
				if !slices.Contains(ExecutorStatuses, st) {
					return Settings{}, Invalid("%q is not a status button", st)
				}
				if !slices.Contains(rule.StatusButtons, st) {
					rule.StatusButtons = append(rule.StatusButtons, st)
				}
			}
		}
		if err := r.validateReminders(c, &rule); err != nil {
			return Settings{}, err
		}
		out.Rules = append(out.Rules, rule)
	}
	if s.OrderFieldIDs != nil {
		for _, id := range s.OrderFieldIDs {
			if !slices.ContainsFunc(c.Fields, func(f Field) bool { return f.ID == id }) {
				return Settings{}, Invalid("deal field %d does not exist in this account", id)
			}
		}
		out.OrderFieldIDs = s.OrderFieldIDs
	}
	for tg, amoUser := range s.ExecutorUsers {
		if tg <= 0 {
			return Settings{}, Invalid("%q is not a Telegram user id", strconv.FormatInt(tg, 10))
		}
		if amoUser == 0 {
			continue // the admin removed the mapping
		}
		if !slices.ContainsFunc(c.Users, func(u User) bool { return u.ID == amoUser }) {
			return Settings{}, Invalid("user %d does not exist in this account", amoUser)
		}
		out.ExecutorUsers[tg] = amoUser
	}
	return out, nil
}
