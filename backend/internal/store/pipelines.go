package store

import (
	"context"

	"gorm.io/gorm"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

type pipelineRow struct {
	AccountID int64 `gorm:"primaryKey;autoIncrement:false"`
	ID        int64 `gorm:"primaryKey;autoIncrement:false"`
	Name      string
	Sort      int
	IsMain    bool
}

func (pipelineRow) TableName() string { return "pipelines" }

type stageRow struct {
	AccountID  int64 `gorm:"primaryKey;autoIncrement:false"`
	PipelineID int64 `gorm:"primaryKey;autoIncrement:false"`
	ID         int64 `gorm:"primaryKey;autoIncrement:false"`
	Name       string
	Sort       int
}

func (stageRow) TableName() string { return "stages" }

// ReplacePipelines stores the account's funnels as amoCRM reported them.
func (db *DB) ReplacePipelines(ctx context.Context, accountID int64, pipelines []dispatch.Pipeline) error {
	err := db.transaction(ctx, func(tx *gorm.DB) error {
		if err := tx.Where("account_id = ?", accountID).Delete(&stageRow{}).Error; err != nil {
			return err
		}
		if err := tx.Where("account_id = ?", accountID).Delete(&pipelineRow{}).Error; err != nil {
			return err
		}
		for _, p := range pipelines {
			if err := tx.Create(&pipelineRow{AccountID: accountID, ID: p.ID, Name: p.Name, Sort: p.Sort, IsMain: p.IsMain}).Error; err != nil {
				return err
			}
			for _, s := range p.Stages {
				if err := tx.Create(&stageRow{AccountID: accountID, PipelineID: p.ID, ID: s.ID, Name: s.Name, Sort: s.Sort}).Error; err != nil {
					return err
				}
			}
		}
		return nil
	})
	return translate(err, "replace pipelines")
}

// Pipelines returns the account's stored funnels with their stages in amoCRM's order.
func (db *DB) Pipelines(ctx context.Context, accountID int64) ([]dispatch.Pipeline, error) {
	var ps []pipelineRow
	if err := db.gorm.WithContext(ctx).Where("account_id = ?", accountID).Order("sort, id").Find(&ps).Error; err != nil {
		return nil, translate(err, "pipelines")
	}
	var ss []stageRow
	if err := db.gorm.WithContext(ctx).Where("account_id = ?", accountID).Order("sort, id").Find(&ss).Error; err != nil {
		return nil, translate(err, "stages")
	}
	out := make([]dispatch.Pipeline, len(ps))
	index := map[int64]int{}
	for i, p := range ps {
		out[i] = dispatch.Pipeline{ID: p.ID, Name: p.Name, Sort: p.Sort, IsMain: p.IsMain}
		index[p.ID] = i
	}
	for _, s := range ss {
		if i, ok := index[s.PipelineID]; ok {
			out[i].Stages = append(out[i].Stages, dispatch.Stage{ID: s.ID, Name: s.Name, Sort: s.Sort})
		}
	}
	return out, nil
}
