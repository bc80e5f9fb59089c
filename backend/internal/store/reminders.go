package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// readReminders fills a rule's job-time field and offsets (stored in minutes).
func readReminders(r ruleRow, rule *dispatch.Rule) error {
	rule.JobTimeFieldID = r.JobTimeFieldID
	if r.ReminderOffsets == "" {
		return nil
	}
	var mins []int64
	if err := json.Unmarshal([]byte(r.ReminderOffsets), &mins); err != nil {
		return translate(err, "rule reminder offsets")
	}
	rule.ReminderOffsets = make([]time.Duration, len(mins))
	for i, m := range mins {
		rule.ReminderOffsets[i] = time.Duration(m) * time.Minute
	}
	return nil
}

func writeReminders(r dispatch.Rule, row *ruleRow) {
	row.JobTimeFieldID = r.JobTimeFieldID
	if r.ReminderOffsets != nil {
		mins := make([]int64, len(r.ReminderOffsets))
		for i, d := range r.ReminderOffsets {
			mins[i] = int64(d / time.Minute)
		}
		b, _ := json.Marshal(mins)
		row.ReminderOffsets = string(b)
	}
}

type reminderPlanRow struct {
	ID          string `gorm:"primaryKey"`
	AccountID   int64
	OrderID     string
	LeadID      int64
	JobAt       time.Time
	TimeZone    string
	DateOnly    bool
	CreatedAt   time.Time
	ConfirmedAt *time.Time
	CancelledAt *time.Time
}

func (reminderPlanRow) TableName() string { return "reminder_plans" }

func (r reminderPlanRow) toPlan() dispatch.ReminderPlan {
	return dispatch.ReminderPlan{ID: r.ID, AccountID: r.AccountID, OrderID: r.OrderID, LeadID: r.LeadID, JobAt: r.JobAt.UTC(),
		TimeZone: r.TimeZone, DateOnly: r.DateOnly, CreatedAt: r.CreatedAt, ConfirmedAt: r.ConfirmedAt, CancelledAt: r.CancelledAt}
}

type reminderStepRow struct {
	PlanID    string `gorm:"primaryKey"`
	Kind      string `gorm:"primaryKey"`
	OffsetMin int64  `gorm:"primaryKey;autoIncrement:false"`
	AccountID int64
	OrderID   string
	DueAt     time.Time
	DoneAt    *time.Time
	MessageID int64
}

func (reminderStepRow) TableName() string { return "reminder_steps" }

func (r reminderStepRow) toStep() dispatch.ReminderStep {
	return dispatch.ReminderStep{PlanID: r.PlanID, Kind: r.Kind, Offset: time.Duration(r.OffsetMin) * time.Minute, AccountID: r.AccountID,
		OrderID: r.OrderID, DueAt: r.DueAt.UTC(), DoneAt: r.DoneAt, MessageID: int(r.MessageID)}
}

// LivePlan returns the order's live reminder plan.
func (db *DB) LivePlan(ctx context.Context, orderID string) (dispatch.ReminderPlan, error) {
	var r reminderPlanRow
	err := db.gorm.WithContext(ctx).Where("order_id = ? AND cancelled_at IS NULL", orderID).Take(&r).Error
	return r.toPlan(), translate(err, "live reminder plan of order "+orderID)
}

// ReplacePlan makes p (with its steps) the order's live plan unless the
// live plan is already for the same job time, which it then returns with
// made false. A live plan for another time is cancelled in the same
// transaction: its steps find it cancelled and do nothing. Of concurrent
// planners one makes the plan (the partial unique index decides); the
// others get ErrConflict.
func (tx *Tx) ReplacePlan(p dispatch.ReminderPlan, steps []dispatch.ReminderStep) (dispatch.ReminderPlan, []dispatch.ReminderStep, bool, error) {
	var live reminderPlanRow
	err := tx.g.Where("order_id = ? AND cancelled_at IS NULL", p.OrderID).Take(&live).Error
	switch {
	case err == nil && live.JobAt.Equal(p.JobAt) && live.DateOnly == p.DateOnly:
		return live.toPlan(), nil, false, nil
	case err == nil:
		if err := tx.g.Model(&reminderPlanRow{}).Where("id = ? AND cancelled_at IS NULL", live.ID).
			Update("cancelled_at", tx.db.utcNow()).Error; err != nil {
			return dispatch.ReminderPlan{}, nil, false, translate(err, "cancel reminder plan")
		}
	case !errors.Is(err, gorm.ErrRecordNotFound):
		return dispatch.ReminderPlan{}, nil, false, translate(err, "live reminder plan")
	}
	row := reminderPlanRow{ID: uuid.NewString(), AccountID: p.AccountID, OrderID: p.OrderID, LeadID: p.LeadID, JobAt: p.JobAt.UTC(),
		TimeZone: p.TimeZone, DateOnly: p.DateOnly, CreatedAt: tx.db.utcNow()}
	// A savepoint keeps a unique violation from aborting the caller's
	// PostgreSQL transaction.
	err = tx.g.Transaction(func(g *gorm.DB) error {
		if err := g.Create(&row).Error; err != nil {
			return err
		}
		for i := range steps {
			s := reminderStepRow{PlanID: row.ID, Kind: steps[i].Kind, OffsetMin: int64(steps[i].Offset / time.Minute), AccountID: p.AccountID,
				OrderID: p.OrderID, DueAt: steps[i].DueAt.UTC()}
			if err := g.Create(&s).Error; err != nil {
				return err
			}
			steps[i] = s.toStep()
		}
		return nil
	})
	if err != nil {
		return dispatch.ReminderPlan{}, nil, false, translate(err, "make reminder plan")
	}
	return row.toPlan(), steps, true, nil
}

