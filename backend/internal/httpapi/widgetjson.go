package httpapi

import (
	"strconv"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

// JSON shapes of the widget API. Lists are never null: the widget iterates
// them without checks.
type (
	// WidgetState is the settings page's data for an admin. A manager gets
	// only what the deal card needs (the account and its chats).
	WidgetState struct {
		Account   AccountView    `json:"account"`
		IsAdmin   bool           `json:"is_admin"`
		Bot       *BotView       `json:"bot"`
		Chats     []ChatView     `json:"chats"`
		Pipelines []PipelineView `json:"pipelines"`
		Fields    []FieldView    `json:"fields"`
		Users     []UserView     `json:"users"`
		Executors []ExecutorView `json:"executors"`
		Settings  *SettingsView  `json:"settings,omitempty"`
	}
	// LinkView is the answer to a link code rotation.
	LinkView struct {
		Bot *BotView `json:"bot"`
	}
	AccountView struct {
		ID        int64  `json:"id"`
		Name      string `json:"name"`
		Subdomain string `json:"subdomain"`
		Language  string `json:"language"`
	}
	BotView struct {
		Username      string `json:"username"`
		StartGroupURL string `json:"startgroup_url"`
		LinkCommand   string `json:"link_command"`
	}
	ChatView struct {
		ID     int64  `json:"id"`
		Title  string `json:"title"`
		Type   string `json:"type"`
		Active bool   `json:"active"`
	}
	PipelineView struct {
		ID     int64       `json:"id"`
		Name   string      `json:"name"`
		Stages []StageView `json:"stages"`
	}
	StageView struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	FieldView struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
		Type string `json:"type"`
	}
	UserView struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	ExecutorView struct {
		TelegramID int64  `json:"telegram_id"`
		Name       string `json:"name"`
		Username   string `json:"username"`
	}
	SettingsView struct {
		Language      string           `json:"language"`
		OrderFieldIDs []int64          `json:"order_field_ids"`
		ShowBudget    bool             `json:"show_budget"`
		Rules         []RuleView       `json:"rules"`
		ExecutorUsers map[string]int64 `json:"executor_users"`
		// ContactPolicy: "" any group member may ask before the take,
		// "executor" only the executor, with the take.
		ContactPolicy string `json:"contact_policy"`
		// DigestChatID: the chat of the weekly statistics digest (0: none).
		DigestChatID int64 `json:"digest_chat_id"`
	}
	RuleView struct {
		PipelineID      int64   `json:"pipeline_id"`
		TriggerStageIDs []int64 `json:"trigger_stage_ids"`
		FoundStageID    int64   `json:"found_stage_id"`
		DefaultChatID   int64   `json:"default_chat_id"`
		// StatusStages maps "on_way", "started", "done" to a stage (0 or
		// missing: the stage stays); StatusButtons lists the card's buttons
		// ("on_way", "started", "done", "released"), null for all.
		StatusStages  map[string]int64 `json:"status_stages"`
		StatusButtons []string         `json:"status_buttons"`
		// JobTimeFieldID is the deal's date or date_time field holding the
		// job time (0: no reminders); ReminderOffsetsMin are the reminders'
		// minutes before it, largest first, null for the defaults (1440, 60).
		JobTimeFieldID     int64   `json:"job_time_field_id"`
		ReminderOffsetsMin []int64 `json:"reminder_offsets_min"`
		// Ladder escalates an order nobody takes; null or missing gives
		// the default (bump after 15 minutes, task after 60).
		Ladder *LadderView `json:"ladder"`
	}
	// LadderView is a pipeline's escalation: minutes after the order opened
	// (hours for expiry); 0 switches a step off.
	LadderView struct {
		BumpMin        int   `json:"bump_min"`
		FallbackMin    int   `json:"fallback_min"`
		FallbackChatID int64 `json:"fallback_chat_id"`
		TaskMin        int   `json:"task_min"`
		ExpireHours    int   `json:"expire_hours"`
	}
	// NextStepView is the earliest scheduled step of the deal's order (a
	// ladder step: bump, fallback, task, expire; or reminder, the
	// executor's next reminder before the job time, whose at carries the
	// account's UTC offset).
	NextStepView struct {
		Kind string    `json:"kind"`
		At   time.Time `json:"at"`
	}
	DealView struct {
		LeadID       int64       `json:"lead_id"`
		TargetChatID int64       `json:"target_chat_id"`
		Order        *OrderView  `json:"order"`
		Timeline     []EventView `json:"timeline"`
		// NextStep is null when nothing is scheduled.
		NextStep *NextStepView `json:"next_step"`
	}
	// EventView is one step of the deal's orders: kind is posted, taken,
	// on_way, started, done, released, ended or contact.
	EventView struct {
		OrderID string    `json:"order_id"`
		Kind    string    `json:"kind"`
		Actor   string    `json:"actor"`
		At      time.Time `json:"at"`
	}
	OrderView struct {
		ID         string        `json:"id"`
		Status     string        `json:"status"`
		Chat       ChatRef       `json:"chat"`
		MessageID  int           `json:"message_id"`
		CreatedAt  time.Time     `json:"created_at"`
		Executor   *ExecutorView `json:"executor"`
		TakenAt    *time.Time    `json:"taken_at"`
		FailReason string        `json:"fail_reason"`
	}
	ChatRef struct {
		ID    int64  `json:"id"`
		Title string `json:"title"`
	}
)

