// Package service carries out the product's use cases — installing into an
// amoCRM account, keeping its tokens fresh, linking Telegram chats — over the
// store and the amoCRM client. Transports (HTTP, Telegram) call it.
package service

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/secret"
	"github.com/amodispatch/amodispatch/backend/internal/store"
)

// Config is what the service needs from the process configuration.
type Config struct {
	PublicURL    string
	ClientID     string
	ClientSecret string
	// StateKeys sign the OAuth state of installs started from our own page:
	// the first signs, any verifies, so an install begun before a key
	// rotation still completes on a replica already rotated.
	StateKeys [][]byte
	// WebhookQuota is each account's webhook deliveries a second in this
	// process (bursts of ten seconds' worth); 0: no quota.
	WebhookQuota float64
}

// Service is safe for concurrent use.
type Service struct {
	cfg   Config
	db    *store.DB
	amo   *amocrm.Client // nil when amoCRM is not configured
	log   *slog.Logger
	now   func() time.Time
	owner string // identifies this process in cross-process leases

	refreshMu sync.Map // account id → *sync.Mutex: one refresh per account in this process

	exchanges *exchangeLimiter

	accounts sync.Map // account id → cachedAccount, for webhook authentication
	quota    *webhookQuota
}

func New(cfg Config, db *store.DB, amo *amocrm.Client, log *slog.Logger, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{cfg: cfg, db: db, amo: amo, log: log, now: now, owner: "proc-" + secret.Token(8), exchanges: newExchangeLimiter(),
		quota: newWebhookQuota(cfg.WebhookQuota)}
}

// Owner is this process's identity in leases.
func (s *Service) Owner() string { return s.owner }

// WebhookSettings are the amoCRM events the product subscribes to.
var WebhookSettings = []string{"add_lead", "status_lead", "update_lead", "delete_lead"}

// ExecutorFieldCode marks the deal custom field that holds the executor.
const ExecutorFieldCode = "AMODISPATCH_EXECUTOR"

// Reasons an install is refused, for the page that explains it; each is
// also dispatch.ErrInvalid.
var (
	ErrCodeRefused = errors.New("amoCRM refused the authorization code")
	ErrBadState    = errors.New("state not issued by this server")
)

// InstallRequest is what amoCRM passes to the OAuth redirect URI, plus what
// the HTTP edge knows of the caller.
type InstallRequest struct {
	Code       string
	Referer    string
	State      string
	ClientID   string
	FromWidget bool
	Error      string
	// ClientAddr keys the limit of code exchanges per caller.
	ClientAddr string
	// PageProof is what PageProof gave this browser after an earlier install.
	PageProof string
}

