package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
)

// DealActions are the manager's actions on a deal, carried out by the flow.
type DealActions interface {
	PostNow(ctx context.Context, accountID, leadID int64) error
	Withdraw(ctx context.Context, accountID, leadID int64) error
	Unassign(ctx context.Context, accountID, leadID int64) error
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
	zones    *zones
}

// NewWidget serves the widget API; adminTTL (DefaultAdminTTL when 0) bounds
// how long a user's admin status read from amoCRM is trusted.
func NewWidget(svc *Service, verifier amocrm.WidgetTokenVerifier, actions DealActions, bot BotLinks, adminTTL time.Duration) *Widget {
	if adminTTL <= 0 {
		adminTTL = DefaultAdminTTL
	}
	return &Widget{svc: svc, verifier: verifier, actions: actions, bot: bot,
		admins: &admins{ttl: adminTTL, now: svc.now, m: map[adminKey]adminEntry{}}, zones: &zones{m: map[int64]zoneEntry{}}}
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

// State is what the settings page shows an admin. A manager gets only what
// the deal card needs (the account and its chats): the bot's links carry the
// link code, which links any group to the account.
type State struct {
	Account dispatch.Account
	IsAdmin bool
	Bot     *BotLink // nil: the bot is not configured or Telegram does not answer
	// Catalog's Chats are set for everyone, the rest for admins only.
	dispatch.Catalog
	Executors []dispatch.Executor
	Settings  *dispatch.Settings
}

// BotLink is how a group is linked to the account: the bot's deep link and
// its command, both carrying the link code.
type BotLink struct {
	Username      string
	StartGroupURL string
	LinkCommand   string
}

// Deal is the order state of one deal.
type Deal struct {
	LeadID       int64
	TargetChatID int64
	Order        *dispatch.Order  // the latest order; nil if none
	ChatTitle    string           // of the order's chat
	Timeline     []dispatch.Event // every order of the deal, oldest first
	NextStep     *dispatch.Timer  // the order's earliest scheduled step; nil if none
}

// botLink is the bot's deep link and command for a link code; nil when the
// bot is not configured or Telegram does not answer.
func (w *Widget) botLink(ctx context.Context, code string) *BotLink {
	if w.bot == nil {
		return nil
	}
	u, err := w.bot.Username(ctx)
	if err != nil {
		return nil
	}
	return &BotLink{Username: u, StartGroupURL: "https://t.me/" + u + "?startgroup=" + code, LinkCommand: "/link " + code}
}

// State is everything the settings page shows an admin; a manager (the deal
// card) gets the account and its chats. Pipelines, fields and users are read
// live from amoCRM (and the stored pipelines refreshed), so the choices match
// the account as it is now.
func (w *Widget) State(ctx context.Context, a dispatch.Account, userID int64) (State, error) {
	st := State{Account: a}
	var err error
	if st.Chats, err = w.svc.db.Chats(ctx, a.ID); err != nil {
		return st, err
	}
	if st.IsAdmin, err = w.IsAdmin(ctx, a, userID); err != nil || !st.IsAdmin {
		return st, err
	}
	st.Bot = w.botLink(ctx, a.LinkCode)
	api, err := w.svc.API(ctx, a.ID)
	if err != nil {
		return st, err
	}
	if st.Pipelines, err = w.pipelines(ctx, api); err != nil {
		return st, err
	}
	if err := w.svc.db.ReplacePipelines(ctx, a.ID, st.Pipelines); err != nil {
		return st, err
	}
	if st.Fields, err = w.fields(ctx, api, true); err != nil {
		return st, err
	}
	if st.Users, err = w.users(ctx, api); err != nil {
		return st, err
	}
	if st.Executors, err = w.svc.db.AccountExecutors(ctx, a.ID); err != nil {
		return st, err
	}
	s, err := w.svc.db.Settings(ctx, a.ID)
	if err != nil {
		return st, err
	}
	st.Settings = &s
	return st, nil
}

func (w *Widget) pipelines(ctx context.Context, api *amocrm.API) ([]dispatch.Pipeline, error) {
	pipelines, err := api.ListPipelines(ctx)
	if err != nil {
		return nil, fmt.Errorf("read pipelines from amoCRM: %w", err)
	}
	return toDomainPipelines(pipelines), nil
}

// fields are the account's deal fields. The settings page does not offer
// the executor field (the order's result, not part of it), but settings
// saved naming it stay valid.
func (w *Widget) fields(ctx context.Context, api *amocrm.API, offered bool) ([]dispatch.Field, error) {
	fields, err := api.ListLeadCustomFields(ctx)
	if err != nil {
		return nil, fmt.Errorf("read deal fields from amoCRM: %w", err)
	}
	var out []dispatch.Field
	for _, f := range fields {
		if !offered || f.Code != ExecutorFieldCode {
			out = append(out, dispatch.Field{ID: f.ID, Name: f.Name, Type: f.Type})
		}
	}
	return out, nil
}

func (w *Widget) users(ctx context.Context, api *amocrm.API) ([]dispatch.User, error) {
	users, err := api.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("read users from amoCRM: %w", err)
	}
	out := make([]dispatch.User, 0, len(users))
	for _, u := range users {
		out = append(out, dispatch.User{ID: u.ID, Name: u.Name})
	}
	return out, nil
}

