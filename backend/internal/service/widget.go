package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// DealActions are the manager's actions on a deal, carried out by the flow.
type DealActions interface {
	PostNow(ctx context.Context, accountID, leadID int64) error
	Withdraw(ctx context.Context, accountID, leadID int64) error
}

// BotLinks gives the widget the bot's deep link.
type BotLinks interface {
	Username(ctx context.Context) (string, error)
}

// Widget serves the widget's API. Every method takes the account that the
// verified token named, and reads or writes only that account's data.
type Widget struct {
	svc      *Service
	verifier amocrm.WidgetTokenVerifier
	actions  DealActions
	bot      BotLinks // nil when Telegram is not configured
	admins   *admins
}

// NewWidget serves the widget API; adminTTL (DefaultAdminTTL when 0) bounds
// how long a user's admin status read from amoCRM is trusted.
func NewWidget(svc *Service, verifier amocrm.WidgetTokenVerifier, actions DealActions, bot BotLinks, adminTTL time.Duration) *Widget {
	if adminTTL <= 0 {
		adminTTL = DefaultAdminTTL
	}
	return &Widget{svc: svc, verifier: verifier, actions: actions, bot: bot,
		admins: &admins{ttl: adminTTL, now: svc.now, m: map[adminKey]adminEntry{}}}
}

// Authenticate verifies a disposable token and returns its installed, active account.
func (w *Widget) Authenticate(ctx context.Context, token string) (dispatch.Account, int64, error) {
	if token == "" {
		return dispatch.Account{}, 0, fmt.Errorf("no X-Auth-Token: %w", dispatch.ErrUnauthorized)
	}
	c, err := w.verifier.Verify(token)
	if err != nil {
		return dispatch.Account{}, 0, fmt.Errorf("%w: %w", dispatch.ErrUnauthorized, err)
	}
	a, err := w.svc.db.Account(ctx, c.AccountID)
	if err != nil {
		if errors.Is(err, dispatch.ErrNotFound) {
			return dispatch.Account{}, 0, fmt.Errorf("account %d has not installed the integration: %w", c.AccountID, dispatch.ErrNotFound)
		}
		return dispatch.Account{}, 0, err
	}
	if a.Status != dispatch.AccountActive {
		return dispatch.Account{}, 0, fmt.Errorf("account %d: %w", a.ID, dispatch.ErrAccountOff)
	}
	if a.Domain != mustHost(c.Issuer) {
		return dispatch.Account{}, 0, fmt.Errorf("token issuer is not the account's host: %w", dispatch.ErrUnauthorized)
	}
	return a, c.UserID, nil
}

func mustHost(iss string) string {
	h, _ := amocrm.NormalizeDomain(iss)
	return h
}

// AllowedOrigin reports whether a browser origin is an installed account's
// own amoCRM/Kommo page (used for CORS, preflights included).
func (w *Widget) AllowedOrigin(ctx context.Context, origin string) (dispatch.Account, bool) {
	host, err := amocrm.NormalizeDomain(origin)
	if err != nil || "https://"+host != origin {
		return dispatch.Account{}, false
	}
	a, err := w.svc.db.AccountByDomain(ctx, host)
	return a, err == nil
}

