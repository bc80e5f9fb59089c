package dispatch

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLadderValidate(t *testing.T) {
	rule := func(l Ladder) Settings {
		return Settings{AccountID: 1, Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{101}, DefaultChatID: -100, Ladder: l}}}
	}
	c := catalog()
	c.Chats = append(c.Chats, Chat{ID: -400, AccountID: 1, Active: true})
	refusals := []struct {
		name string
		l    Ladder
		msg  string
	}{
		{"negative", Ladder{BumpAfter: -time.Minute}, "whole minutes"},
		{"seconds", Ladder{TaskAfter: 90 * time.Second}, "whole minutes"},
		{"over a week", Ladder{BumpAfter: 8 * 24 * time.Hour}, "whole minutes"},
		{"expiry in minutes", Ladder{ExpireAfter: 90 * time.Minute}, "whole hours"},
		{"fallback without chat", Ladder{FallbackAfter: time.Minute}, "choose a fallback chat"},
		{"fallback chat inactive", Ladder{FallbackAfter: time.Minute, FallbackChatID: -200}, "not an active chat"},
		{"fallback chat of another account", Ladder{FallbackAfter: time.Minute, FallbackChatID: -300}, "not an active chat"},
		{"fallback to the pipeline's chat", Ladder{FallbackAfter: time.Minute, FallbackChatID: -100}, "must differ"},
	}
	for _, tc := range refusals {
		_, err := rule(tc.l).Validate(c)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}
	full := Ladder{BumpAfter: 15 * time.Minute, FallbackAfter: 30 * time.Minute, FallbackChatID: -400, TaskAfter: time.Hour, ExpireAfter: 24 * time.Hour}
	got, err := rule(full).Validate(c)
	if err != nil || got.Rules[0].Ladder != full {
		t.Fatalf("a full ladder: %+v, %v", got.Rules[0].Ladder, err)
	}
	// A fallback chat without a time is no step.
	got, err = rule(Ladder{FallbackChatID: -400}).Validate(c)
	if err != nil || got.Rules[0].Ladder != (Ladder{}) {
		t.Fatalf("chat without time: %+v, %v", got.Rules[0].Ladder, err)
	}
}

func TestLadderPlan(t *testing.T) {
	at := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	l := Ladder{BumpAfter: 15 * time.Minute, FallbackAfter: 90 * time.Minute, FallbackChatID: -400, TaskAfter: time.Hour, ExpireAfter: 3 * time.Hour}
	var kinds []string
	for _, tm := range l.Plan(at, -100) {
		kinds = append(kinds, tm.Kind+"@"+tm.At.Format("15:04"))
	}
	if got := strings.Join(kinds, " "); got != "bump@14:15 task@15:00 fallback@15:30 expire@17:00" {
		t.Fatalf("plan %s", got)
	}
	// A deal posted to the fallback chat itself has no fallback step.
	for _, tm := range l.Plan(at, -400) {
		if tm.Kind == TimerFallback {
			t.Fatal("fallback planned to the order's own chat")
		}
	}
	if DefaultLadder().Plan(at, -100)[0].Kind != TimerBump || len(Ladder{}.Plan(at, -100)) != 0 {
		t.Fatal("default ladder bumps first; a zero ladder plans nothing")
	}
	if n := NextTimer(l.Plan(at, -100)...); n == nil || n.Kind != TimerBump || NextTimer() != nil {
		t.Fatalf("next timer %+v", n)
	}
}
