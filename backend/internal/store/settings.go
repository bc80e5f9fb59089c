package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

type settingsRow struct {
	AccountID     int64 `gorm:"primaryKey;autoIncrement:false"`
	Language      string
	OrderFieldIDs string
	ShowBudget    bool
	ContactPolicy string
	DigestChatID  int64
	UpdatedAt     time.Time
}

func (settingsRow) TableName() string { return "account_settings" }

type ruleRow struct {
	AccountID       int64 `gorm:"primaryKey;autoIncrement:false"`
	PipelineID      int64 `gorm:"primaryKey;autoIncrement:false"`
	TriggerStageIDs string
	FoundStageID    int64
	DefaultChatID   int64
	StatusStages    string
	StatusButtons   string
	// The escalation ladder (0: a step is off).
	BumpAfterMin     int
	FallbackAfterMin int
	FallbackChatID   int64
	TaskAfterMin     int
	ExpireAfterH     int
	JobTimeFieldID   int64
	ReminderOffsets  string
	UpdatedAt        time.Time
}

func (ruleRow) TableName() string { return "dispatch_rules" }

type executorUserRow struct {
	AccountID  int64 `gorm:"primaryKey;autoIncrement:false"`
	TelegramID int64 `gorm:"primaryKey;autoIncrement:false"`
	AmoUserID  int64
}

func (executorUserRow) TableName() string { return "executor_users" }

type dealTargetRow struct {
	AccountID int64 `gorm:"primaryKey;autoIncrement:false"`
	LeadID    int64 `gorm:"primaryKey;autoIncrement:false"`
	ChatID    int64
	UpdatedAt time.Time
}

func (dealTargetRow) TableName() string { return "deal_targets" }

// Settings returns an account's dispatch settings, with defaults when none
// were saved.
func (db *DB) Settings(ctx context.Context, accountID int64) (dispatch.Settings, error) {
	s := dispatch.Settings{AccountID: accountID, ShowBudget: true, ExecutorUsers: map[int64]int64{}}
	var row settingsRow
	err := db.gorm.WithContext(ctx).Where("account_id = ?", accountID).Take(&row).Error
	switch {
	case err == nil:
		s.Language, s.ShowBudget, s.ContactPolicy = row.Language, row.ShowBudget, dispatch.ContactPolicy(row.ContactPolicy)
		s.DigestChatID = row.DigestChatID
		if row.OrderFieldIDs != "" {
			if err := json.Unmarshal([]byte(row.OrderFieldIDs), &s.OrderFieldIDs); err != nil {
				return s, translate(err, "settings field ids")
			}
		}
	case !errors.Is(err, gorm.ErrRecordNotFound):
		return s, translate(err, "settings")
	}
	rules, err := db.Rules(ctx, accountID)
	if err != nil {
		return s, err
	}
	s.Rules = rules
	var users []executorUserRow
	if err := db.gorm.WithContext(ctx).Where("account_id = ?", accountID).Find(&users).Error; err != nil {
		return s, translate(err, "executor users")
	}
	for _, u := range users {
		s.ExecutorUsers[u.TelegramID] = u.AmoUserID
	}
	return s, nil
}

// Rules are an account's dispatch rules alone, by pipeline: one query where
// Settings makes three (webhook intake asks only which stages trigger).
func (db *DB) Rules(ctx context.Context, accountID int64) ([]dispatch.Rule, error) {
	var rows []ruleRow
	if err := db.gorm.WithContext(ctx).Where("account_id = ?", accountID).Order("pipeline_id").Find(&rows).Error; err != nil {
		return nil, translate(err, "rules")
	}
	var rules []dispatch.Rule
	for _, r := range rows {
		rule := dispatch.Rule{PipelineID: r.PipelineID, FoundStageID: r.FoundStageID, DefaultChatID: r.DefaultChatID,
			Ladder: r.ladder()}
		if err := json.Unmarshal([]byte(r.TriggerStageIDs), &rule.TriggerStageIDs); err != nil {
			return nil, translate(err, "rule stages")
		}
		if err := readReminders(r, &rule); err != nil {
			return nil, err
		}
		if r.StatusStages != "" {
			if err := json.Unmarshal([]byte(r.StatusStages), &rule.StatusStages); err != nil {
				return nil, translate(err, "rule status stages")
			}
		}
		if r.StatusButtons != "" {
			if err := json.Unmarshal([]byte(r.StatusButtons), &rule.StatusButtons); err != nil {
				return nil, translate(err, "rule status buttons")
			}
		}
		rules = append(rules, rule)
	}
	return rules, nil
}