// CancelPlans cancels the order's live plan, if any (the job time was
// cleared); it reports whether one was cancelled.
func (db *DB) CancelPlans(ctx context.Context, orderID string) (bool, error) {
	res := db.gorm.WithContext(ctx).Model(&reminderPlanRow{}).Where("order_id = ? AND cancelled_at IS NULL", orderID).
		Update("cancelled_at", db.utcNow())
	return res.RowsAffected > 0, translate(res.Error, "cancel reminder plans")
}

// ReminderStep returns one step with its plan.
func (db *DB) ReminderStep(ctx context.Context, planID, kind string, offset time.Duration) (dispatch.ReminderStep, dispatch.ReminderPlan, error) {
	var s reminderStepRow
	err := db.gorm.WithContext(ctx).Where("plan_id = ? AND kind = ? AND offset_min = ?", planID, kind, int64(offset/time.Minute)).Take(&s).Error
	if err != nil {
		return dispatch.ReminderStep{}, dispatch.ReminderPlan{}, translate(err, "reminder step")
	}
	var p reminderPlanRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", planID).Take(&p).Error; err != nil {
		return dispatch.ReminderStep{}, dispatch.ReminderPlan{}, translate(err, "reminder plan "+planID)
	}
	return s.toStep(), p.toPlan(), nil
}

// MarkStepDone records that a step happened (its reminder sent as
// messageID, or its task and note written): the once of every step. It
// reports whether this call recorded it.
func (db *DB) MarkStepDone(ctx context.Context, planID, kind string, offset time.Duration, messageID int) (bool, error) {
	res := db.gorm.WithContext(ctx).Model(&reminderStepRow{}).
		Where("plan_id = ? AND kind = ? AND offset_min = ? AND done_at IS NULL", planID, kind, int64(offset/time.Minute)).
		Updates(map[string]any{"done_at": db.utcNow(), "message_id": messageID})
	return res.RowsAffected == 1, translate(res.Error, "mark reminder step done")
}

// ConfirmPlan records the executor's confirmation on the order's live plan,
// once; it returns the plan and whether this call confirmed it.
func (tx *Tx) ConfirmPlan(orderID string) (dispatch.ReminderPlan, bool, error) {
	res := tx.g.Model(&reminderPlanRow{}).Where("order_id = ? AND cancelled_at IS NULL AND confirmed_at IS NULL", orderID).
		Update("confirmed_at", tx.db.utcNow())
	if res.Error != nil {
		return dispatch.ReminderPlan{}, false, translate(res.Error, "confirm reminder plan")
	}
	var r reminderPlanRow
	err := tx.g.Where("order_id = ? AND cancelled_at IS NULL", orderID).Take(&r).Error
	return r.toPlan(), res.RowsAffected == 1, translate(err, "live reminder plan of order "+orderID)
}

// NextReminder is the order's next reminder not sent yet, of its live plan.
func (db *DB) NextReminder(ctx context.Context, orderID string) (dispatch.ReminderStep, dispatch.ReminderPlan, error) {
	p, err := db.LivePlan(ctx, orderID)
	if err != nil {
		return dispatch.ReminderStep{}, p, err
	}
	var s reminderStepRow
	err = db.gorm.WithContext(ctx).Where("plan_id = ? AND kind = ? AND done_at IS NULL", p.ID, dispatch.StepRemind).
		Order("due_at").Take(&s).Error
	return s.toStep(), p, translate(err, "next reminder of order "+orderID)
}

// LivePlans lists an account's live plans of orders still in their
// executor's hands whose job time is still ahead, soonest first, at most a
// page of amoCRM deals: the reconciler's look at job times.
func (db *DB) LivePlans(ctx context.Context, accountID int64) ([]dispatch.ReminderPlan, error) {
	var rows []reminderPlanRow
	err := db.gorm.WithContext(ctx).Where("account_id = ? AND cancelled_at IS NULL AND job_at > ? AND order_id IN (?)", accountID, db.utcNow(),
		db.gorm.Model(&orderRow{}).Select("id").Where("account_id = ? AND status IN ?", accountID,
			statusStrings(dispatch.Sources(dispatch.OrderDone, false)))).
		Order("job_at").Limit(250).Find(&rows).Error
	if err != nil {
		return nil, translate(err, "live reminder plans")
	}
	out := make([]dispatch.ReminderPlan, len(rows))
	for i, r := range rows {
		out[i] = r.toPlan()
	}
	return out, nil
}

// LatestPlan returns the order's most recent plan, live or not.
func (db *DB) LatestPlan(ctx context.Context, orderID string) (dispatch.ReminderPlan, error) {
	var r reminderPlanRow
	err := db.gorm.WithContext(ctx).Where("order_id = ?", orderID).Order("created_at DESC, id DESC").Take(&r).Error
	return r.toPlan(), translate(err, "latest reminder plan of order "+orderID)
}
