package dispatch

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

func catalog() Catalog {
	return Catalog{
		Pipelines: []Pipeline{
			{ID: 10, Stages: []Stage{{ID: 101}, {ID: 102}, {ID: 103}, {ID: StageWon}, {ID: StageLost}}},
			{ID: 20, Stages: []Stage{{ID: 201}, {ID: 202}}},
		},
		Chats: []Chat{
			{ID: -100, AccountID: 1, Active: true},
			{ID: -200, AccountID: 1, Active: false},
			{ID: -300, AccountID: 2, Active: true},
		},
		Fields: []Field{{ID: 501}, {ID: 502}},
		Users:  []User{{ID: 900}, {ID: 901}},
	}
}

func TestValidateRefusals(t *testing.T) {
	ok := Rule{PipelineID: 10, TriggerStageIDs: []int64{101}, FoundStageID: 102, DefaultChatID: -100}
	tests := []struct {
		name string
		s    Settings
		msg  string
	}{
		{"language", Settings{Language: "de"}, `language must be`},
		{"unknown pipeline", Settings{Rules: []Rule{{PipelineID: 99}}}, "pipeline 99 does not exist"},
		{"pipeline twice", Settings{Rules: []Rule{ok, ok}}, "pipeline 10 is configured twice"},
		{"trigger of another pipeline", Settings{Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{201}}}}, "stage 201 is not a working stage of pipeline 10"},
		{"trigger won", Settings{Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{StageWon}}}}, "stage 142 is not a working stage"},
		{"trigger lost", Settings{Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{StageLost}}}}, "stage 143 is not a working stage"},
		{"found stage elsewhere", Settings{Rules: []Rule{{PipelineID: 10, FoundStageID: 202}}}, "stage 202 does not belong to pipeline 10"},
		{"found is a trigger", Settings{Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{101}, FoundStageID: 101}}}, "cannot also be a search stage"},
		{"inactive chat", Settings{Rules: []Rule{{PipelineID: 10, DefaultChatID: -200}}}, "chat -200 is not an active chat"},
		{"another account's chat", Settings{Rules: []Rule{{PipelineID: 10, DefaultChatID: -300}}}, "chat -300 is not an active chat"},
		{"unknown chat", Settings{Rules: []Rule{{PipelineID: 10, DefaultChatID: -400}}}, "chat -400 is not an active chat"},
		{"inactive digest chat", Settings{DigestChatID: -200}, "chat -200 is not an active chat"},
		{"another account's digest chat", Settings{DigestChatID: -300}, "chat -300 is not an active chat"},
		{"unknown field", Settings{OrderFieldIDs: []int64{501, 599}}, "deal field 599 does not exist"},
		{"bad Telegram id", Settings{ExecutorUsers: map[int64]int64{-5: 900}}, `"-5" is not a Telegram user id`},
		{"unknown user", Settings{ExecutorUsers: map[int64]int64{5: 999}}, "user 999 does not exist"},
		{"status stage elsewhere", Settings{Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{101}, StatusStages: map[OrderStatus]int64{OrderOnWay: 202}}}}, "stage 202 is not a stage of pipeline 10 outside the search"},
		{"status stage a trigger", Settings{Rules: []Rule{{PipelineID: 10, TriggerStageIDs: []int64{101}, StatusStages: map[OrderStatus]int64{OrderDone: 101}}}}, "stage 101 is not a stage of pipeline 10 outside the search"},
		{"release has no stage", Settings{Rules: []Rule{{PipelineID: 10, StatusStages: map[OrderStatus]int64{OrderReleased: 102}}}}, `"released" is not a status that moves the deal`},
		{"unknown button", Settings{Rules: []Rule{{PipelineID: 10, StatusButtons: []OrderStatus{OrderTaken}}}}, `"taken" is not a status button`},
		{"contact policy", Settings{ContactPolicy: "everyone"}, "contact policy must be"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.AccountID = 1
			_, err := tc.s.Validate(catalog())
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Validate: %v, want ErrInvalid with %q", err, tc.msg)
			}
		})
	}
}

func TestValidateNormalises(t *testing.T) {
	in := Settings{AccountID: 1, Language: "en", ShowBudget: true, OrderFieldIDs: []int64{502},
		Rules:         []Rule{{PipelineID: 10, TriggerStageIDs: []int64{103, 101, 103}, FoundStageID: 102, DefaultChatID: -100}, {PipelineID: 20}},
		ExecutorUsers: map[int64]int64{5: 900, 6: 0}, DigestChatID: -100}
	got, err := in.Validate(catalog())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Rules[0].TriggerStageIDs, []int64{101, 103}) {
		t.Errorf("trigger stages %v, want sorted without repeats", got.Rules[0].TriggerStageIDs)
	}
	if !maps.Equal(got.ExecutorUsers, map[int64]int64{5: 900}) {
		t.Errorf("executor users %v: a mapping to user 0 removes it", got.ExecutorUsers)
	}
	if got.AccountID != 1 || got.Language != "en" || !got.ShowBudget || !slices.Equal(got.OrderFieldIDs, []int64{502}) || len(got.Rules) != 2 ||
		got.DigestChatID != -100 {
		t.Errorf("settings changed on the way: %+v", got)
	}
	nilFields, err := Settings{AccountID: 1}.Validate(Catalog{})
	if err != nil || nilFields.OrderFieldIDs != nil {
		t.Errorf("no field list: %v, %v; want nil (every field shown)", nilFields.OrderFieldIDs, err)
	}
}

func TestChatActiveFor(t *testing.T) {
	tests := []struct {
		c    Chat
		want bool
	}{
		{Chat{AccountID: 1, Active: true}, true},
		{Chat{AccountID: 1, Active: false}, false},
		{Chat{AccountID: 2, Active: true}, false},
		{Chat{}, false},
	}
	for _, tc := range tests {
		if got := tc.c.ActiveFor(1); got != tc.want {
			t.Errorf("%+v.ActiveFor(1) = %v, want %v", tc.c, got, tc.want)
		}
	}
}
