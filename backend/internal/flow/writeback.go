package flow

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/i18n"
	"github.com/amodispatch/amodispatch/backend/internal/orderview"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// updateLead writes the executor into the deal: the executor field, the
// responsible user when mapped, and the "executor found" stage. It reads the
// deal first and skips the PATCH when a previous attempt already wrote it, so
// a retry after a crash or a lost answer writes once.
func (f *Flow) updateLead(ctx context.Context, orderID string) error {
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil {
		return err
	}
	if !o.Assigned() {
		// Released or ended before this ran: the release writes the deal
		// itself, after this mark.
		return f.db.MarkLeadUpdated(ctx, o.ID)
	}
	a, s, api, err := f.tenant(ctx, o.AccountID)
	if err != nil {
		return err
	}
	u := amocrm.LeadUpdate{ID: o.LeadID}
	if a.ExecutorFieldID != 0 {
		u.CustomFieldsValues = []amocrm.CustomFieldValue{{FieldID: a.ExecutorFieldID,
			Values: []amocrm.CustomFieldItem{{Value: executorFieldText(o)}}}}
	}
	if amoUser, ok := s.ExecutorUsers[o.ExecutorID]; ok && amoUser != 0 {
		u.ResponsibleUserID = amocrm.Ptr(amoUser)
	}
	rule, _ := s.Rule(o.PipelineID)
	if rule.FoundStageID != 0 {
		u.StatusID = amocrm.Ptr(rule.FoundStageID)
		u.PipelineID = amocrm.Ptr(o.PipelineID)
	}
	current, err := api.GetLead(ctx, o.LeadID, false)
	if errors.Is(err, amocrm.ErrNotFound) {
		f.log.Info("deal no longer in amoCRM, executor not written", "account_id", o.AccountID, "lead_id", o.LeadID)
		return f.db.MarkLeadUpdated(ctx, o.ID)
	}
	if err != nil {
		return err
	}
	if !applied(current, u) {
		// The responsible user a release restores, kept before this
		// write changes it (a retry reads our own value and keeps the first).
		if err := f.db.SetPrevResponsible(ctx, o.ID, current.ResponsibleUserID); err != nil {
			return err
		}
		if err := api.UpdateLead(ctx, u); err != nil {
			return err
		}
		f.log.Info("deal updated with the executor", "account_id", o.AccountID, "order_id", o.ID, "lead_id", o.LeadID)
	}
	if err := f.db.MarkLeadUpdated(ctx, o.ID); err != nil {
		return err
	}
	if rule.FoundStageID == 0 {
		return nil
	}
	// The deal left the search stage: this round is over (the webhook amoCRM
	// sends for our own move then finds nothing to do).
	return f.db.InTx(ctx, func(tx *store.Tx) error {
		_, _, err := tx.CloseOrder(o.AccountID, o.LeadID)
		return err
	})
}

// applied reports whether the deal already carries every value of u.
func applied(l amocrm.Lead, u amocrm.LeadUpdate) bool {
	if u.StatusID != nil && l.StatusID != *u.StatusID {
		return false
	}
	if u.ResponsibleUserID != nil && l.ResponsibleUserID != *u.ResponsibleUserID {
		return false
	}
	for _, want := range u.CustomFieldsValues {
		found := false
		for _, have := range l.CustomFieldsValues {
			if have.FieldID == want.FieldID && len(have.Values) > 0 && len(want.Values) > 0 &&
				fmt.Sprint(have.Values[0].Value) == fmt.Sprint(want.Values[0].Value) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// addNote adds "who took it and when" to the deal once: the note carries the
// order id, and an existing note with it means a previous attempt succeeded.
func (f *Flow) addNote(ctx context.Context, orderID string) error {
	o, err := f.db.OrderByID(ctx, orderID)
	if err != nil || o.TakenAt == nil {
		return err
	}
	a, s, api, err := f.tenant(ctx, o.AccountID)
	if err != nil {
		return err
	}
	marker := "[amoDispatch " + o.ID + "]"
	notes, err := api.ListLeadNotes(ctx, o.LeadID)
	if errors.Is(err, amocrm.ErrNotFound) {
		return f.db.MarkNoted(ctx, o.ID) // the deal was deleted
	}
	if err != nil {
		return err
	}
	for _, n := range notes {
		if strings.Contains(n.Params.Text, marker) {
			return f.db.MarkNoted(ctx, o.ID)
		}
	}
	when := o.TakenAt.In(f.o.Location).Format("02.01.2006 15:04 MST")
	text := i18n.T(s.Lang(a), "note.taken", orderview.ExecutorLabel(executorView(o)), o.ExecutorID, when) + " " + marker
	if _, err := api.AddLeadNote(ctx, o.LeadID, text); err != nil {
		return err
	}
	return f.db.MarkNoted(ctx, o.ID)
}