// JSON shapes of the widget API.
type (
	// WidgetState is the settings page's data for an admin. A manager gets
	// only what the deal card needs (the account and its chats): the bot's
	// links carry the link code, which links any group to the account.
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
	}
	RuleView struct {
		PipelineID      int64   `json:"pipeline_id"`
		TriggerStageIDs []int64 `json:"trigger_stage_ids"`
		FoundStageID    int64   `json:"found_stage_id"`
		DefaultChatID   int64   `json:"default_chat_id"`
	}
	DealView struct {
		LeadID       int64      `json:"lead_id"`
		TargetChatID int64      `json:"target_chat_id"`
		Order        *OrderView `json:"order"`
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

func settingsView(s dispatch.Settings) SettingsView {
	v := SettingsView{Language: s.Language, OrderFieldIDs: s.OrderFieldIDs, ShowBudget: s.ShowBudget,
		Rules: []RuleView{}, ExecutorUsers: map[string]int64{}}
	for _, r := range s.Rules {
		v.Rules = append(v.Rules, RuleView{PipelineID: r.PipelineID, TriggerStageIDs: nonNil(r.TriggerStageIDs),
			FoundStageID: r.FoundStageID, DefaultChatID: r.DefaultChatID})
	}
	for tg, amo := range s.ExecutorUsers {
		v.ExecutorUsers[strconv.FormatInt(tg, 10)] = amo
	}
	return v
}

func nonNil(ids []int64) []int64 {
	if ids == nil {
		return []int64{}
	}
	return ids
}

// botView is the bot's deep link and command for a link code; nil when the
// bot is not configured or Telegram does not answer.
func (w *Widget) botView(ctx context.Context, code string) *BotView {
	if w.bot == nil {
		return nil
	}
	u, err := w.bot.Username(ctx)
	if err != nil {
		return nil
	}
	return &BotView{Username: u, StartGroupURL: "https://t.me/" + u + "?startgroup=" + code, LinkCommand: "/link " + code}
}

// State is everything the settings page shows an admin; a manager (the deal
// card) gets the account and its chats. Pipelines, fields and users are read
// live from amoCRM (and the stored pipelines refreshed), so the choices match
// the account as it is now.
func (w *Widget) State(ctx context.Context, a dispatch.Account, userID int64) (WidgetState, error) {
	st := WidgetState{Account: AccountView{ID: a.ID, Name: a.Name, Subdomain: a.Subdomain, Language: a.Language},
		Chats: []ChatView{}, Pipelines: []PipelineView{}, Fields: []FieldView{}, Users: []UserView{}, Executors: []ExecutorView{}}
	chats, err := w.svc.db.Chats(ctx, a.ID)
	if err != nil {
		return st, err
	}
	for _, c := range chats {
		st.Chats = append(st.Chats, ChatView{ID: c.ID, Title: c.Title, Type: string(c.Type), Active: c.Active})
	}
	if st.IsAdmin, err = w.IsAdmin(ctx, a, userID); err != nil || !st.IsAdmin {
		return st, err
	}
	st.Bot = w.botView(ctx, a.LinkCode)
	api, err := w.svc.API(ctx, a.ID)
	if err != nil {
		return st, err
	}
	pipelines, err := api.ListPipelines(ctx)
	if err != nil {
		return st, fmt.Errorf("read pipelines from amoCRM: %w", err)
	}
	if err := w.svc.db.ReplacePipelines(ctx, a.ID, toDomainPipelines(pipelines)); err != nil {
		return st, err
	}
	for _, p := range pipelines {
		pv := PipelineView{ID: p.ID, Name: p.Name, Stages: []StageView{}}
		for _, s := range p.Statuses {
			pv.Stages = append(pv.Stages, StageView{ID: s.ID, Name: s.Name})
		}
		st.Pipelines = append(st.Pipelines, pv)
	}
	fields, err := api.ListLeadCustomFields(ctx)
	if err != nil {
		return st, fmt.Errorf("read deal fields from amoCRM: %w", err)
	}
	for _, f := range fields {
		if f.Code != ExecutorFieldCode {
			st.Fields = append(st.Fields, FieldView{ID: f.ID, Name: f.Name, Type: f.Type})
		}
	}
	users, err := api.ListUsers(ctx)
	if err != nil {
		return st, fmt.Errorf("read users from amoCRM: %w", err)
	}
	for _, u := range users {
		st.Users = append(st.Users, UserView{ID: u.ID, Name: u.Name})
	}
	execs, err := w.svc.db.AccountExecutors(ctx, a.ID)
	if err != nil {
		return st, err
	}
	for _, e := range execs {
		st.Executors = append(st.Executors, ExecutorView{TelegramID: e.TelegramID, Name: e.FullName(), Username: e.Username})
	}
	s, err := w.svc.db.Settings(ctx, a.ID)
	if err != nil {
		return st, err
	}
	sv := settingsView(s)
	st.Settings = &sv
	return st, nil
}

// RotateLinkCode replaces the account's link code: the old one links no
// group from now on (groups already linked stay linked).
func (w *Widget) RotateLinkCode(ctx context.Context, a dispatch.Account, userID int64) (LinkView, error) {
	code, err := w.svc.db.RotateLinkCode(ctx, a.ID)
	if err != nil {
		return LinkView{}, err
	}
	w.svc.log.Info("link code rotated", "account_id", a.ID, "user_id", userID)
	return LinkView{Bot: w.botView(ctx, code)}, nil
}

// SaveSettings validates settings against the account's real pipelines,
// stages, chats, fields and users, then stores them. Invalid input changes nothing.
func (w *Widget) SaveSettings(ctx context.Context, a dispatch.Account, in SettingsView) (SettingsView, error) {
	want := dispatch.Settings{AccountID: a.ID, Language: in.Language, OrderFieldIDs: in.OrderFieldIDs, ShowBudget: in.ShowBudget,
		ExecutorUsers: map[int64]int64{}}
	for _, r := range in.Rules {
		want.Rules = append(want.Rules, dispatch.Rule{PipelineID: r.PipelineID, TriggerStageIDs: r.TriggerStageIDs,
			FoundStageID: r.FoundStageID, DefaultChatID: r.DefaultChatID})
	}
	for tgStr, amoUser := range in.ExecutorUsers {
		tg, err := strconv.ParseInt(tgStr, 10, 64)
		if err != nil {
			return SettingsView{}, dispatch.Invalid("%q is not a Telegram user id", tgStr)
		}
		want.ExecutorUsers[tg] = amoUser
	}
	if err := dispatch.CheckLanguage(want.Language); err != nil {
		return SettingsView{}, err // refused before any amoCRM request
	}
	c, err := w.catalog(ctx, a.ID, want)
	if err != nil {
		return SettingsView{}, err
	}
	out, err := want.Validate(c)
	if err != nil {
		return SettingsView{}, err
	}
	if err := w.svc.db.SaveSettings(ctx, out); err != nil {
		return SettingsView{}, err
	}
	w.svc.log.Info("settings saved", "account_id", a.ID)
	return settingsView(out), nil
}

// catalog reads what settings are checked against. Fields and users are read
// only when the settings name some: each list is an amoCRM request.
func (w *Widget) catalog(ctx context.Context, accountID int64, s dispatch.Settings) (dispatch.Catalog, error) {
	var c dispatch.Catalog
	api, err := w.svc.API(ctx, accountID)
	if err != nil {
		return c, err
	}
	pipelines, err := api.ListPipelines(ctx)
	if err != nil {
		return c, fmt.Errorf("read pipelines from amoCRM: %w", err)
	}
	c.Pipelines = toDomainPipelines(pipelines)
	if c.Chats, err = w.svc.db.Chats(ctx, accountID); err != nil {
		return c, err
	}
	if s.OrderFieldIDs != nil {
		fields, err := api.ListLeadCustomFields(ctx)
		if err != nil {
			return c, fmt.Errorf("read deal fields from amoCRM: %w", err)
		}
		for _, f := range fields {
			c.FieldIDs = append(c.FieldIDs, f.ID)
		}
	}
	if len(s.ExecutorUsers) > 0 {
		users, err := api.ListUsers(ctx)
		if err != nil {
			return c, fmt.Errorf("read users from amoCRM: %w", err)
		}
		for _, u := range users {
			c.UserIDs = append(c.UserIDs, u.ID)
		}
	}
	return c, nil
}

// Deal is the order state of one deal.
func (w *Widget) Deal(ctx context.Context, a dispatch.Account, leadID int64) (DealView, error) {
	if leadID <= 0 {
		return DealView{}, dispatch.Invalid("lead id must be positive")
	}
	v := DealView{LeadID: leadID}
	var err error
	if v.TargetChatID, err = w.svc.db.DealTarget(ctx, a.ID, leadID); err != nil {
		return v, err
	}
	o, err := w.svc.db.LatestOrder(ctx, a.ID, leadID)
	if errors.Is(err, dispatch.ErrNotFound) {
		return v, nil
	}
	if err != nil {
		return v, err
	}
	ov := &OrderView{ID: o.ID, Status: string(o.Status), Chat: ChatRef{ID: o.ChatID}, MessageID: o.MessageID,
		CreatedAt: o.CreatedAt, TakenAt: o.TakenAt, FailReason: o.FailReason}
	if c, err := w.svc.db.Chat(ctx, o.ChatID); err == nil && c.AccountID == a.ID {
		ov.Chat.Title = c.Title
	}
	if o.Status == dispatch.OrderTaken {
		ov.Executor = &ExecutorView{TelegramID: o.ExecutorID, Name: o.ExecutorName, Username: o.ExecutorUsername}
	}
	v.Order = ov
	return v, nil
}

// SetDealChat chooses this deal's target chat (0 returns to the default).
func (w *Widget) SetDealChat(ctx context.Context, a dispatch.Account, leadID, chatID int64) error {
	if leadID <= 0 {
		return dispatch.Invalid("lead id must be positive")
	}
	if chatID != 0 {
		c, err := w.svc.db.Chat(ctx, chatID)
		if err != nil || !c.ActiveFor(a.ID) {
			return dispatch.Invalid("chat %d is not an active chat of this account", chatID)
		}
	}
	return w.svc.db.SetDealTarget(ctx, a.ID, leadID, chatID)
}

// Post, Withdraw and Repost are the deal card's actions.
func (w *Widget) Post(ctx context.Context, a dispatch.Account, leadID int64) error {
	return w.actions.PostNow(ctx, a.ID, leadID)
}

func (w *Widget) Withdraw(ctx context.Context, a dispatch.Account, leadID int64) error {
	return w.actions.Withdraw(ctx, a.ID, leadID)
}

func (w *Widget) Repost(ctx context.Context, a dispatch.Account, leadID int64) error {
	if err := w.actions.Withdraw(ctx, a.ID, leadID); err != nil {
		return err
	}
	return w.actions.PostNow(ctx, a.ID, leadID)
}
