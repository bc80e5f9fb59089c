package dispatch

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func reminderCatalog() Catalog {
	c := catalog()
	c.Fields = append(c.Fields, Field{ID: 601, Name: "Время работ", Type: "date_time"}, Field{ID: 602, Name: "Дата", Type: "date"},
		Field{ID: 603, Name: "Адрес", Type: "text"})
	return c
}

// Reminder settings refused, one row each.
func TestValidateReminderRefusals(t *testing.T) {
	rule := func(field int64, offs ...time.Duration) Settings {
		return Settings{AccountID: 1, Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{101}, JobTimeFieldID: field, ReminderOffsets: offs}}}
	}
	tests := []struct {
		name string
		s    Settings
		msg  string
	}{
		{"unknown field", rule(699), "deal field 699 does not exist"},
		{"not a date", rule(603), `the job time must be a date or date-time field; "Адрес" is text`},
		{"at the check", rule(601, 30*time.Minute), "more than 30 minutes"},
		{"negative", rule(601, -time.Hour), "more than 30 minutes"},
		{"too far", rule(601, 15*24*time.Hour), "at most 14 days"},
		{"not whole minutes", rule(601, time.Hour+time.Second), "whole minutes"},
		{"too many", rule(601, 2*time.Hour, 3*time.Hour, 4*time.Hour, 5*time.Hour, 6*time.Hour, 7*time.Hour), "at most 5 reminders"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.Validate(reminderCatalog())
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Validate: %v, want ErrInvalid with %q", err, tc.msg)
			}
		})
	}
}

// Offsets come back largest first without repeats; nil keeps the defaults;
// offsets without a field are dropped.
func TestValidateReminderNormalises(t *testing.T) {
	for _, c := range []struct {
		field    int64
		offs     []time.Duration
		want     []time.Duration
		wantEff  []time.Duration
		wantFeld int64
	}{
		{601, []time.Duration{time.Hour, 24 * time.Hour, time.Hour}, []time.Duration{24 * time.Hour, time.Hour}, []time.Duration{24 * time.Hour, time.Hour}, 601},
		{602, nil, nil, DefaultReminderOffsets, 602},
		{601, []time.Duration{}, []time.Duration{}, []time.Duration{}, 601},
		{0, []time.Duration{time.Hour}, nil, nil, 0},
	} {
		s := Settings{AccountID: 1, Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{101}, JobTimeFieldID: c.field, ReminderOffsets: c.offs}}}
		out, err := s.Validate(reminderCatalog())
		if err != nil {
			t.Fatal(err)
		}
		r := out.Rules[0]
		if r.JobTimeFieldID != c.wantFeld || !slices.Equal(r.ReminderOffsets, c.want) || (r.ReminderOffsets == nil) != (c.want == nil) ||
			!slices.Equal(r.Offsets(), c.wantEff) {
			t.Errorf("field %d offsets %v: got %d %v (effective %v), want %d %v (%v)", c.field, c.offs, r.JobTimeFieldID, r.ReminderOffsets,
				r.Offsets(), c.wantFeld, c.want, c.wantEff)
		}
	}
}