// Install exchanges the authorization code at the account's own host, reads
// the account, stores it with its tokens and runs the post-install setup.
// Nothing is stored unless amoCRM accepted the code and the account it names
// is the one at referer.
//
// State: amoCRM's own post-install redirect carries from_widget and a state
// of its choosing (the literal "state" in captured redirects), so with
// from_widget the state is not ours to check, as in amoCRM's PHP library.
// Without from_widget the install began on our /oauth/amocrm/install page and
// a state must be one we signed; a redirect with no state at all is accepted.
func (s *Service) Install(ctx context.Context, req InstallRequest) (dispatch.Account, error) {
	if s.amo == nil {
		return dispatch.Account{}, fmt.Errorf("amoCRM integration: %w", dispatch.ErrNotConfigured)
	}
	if req.Error != "" {
		return dispatch.Account{}, dispatch.Invalid("amoCRM reported %q", truncate(req.Error, 40))
	}
	if req.Code == "" {
		return dispatch.Account{}, dispatch.Invalid("missing code")
	}
	if !plausibleCode(req.Code) {
		return dispatch.Account{}, dispatch.Invalid("code is not an amoCRM authorization code")
	}
	if req.ClientID != "" && subtle.ConstantTimeCompare([]byte(req.ClientID), []byte(s.cfg.ClientID)) != 1 {
		return dispatch.Account{}, dispatch.Invalid("client_id does not belong to this integration")
	}
	if req.State != "" && !req.FromWidget {
		if err := s.checkState(req.State); err != nil {
			return dispatch.Account{}, fmt.Errorf("%w: %w", ErrBadState, err)
		}
	}
	domain, err := amocrm.NormalizeDomain(req.Referer)
	if err != nil {
		return dispatch.Account{}, dispatch.Invalid("referer is not an amoCRM or Kommo account host")
	}
	if !s.exchanges.allow(req.ClientAddr, s.now()) {
		return dispatch.Account{}, fmt.Errorf("install callback: code exchanges: %w", dispatch.ErrRateLimited)
	}
	tok, err := s.amo.ExchangeCode(ctx, domain, req.Code)
	if err != nil {
		var ae *amocrm.Error
		if errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500 {
			if a, ok := s.installedBefore(ctx, req.PageProof, domain); ok {
				// The admin reloaded the confirmation page: its code is spent.
				return a, nil
			}
			return dispatch.Account{}, fmt.Errorf("%w: %w", ErrCodeRefused, dispatch.Invalid("amoCRM rejected the authorization code (%d %s)", ae.StatusCode, truncate(ae.Title, 80)))
		}
		return dispatch.Account{}, fmt.Errorf("exchange code at %s: %w", domain, err)
	}
	api := s.amo.Account(domain, 0, staticToken(tok.AccessToken))
	acc, err := api.GetAccount(ctx)
	if err != nil {
		return dispatch.Account{}, fmt.Errorf("read account at %s: %w", domain, err)
	}
	if acc.ID == 0 {
		return dispatch.Account{}, fmt.Errorf("read account at %s: amoCRM returned no account id", domain)
	}
	// The host we were sent to must be the account's own: a proxy or a
	// mix-up there would otherwise file one account's tokens under another's
	// host, where its widget and CORS look them up.
	sub, _, _ := strings.Cut(domain, ".")
	if !strings.EqualFold(acc.Subdomain, sub) {
		return dispatch.Account{}, dispatch.Invalid("amoCRM's account %d is %q, not the referer's %q", acc.ID, truncate(acc.Subdomain, 63), sub)
	}
	account, displaced, err := s.db.SaveInstallation(ctx, store.Installation{
		ID: acc.ID, Subdomain: sub, Domain: domain, Name: acc.Name, Language: acc.Language, Currency: cmp.Or(acc.Currency, "RUB"),
		Tokens: dispatch.Tokens{Access: dispatch.Secret(tok.AccessToken), Refresh: dispatch.Secret(tok.RefreshToken), ExpiresAt: tok.ExpiresAt},
	})
	if err != nil {
		return dispatch.Account{}, err
	}
	s.forgetAccount(account.ID)
	for _, old := range displaced {
		s.forgetAccount(old)
		s.log.Warn("an older account held this domain; it is switched off", "account_id", old, "domain", domain, "new_account_id", account.ID)
	}
	s.log.Info("account installed", "account_id", account.ID, "domain", domain)
	if err := s.Setup(ctx, account.ID); err != nil {
		// The account is installed; setup is retried in the background.
		s.log.Warn("account setup failed, will retry", "account_id", account.ID, "err", err)
	}
	return s.db.Account(ctx, account.ID)
}

// installedBefore finds the active account a page proof names, if the proof
// is valid and the account lives at domain.
func (s *Service) installedBefore(ctx context.Context, proof, domain string) (dispatch.Account, bool) {
	id, ok := s.checkPageProof(proof)
	if !ok {
		return dispatch.Account{}, false
	}
	a, err := s.db.Account(ctx, id)
	if err != nil || a.Status != dispatch.AccountActive || a.Domain != domain {
		return dispatch.Account{}, false
	}
	return a, true
}

func truncate(v string, n int) string {
	if len(v) <= n {
		return v
	}
	return v[:n] + "…"
}