// SaveSettings replaces an account's settings, rules and user map at once.
// Validation against the account's pipelines happens in the caller.
func (db *DB) SaveSettings(ctx context.Context, s dispatch.Settings) error {
	now := db.utcNow()
	fields := ""
	if s.OrderFieldIDs != nil {
		b, _ := json.Marshal(s.OrderFieldIDs)
		fields = string(b)
	}
	err := db.transaction(ctx, func(tx *gorm.DB) error {
		row := settingsRow{AccountID: s.AccountID, Language: s.Language, OrderFieldIDs: fields, ShowBudget: s.ShowBudget,
			ContactPolicy: string(s.ContactPolicy), DigestChatID: s.DigestChatID, UpdatedAt: now}
		if err := tx.Clauses(clause.OnConflict{UpdateAll: true}).Create(&row).Error; err != nil {
			return err
		}
		if err := tx.Where("account_id = ?", s.AccountID).Delete(&ruleRow{}).Error; err != nil {
			return err
		}
		for _, r := range s.Rules {
			stages, _ := json.Marshal(nonNil(r.TriggerStageIDs))
			row := ruleRow{AccountID: s.AccountID, PipelineID: r.PipelineID, TriggerStageIDs: string(stages),
				FoundStageID: r.FoundStageID, DefaultChatID: r.DefaultChatID, UpdatedAt: now}
			row.setLadder(r.Ladder)
			if len(r.StatusStages) > 0 {
				b, _ := json.Marshal(r.StatusStages)
				row.StatusStages = string(b)
			}
			if r.StatusButtons != nil {
				b, _ := json.Marshal(r.StatusButtons)
				row.StatusButtons = string(b)
			}
			writeReminders(r, &row)
			if err := tx.Create(&row).Error; err != nil {
				return err
			}
		}
		if err := tx.Where("account_id = ?", s.AccountID).Delete(&executorUserRow{}).Error; err != nil {
			return err
		}
		for tg, amo := range s.ExecutorUsers {
			if err := tx.Create(&executorUserRow{AccountID: s.AccountID, TelegramID: tg, AmoUserID: amo}).Error; err != nil {
				return err
			}
		}
		return nil
	})
	return translate(err, "save settings")
}

func nonNil(ids []int64) []int64 {
	if ids == nil {
		return []int64{}
	}
	return ids
}

// SetDealTarget stores the chat a manager chose for one deal; chatID 0 clears it.
func (db *DB) SetDealTarget(ctx context.Context, accountID, leadID, chatID int64) error {
	if chatID == 0 {
		err := db.gorm.WithContext(ctx).Where("account_id = ? AND lead_id = ?", accountID, leadID).Delete(&dealTargetRow{}).Error
		return translate(err, "clear deal target")
	}
	row := dealTargetRow{AccountID: accountID, LeadID: leadID, ChatID: chatID, UpdatedAt: db.utcNow()}
	err := db.gorm.WithContext(ctx).Clauses(clause.OnConflict{UpdateAll: true}).Create(&row).Error
	return translate(err, "set deal target")
}

// DealTarget returns the deal's own chat, or 0.
func (db *DB) DealTarget(ctx context.Context, accountID, leadID int64) (int64, error) {
	var row dealTargetRow
	err := db.gorm.WithContext(ctx).Where("account_id = ? AND lead_id = ?", accountID, leadID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return 0, nil
	}
	return row.ChatID, translate(err, "deal target")
}
