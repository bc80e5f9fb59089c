package dispatch

import (
	"slices"
	"time"
)

// Reminders before the job time (issue #13). A pipeline names a deal field
// of type date or date_time as the job time; after a take the executor gets
// a private reminder at each offset before it, with "Confirm" and "Release";
// without a confirmation ConfirmBy before the job time the deal's
// responsible user gets an amoCRM task and a note.

// DefaultReminderOffsets are the offsets a rule with a job-time field and no
// offsets of its own uses: a day and an hour before.
var DefaultReminderOffsets = []time.Duration{24 * time.Hour, time.Hour}

// ConfirmBy is how long before the job time a missing confirmation becomes
// the manager's task.
const ConfirmBy = 30 * time.Minute

// DateOnlyHour is the hour of the day, in the account's time zone, that a
// job time from a date field (a day, no time) means.
const DateOnlyHour = 9

// MaxReminderOffset and MaxReminders bound what the settings accept.
const (
	MaxReminderOffset = 14 * 24 * time.Hour
	MaxReminders      = 5
)

// JobTimeFieldTypes are the amoCRM field types a job time may come from.
var JobTimeFieldTypes = []string{"date", "date_time"}

// Offsets are the rule's reminder offsets, largest first (the defaults when
// it has a job-time field and names none); none without a job-time field.
func (r Rule) Offsets() []time.Duration {
	if r.JobTimeFieldID == 0 {
		return nil
	}
	if r.ReminderOffsets == nil {
		return DefaultReminderOffsets
	}
	return r.ReminderOffsets
}

// ReminderDue is when a reminder at offset is due for a job at jobAt, and
// whether it is due at all for a plan made at planned: a reminder whose time
// passed before the take (or before the job time moved) is not sent late.
func ReminderDue(jobAt, planned time.Time, offset time.Duration) (time.Time, bool) {
	due := jobAt.Add(-offset)
	return due, due.After(planned)
}

// validateReminders checks a rule's job-time field and offsets against the
// account's fields and returns them normalised into out (offsets sorted
// largest first, without repeats; none without a field).
func (r Rule) validateReminders(c Catalog, out *Rule) error {
	if r.JobTimeFieldID == 0 {
		return nil
	}
	i := slices.IndexFunc(c.Fields, func(f Field) bool { return f.ID == r.JobTimeFieldID })
	if i < 0 {
		return Invalid("deal field %d does not exist in this account", r.JobTimeFieldID)
	}
	if !slices.Contains(JobTimeFieldTypes, c.Fields[i].Type) {
		return Invalid("the job time must be a date or date-time field; %q is %s", c.Fields[i].Name, c.Fields[i].Type)
	}
	out.JobTimeFieldID = r.JobTimeFieldID
	if r.ReminderOffsets == nil {
		return nil
	}
	if len(r.ReminderOffsets) > MaxReminders {
		return Invalid("at most %d reminders per pipeline", MaxReminders)
	}
	offs := []time.Duration{}
	for _, d := range r.ReminderOffsets {
		if d <= ConfirmBy || d > MaxReminderOffset || d%time.Minute != 0 {
			return Invalid("a reminder must come in whole minutes, more than 30 minutes and at most 14 days before the job time")
		}
		if !slices.Contains(offs, d) {
			offs = append(offs, d)
		}
	}
	slices.SortFunc(offs, func(a, b time.Duration) int { return int(b - a) })
	out.ReminderOffsets = offs
	return nil
}

// Reminder step kinds.
const (
	StepRemind = "remind" // a private reminder, Offset before the job time
	StepCheck  = "check"  // at ConfirmBy before it: no confirmation → task and note
)

// EventConfirmed is the timeline step of an executor's "Confirm".
const EventConfirmed = "confirmed"

// ReminderPlan is the reminders of one taken order for one job time. A job
// time moved in amoCRM cancels the plan and makes another, so an order has
// at most one live plan.
type ReminderPlan struct {
	ID          string
	AccountID   int64
	OrderID     string
	LeadID      int64
	JobAt       time.Time
	TimeZone    string // the account's, as amoCRM said when the plan was made
	DateOnly    bool   // from a date field: the job time is DateOnlyHour that day
	CreatedAt   time.Time
	ConfirmedAt *time.Time
	CancelledAt *time.Time
}

// Live reports whether the plan still stands (no release, done, end or
// moved job time cancelled it).
func (p ReminderPlan) Live() bool { return p.CancelledAt == nil }

// Location is the plan's time zone (Europe/Moscow when unknown).
func (p ReminderPlan) Location() *time.Location {
	if loc, err := time.LoadLocation(p.TimeZone); err == nil && p.TimeZone != "" {
		return loc
	}
	if loc, err := time.LoadLocation("Europe/Moscow"); err == nil {
		return loc
	}
	return time.FixedZone("MSK", 3*3600)
}

// ReminderStep is one timer of a plan, done once.
type ReminderStep struct {
	PlanID    string
	Kind      string
	Offset    time.Duration
	AccountID int64
	OrderID   string
	DueAt     time.Time
	DoneAt    *time.Time
	MessageID int // the reminder's private message, once sent
}

// PlanSteps are the steps of a plan made at planned for a job at jobAt:
// each offset still ahead, and the confirmation check when some reminder
// asks for a confirmation and the check is still ahead.
func PlanSteps(jobAt, planned time.Time, offsets []time.Duration) []ReminderStep {
	var out []ReminderStep
	for _, off := range offsets {
		if due, ok := ReminderDue(jobAt, planned, off); ok {
			out = append(out, ReminderStep{Kind: StepRemind, Offset: off, DueAt: due})
		}
	}
	if due, ok := ReminderDue(jobAt, planned, ConfirmBy); ok && len(out) > 0 {
		out = append(out, ReminderStep{Kind: StepCheck, Offset: ConfirmBy, DueAt: due})
	}
	return out
}