type staticToken string

func (t staticToken) AccessToken(context.Context) (string, error) { return string(t), nil }
func (t staticToken) Refresh(context.Context, string) (string, error) {
	return "", fmt.Errorf("fresh token rejected: %w", amocrm.ErrUnauthorized)
}

// WebhookURL is where amoCRM delivers an account's events; the secret in the
// path authenticates them.
func (s *Service) WebhookURL(a dispatch.Account) string {
	return fmt.Sprintf("%s/amocrm/webhook/%d/%s", s.cfg.PublicURL, a.ID, a.WebhookSecret.Reveal())
}

// Setup subscribes the account's webhook, stores its pipelines and makes sure
// the executor deal field exists. Every step is idempotent.
func (s *Service) Setup(ctx context.Context, accountID int64) (err error) {
	defer func() {
		if err == nil {
			return
		}
		if ferr := s.db.FinishSetup(context.WithoutCancel(ctx), accountID, 0, err.Error()); ferr != nil {
			s.log.Error("record setup failure", "account_id", accountID, "err", ferr)
		}
	}()
	a, err := s.db.Account(ctx, accountID)
	if err != nil {
		return err
	}
	api, err := s.API(ctx, accountID)
	if err != nil {
		return err
	}
	if _, err := api.SubscribeWebhook(ctx, s.WebhookURL(a), WebhookSettings); err != nil {
		return fmt.Errorf("subscribe webhook: %w", err)
	}
	pipelines, err := api.ListPipelines(ctx)
	if err != nil {
		return fmt.Errorf("list pipelines: %w", err)
	}
	if err := s.db.ReplacePipelines(ctx, accountID, toDomainPipelines(pipelines)); err != nil {
		return err
	}
	fieldID, err := s.ensureExecutorField(ctx, api, a.Language)
	if err != nil {
		return err
	}
	return s.db.FinishSetup(ctx, accountID, fieldID, "")
}

func toDomainPipelines(in []amocrm.Pipeline) []dispatch.Pipeline {
	out := make([]dispatch.Pipeline, 0, len(in))
	for _, p := range in {
		dp := dispatch.Pipeline{ID: p.ID, Name: p.Name, Sort: p.Sort, IsMain: p.IsMain}
		for _, st := range p.Statuses {
			dp.Stages = append(dp.Stages, dispatch.Stage{ID: st.ID, Name: st.Name, Sort: st.Sort})
		}
		out = append(out, dp)
	}
	return out
}

func (s *Service) ensureExecutorField(ctx context.Context, api *amocrm.API, lang string) (int64, error) {
	fields, err := api.ListLeadCustomFields(ctx)
	if err != nil {
		return 0, fmt.Errorf("list deal fields: %w", err)
	}
	for _, f := range fields {
		if f.Code == ExecutorFieldCode {
			return f.ID, nil
		}
	}
	name := "Исполнитель (amoDispatch)"
	if strings.HasPrefix(lang, "en") {
		name = "Executor (amoDispatch)"
	}
	created, err := api.CreateLeadCustomFields(ctx, []amocrm.CustomField{{Name: name, Type: "text", Code: ExecutorFieldCode, Sort: 510}})
	if err != nil {
		return 0, fmt.Errorf("create executor field: %w", err)
	}
	if len(created) != 1 || created[0].ID == 0 {
		return 0, errors.New("create executor field: amoCRM returned no field id")
	}
	return created[0].ID, nil
}

// RetrySetups re-runs the setup of active accounts whose setup failed.
func (s *Service) RetrySetups(ctx context.Context) {
	accounts, err := s.db.ActiveAccounts(ctx)
	if err != nil {
		s.log.Error("list accounts for setup", "err", err)
		return
	}
	for _, a := range accounts {
		if a.SetupDoneAt != nil {
			continue
		}
		if err := s.Setup(ctx, a.ID); err != nil {
			s.log.Warn("account setup retry failed", "account_id", a.ID, "err", err)
		}
	}
}