func stateView(st service.State) WidgetState {
	a := st.Account
	v := WidgetState{Account: AccountView{ID: a.ID, Name: a.Name, Subdomain: a.Subdomain, Language: a.Language},
		IsAdmin: st.IsAdmin, Bot: botView(st.Bot), Chats: []ChatView{}, Pipelines: []PipelineView{}, Fields: []FieldView{},
		Users: []UserView{}, Executors: []ExecutorView{}}
	for _, c := range st.Chats {
		v.Chats = append(v.Chats, ChatView{ID: c.ID, Title: c.Title, Type: string(c.Type), Active: c.Active})
	}
	for _, p := range st.Pipelines {
		pv := PipelineView{ID: p.ID, Name: p.Name, Stages: []StageView{}}
		for _, s := range p.Stages {
			pv.Stages = append(pv.Stages, StageView{ID: s.ID, Name: s.Name})
		}
		v.Pipelines = append(v.Pipelines, pv)
	}
	for _, f := range st.Fields {
		v.Fields = append(v.Fields, FieldView{ID: f.ID, Name: f.Name, Type: f.Type})
	}
	for _, u := range st.Users {
		v.Users = append(v.Users, UserView{ID: u.ID, Name: u.Name})
	}
	for _, e := range st.Executors {
		v.Executors = append(v.Executors, ExecutorView{TelegramID: e.TelegramID, Name: e.FullName(), Username: e.Username})
	}
	if st.Settings != nil {
		sv := settingsView(*st.Settings)
		v.Settings = &sv
	}
	return v
}

func botView(b *service.BotLink) *BotView {
	if b == nil {
		return nil
	}
	return &BotView{Username: b.Username, StartGroupURL: b.StartGroupURL, LinkCommand: b.LinkCommand}
}

func settingsView(s dispatch.Settings) SettingsView {
	v := SettingsView{Language: s.Language, OrderFieldIDs: s.OrderFieldIDs, ShowBudget: s.ShowBudget,
		Rules: []RuleView{}, ExecutorUsers: map[string]int64{}}
	for _, r := range s.Rules {
		rv := RuleView{PipelineID: r.PipelineID, TriggerStageIDs: nonNil(r.TriggerStageIDs),
			FoundStageID: r.FoundStageID, DefaultChatID: r.DefaultChatID, StatusStages: map[string]int64{}, Ladder: ladderView(r.Ladder)}
		for st, stage := range r.StatusStages {
			rv.StatusStages[string(st)] = stage
		}
		if r.StatusButtons != nil {
			rv.StatusButtons = []string{}
			for _, st := range r.StatusButtons {
				rv.StatusButtons = append(rv.StatusButtons, string(st))
			}
		}
		rv.JobTimeFieldID, rv.ReminderOffsetsMin = reminderViews(r)
		v.Rules = append(v.Rules, rv)
	}
	v.ContactPolicy = string(s.ContactPolicy)
	v.DigestChatID = s.DigestChatID
	for tg, amo := range s.ExecutorUsers {
		v.ExecutorUsers[strconv.FormatInt(tg, 10)] = amo
	}
	return v
}