// RotateLinkCode replaces the account's link code: the old one links no
// group from now on (groups already linked stay linked).
func (w *Widget) RotateLinkCode(ctx context.Context, a dispatch.Account, userID int64) (*BotLink, error) {
	code, err := w.svc.db.RotateLinkCode(ctx, a.ID)
	if err != nil {
		return nil, err
	}
	w.svc.log.Info("link code rotated", "account_id", a.ID, "user_id", userID)
	return w.botLink(ctx, code), nil
}

// SaveSettings validates settings against the account's real pipelines,
// stages, chats, fields and users, then stores them. Invalid input changes
// nothing. It returns the settings as stored.
func (w *Widget) SaveSettings(ctx context.Context, a dispatch.Account, want dispatch.Settings) (dispatch.Settings, error) {
	want.AccountID = a.ID
	if err := dispatch.CheckLanguage(want.Language); err != nil {
		return dispatch.Settings{}, err // refused before any amoCRM request
	}
	c, err := w.catalog(ctx, a.ID, want)
	if err != nil {
		return dispatch.Settings{}, err
	}
	out, err := want.Validate(c)
	if err != nil {
		return dispatch.Settings{}, err
	}
	if err := w.svc.db.SaveSettings(ctx, out); err != nil {
		return dispatch.Settings{}, err
	}
	w.svc.log.Info("settings saved", "account_id", a.ID)
	return out, nil
}

// catalog reads what settings are checked against. Fields and users are read
// only when the settings name some: each list is an amoCRM request.
func (w *Widget) catalog(ctx context.Context, accountID int64, s dispatch.Settings) (dispatch.Catalog, error) {
	var c dispatch.Catalog
	api, err := w.svc.API(ctx, accountID)
	if err != nil {
		return c, err
	}
	if c.Pipelines, err = w.pipelines(ctx, api); err != nil {
		return c, err
	}
	if c.Chats, err = w.svc.db.Chats(ctx, accountID); err != nil {
		return c, err
	}
	if s.OrderFieldIDs != nil || jobTimeFields(s) {
		if c.Fields, err = w.fields(ctx, api, false); err != nil {
			return c, err
		}
	}
	if len(s.ExecutorUsers) > 0 {
		if c.Users, err = w.users(ctx, api); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Deal is the order state of one deal.
func (w *Widget) Deal(ctx context.Context, a dispatch.Account, leadID int64) (Deal, error) {
	if leadID <= 0 {
		return Deal{}, dispatch.Invalid("lead id must be positive")
	}
	d := Deal{LeadID: leadID}
	var err error
	if d.TargetChatID, err = w.svc.db.DealTarget(ctx, a.ID, leadID); err != nil {
		return d, err
	}
	o, err := w.svc.db.LatestOrder(ctx, a.ID, leadID)
	if errors.Is(err, dispatch.ErrNotFound) {
		return d, nil
	}
	if err != nil {
		return d, err
	}
	d.Order = &o
	if c, err := w.svc.db.Chat(ctx, o.ChatID); err == nil && c.AccountID == a.ID {
		d.ChatTitle = c.Title
	}
	timers, err := w.svc.db.PendingTimers(ctx, a.ID, o.ID)
	if err != nil {
		return d, err
	}
	d.NextStep = dispatch.NextTimer(timers...)
	if d.Timeline, err = w.svc.db.LeadEvents(ctx, a.ID, leadID); err != nil {
		return d, err
	}
	return d, w.nextReminder(ctx, o, &d)
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

// Unassign takes the order from its executor: the deal goes back to the
// search and is posted again, and the executor is told.
func (w *Widget) Unassign(ctx context.Context, a dispatch.Account, leadID int64) error {
	return w.actions.Unassign(ctx, a.ID, leadID)
}

func (w *Widget) Repost(ctx context.Context, a dispatch.Account, leadID int64) error {
	if err := w.actions.Withdraw(ctx, a.ID, leadID); err != nil {
		return err
	}
	return w.actions.PostNow(ctx, a.ID, leadID)
}