// Disconnect handles amoCRM's hook for an account that switched the
// integration off. The signature is hex HMAC-SHA256 of "client_id|account_id"
// keyed with the client secret, compared in constant time. Because that
// signature is the same for every call, the account is switched off only once
// amoCRM confirms it refuses the account's tokens.
func (s *Service) Disconnect(ctx context.Context, clientUUID, accountID, signature string) error {
	if s.amo == nil {
		return fmt.Errorf("amoCRM integration: %w", dispatch.ErrNotConfigured)
	}
	id, err := strconv.ParseInt(accountID, 10, 64)
	if err != nil || id <= 0 {
		return dispatch.Invalid("account_id must be a positive integer")
	}
	mac := hmac.New(sha256.New, []byte(s.cfg.ClientSecret))
	mac.Write([]byte(s.cfg.ClientID + "|" + accountID))
	want := mac.Sum(nil)
	got, err := hex.DecodeString(signature)
	if err != nil || !hmac.Equal(got, want) || subtle.ConstantTimeCompare([]byte(clientUUID), []byte(s.cfg.ClientID)) != 1 {
		return fmt.Errorf("disconnect hook: bad signature: %w", dispatch.ErrUnauthorized)
	}
	off, err := s.tokensRefused(ctx, id)
	if err != nil {
		// Unconfirmed, nothing changes. A 5xx lets amoCRM retry if it does;
		// if it does not, a truly revoked token is found at its next use and
		// the account is marked revoked then.
		return fmt.Errorf("disconnect hook for account %d: confirm with amoCRM: %w", id, err)
	}
	if !off {
		// The signature never changes for an account, and the hook is a GET
		// that proxies log: this is a replay, e.g. after a reinstall.
		s.log.Warn("disconnect hook ignored: amoCRM still accepts the account's token", "account_id", id)
		return nil
	}
	if err := s.db.SetAccountStatus(ctx, id, dispatch.AccountDisabled); err != nil {
		return err
	}
	s.forgetAccount(id)
	s.log.Info("account disabled the integration", "account_id", id)
	return nil
}

// tokensRefused asks amoCRM whether the account's stored token still works.
// The call goes through the account's API client, under its rate limit, and
// refreshes once on a 401; a refused refresh marks the account revoked.
func (s *Service) tokensRefused(ctx context.Context, id int64) (bool, error) {
	a, err := s.db.Account(ctx, id)
	if err != nil {
		return false, err
	}
	if a.Status != dispatch.AccountActive {
		return true, nil // no tokens left to check: it is off already
	}
	api, err := s.API(ctx, id)
	if errors.Is(err, dispatch.ErrAccountOff) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	_, err = api.GetAccount(ctx)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, dispatch.ErrAccountOff), errors.Is(err, amocrm.ErrUnauthorized):
		return true, nil
	}
	return false, err
}

// State issues a signed OAuth state for an install started from our own page.
func (s *Service) State() string {
	exp := strconv.FormatInt(s.now().Add(30*time.Minute).Unix(), 10)
	nonce := secret.Token(9)
	return "ad1." + nonce + "." + exp + "." + s.sign(nonce+"."+exp)
}

func (s *Service) checkState(state string) error {
	parts := strings.Split(state, ".")
	if len(parts) != 4 || parts[0] != "ad1" {
		return dispatch.Invalid("unknown state")
	}
	signed := false
	for _, k := range s.cfg.StateKeys {
		signed = signed || hmac.Equal([]byte(parts[3]), []byte(signWith(k, parts[1]+"."+parts[2])))
	}
	if !signed {
		return dispatch.Invalid("state signature does not match")
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || s.now().Unix() > exp {
		return dispatch.Invalid("state expired")
	}
	return nil
}

func (s *Service) sign(v string) string { return signWith(s.cfg.StateKeys[0], v) }

func signWith(key []byte, v string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(v))
	return hex.EncodeToString(mac.Sum(nil))[:32]
}