// settingsFrom reads the settings page's body; JSON object keys are strings,
// so the executor map's Telegram ids are parsed here.
func settingsFrom(v SettingsView) (dispatch.Settings, error) {
	s := dispatch.Settings{Language: v.Language, OrderFieldIDs: v.OrderFieldIDs, ShowBudget: v.ShowBudget, ExecutorUsers: map[int64]int64{},
		ContactPolicy: dispatch.ContactPolicy(v.ContactPolicy), DigestChatID: v.DigestChatID}
	for _, r := range v.Rules {
		rule := dispatch.Rule{PipelineID: r.PipelineID, TriggerStageIDs: r.TriggerStageIDs,
			FoundStageID: r.FoundStageID, DefaultChatID: r.DefaultChatID, Ladder: ladderFrom(r.Ladder)}
		for st, stage := range r.StatusStages {
			if rule.StatusStages == nil {
				rule.StatusStages = map[dispatch.OrderStatus]int64{}
			}
			rule.StatusStages[dispatch.OrderStatus(st)] = stage
		}
		if r.StatusButtons != nil {
			rule.StatusButtons = []dispatch.OrderStatus{}
			for _, st := range r.StatusButtons {
				rule.StatusButtons = append(rule.StatusButtons, dispatch.OrderStatus(st))
			}
		}
		rule.JobTimeFieldID, rule.ReminderOffsets = reminderRule(r)
		s.Rules = append(s.Rules, rule)
	}
	for tgStr, amoUser := range v.ExecutorUsers {
		tg, err := strconv.ParseInt(tgStr, 10, 64)
		if err != nil {
			return dispatch.Settings{}, dispatch.Invalid("%q is not a Telegram user id", tgStr)
		}
		s.ExecutorUsers[tg] = amoUser
	}
	return s, nil
}

func nonNil(ids []int64) []int64 {
	if ids == nil {
		return []int64{}
	}
	return ids
}

func dealView(d service.Deal) DealView {
	v := DealView{LeadID: d.LeadID, TargetChatID: d.TargetChatID, Timeline: []EventView{}}
	for _, e := range d.Timeline {
		v.Timeline = append(v.Timeline, EventView{OrderID: e.OrderID, Kind: e.Kind, Actor: e.Actor, At: e.At})
	}
	if n := d.NextStep; n != nil {
		v.NextStep = &NextStepView{Kind: n.Kind, At: n.At}
	}
	if o := d.Order; o != nil {
		v.Order = &OrderView{ID: o.ID, Status: string(o.Status), Chat: ChatRef{ID: o.ChatID, Title: d.ChatTitle}, MessageID: o.MessageID,
			CreatedAt: o.CreatedAt, TakenAt: o.TakenAt, FailReason: o.FailReason}
		if o.Assigned() {
			v.Order.Executor = &ExecutorView{TelegramID: o.ExecutorID, Name: o.ExecutorName, Username: o.ExecutorUsername}
		}
	}
	return v
}

func ladderView(l dispatch.Ladder) *LadderView {
	return &LadderView{BumpMin: int(l.BumpAfter / time.Minute), FallbackMin: int(l.FallbackAfter / time.Minute),
		FallbackChatID: l.FallbackChatID, TaskMin: int(l.TaskAfter / time.Minute), ExpireHours: int(l.ExpireAfter / time.Hour)}
}

// ladderFrom reads a rule's ladder; a client that does not know it (null)
// gets the default, which Validate then checks like any other.
func ladderFrom(v *LadderView) dispatch.Ladder {
	if v == nil {
		return dispatch.DefaultLadder()
	}
	return dispatch.Ladder{BumpAfter: time.Duration(v.BumpMin) * time.Minute, FallbackAfter: time.Duration(v.FallbackMin) * time.Minute,
		FallbackChatID: v.FallbackChatID, TaskAfter: time.Duration(v.TaskMin) * time.Minute, ExpireAfter: time.Duration(v.ExpireHours) * time.Hour}
}

// reminderViews are a rule's job-time field and offsets in minutes (nil: the defaults).
func reminderViews(r dispatch.Rule) (int64, []int64) {
	if r.ReminderOffsets == nil {
		return r.JobTimeFieldID, nil
	}
	mins := []int64{}
	for _, d := range r.ReminderOffsets {
		mins = append(mins, int64(d/time.Minute))
	}
	return r.JobTimeFieldID, mins
}

// reminderRule reads a rule's job-time field and offsets from minutes.
func reminderRule(v RuleView) (int64, []time.Duration) {
	if v.ReminderOffsetsMin == nil {
		return v.JobTimeFieldID, nil
	}
	offs := []time.Duration{}
	for _, m := range v.ReminderOffsetsMin {
		if m < 0 || m > int64(dispatch.MaxReminderOffset/time.Minute) {
			m = -1 // out of range, and refused as such without overflowing
		}
		offs = append(offs, time.Duration(m)*time.Minute)
	}
	return v.JobTimeFieldID, offs
}
