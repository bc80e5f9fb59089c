package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/secret"
)

type accountRow struct {
	ID               int64 `gorm:"primaryKey;autoIncrement:false"`
	Subdomain        string
	Domain           string
	Name             string
	Language         string
	Currency         string
	Status           string
	LinkCodeHash     string // linkCodeHash of the code: what Telegram commands are matched by
	LinkCodeEnc      string
	WebhookSecretEnc string
	AccessTokenEnc   string
	RefreshTokenEnc  string
	TokenExpiresAt   int64
	RefreshLockOwner string
	RefreshLockUntil int64
	ExecutorFieldID  int64
	SetupDoneAt      *time.Time
	SetupError       string
	InstalledAt      time.Time
	DisabledAt       *time.Time
	UpdatedAt        time.Time
}

func (accountRow) TableName() string { return "accounts" }

func aad(accountID int64, what string) string { return fmt.Sprintf("account:%d:%s", accountID, what) }

// linkCodeHash is what the database keeps to find a link code: a code is
// 96 random bits, so a plain SHA-256 cannot be reversed by trying codes, and
// unlike an HMAC it does not change when ENCRYPTION_KEY rotates.
func linkCodeHash(code string) string {
	sum := sha256.Sum256([]byte(code))
	return hex.EncodeToString(sum[:])
}

// newLinkCode makes a fresh code for account id, hashed and sealed.
func (db *DB) newLinkCode(id int64) (code, hash, sealed string, err error) {
	code = secret.Token(12)
	sealed, err = db.box.Seal(code, aad(id, "linkcode"))
	return code, linkCodeHash(code), sealed, err
}

func (db *DB) toAccount(r accountRow) (dispatch.Account, error) {
	ws, err := db.box.Open(r.WebhookSecretEnc, aad(r.ID, "webhook"))
	if err != nil {
		return dispatch.Account{}, fmt.Errorf("store: account %d webhook secret: %w", r.ID, err)
	}
	code, err := db.box.Open(r.LinkCodeEnc, aad(r.ID, "linkcode"))
	if err != nil {
		return dispatch.Account{}, fmt.Errorf("store: account %d link code: %w", r.ID, err)
	}
	return dispatch.Account{
		ID: r.ID, Subdomain: r.Subdomain, Domain: r.Domain, Name: r.Name, Language: r.Language, Currency: r.Currency,
		Status: dispatch.AccountStatus(r.Status), LinkCode: code, WebhookSecret: dispatch.Secret(ws),
		ExecutorFieldID: r.ExecutorFieldID, SetupDoneAt: r.SetupDoneAt, SetupError: r.SetupError,
		InstalledAt: r.InstalledAt, UpdatedAt: r.UpdatedAt,
	}, nil
}

// Installation is what an OAuth callback learned about an account.
type Installation struct {
	ID        int64
	Subdomain string
	Domain    string
	Name      string
	Language  string
	Currency  string
	Tokens    dispatch.Tokens
}

// SaveInstallation creates the account or, on a reinstall, updates the same
// row: tokens replaced, status active again, link code and webhook secret kept
// so chats and the subscribed webhook URL stay valid.
//
// A domain belongs to one live account: another row still active (or
// revoked) at the same domain is an account deleted in amoCRM whose
// subdomain was taken by this one. It is disabled in the same transaction,
// its tokens deleted, and its id returned in displaced; otherwise lookups by
// domain (CORS, the widget) could pick either.
func (db *DB) SaveInstallation(ctx context.Context, in Installation) (_ dispatch.Account, displaced []int64, _ error) {
	access, err := db.box.Seal(in.Tokens.Access.Reveal(), aad(in.ID, "access"))
	if err != nil {
		return dispatch.Account{}, nil, err
	}
	refresh, err := db.box.Seal(in.Tokens.Refresh.Reveal(), aad(in.ID, "refresh"))
	if err != nil {
		return dispatch.Account{}, nil, err
	}
	now := db.utcNow()
	var out accountRow
	err = db.transaction(ctx, func(tx *gorm.DB) error {
		displaced = nil
		live := []dispatch.AccountStatus{dispatch.AccountActive, dispatch.AccountRevoked}
		if err := tx.Model(&accountRow{}).Where("domain = ? AND id <> ? AND status IN ?", in.Domain, in.ID, live).
			Order("id").Pluck("id", &displaced).Error; err != nil {
			return err
		}
		if len(displaced) > 0 {
			err := tx.Model(&accountRow{}).Where("id IN ? AND status IN ?", displaced, live).Updates(map[string]any{
				"status": string(dispatch.AccountDisabled), "access_token_enc": "", "refresh_token_enc": "",
				"token_expires_at": 0, "disabled_at": now, "updated_at": now,
			}).Error
			if err != nil {
				return err
			}
		}
		var existing accountRow
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", in.ID).Take(&existing).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			ws, err := db.box.Seal(secret.Token(24), aad(in.ID, "webhook"))
			if err != nil {
				return err
			}
			_, codeHash, codeEnc, err := db.newLinkCode(in.ID)
			if err != nil {
				return err
			}
			out = accountRow{
				ID: in.ID, Subdomain: in.Subdomain, Domain: in.Domain, Name: in.Name, Language: in.Language, Currency: in.Currency,
				Status: string(dispatch.AccountActive), LinkCodeHash: codeHash, LinkCodeEnc: codeEnc, WebhookSecretEnc: ws,
				AccessTokenEnc: access, RefreshTokenEnc: refresh, TokenExpiresAt: in.Tokens.ExpiresAt.UnixMilli(),
				InstalledAt: now, UpdatedAt: now,
			}
			return tx.Create(&out).Error
		case err != nil:
			return err
		}
		out = existing
		out.Subdomain, out.Domain, out.Name, out.Language, out.Currency = in.Subdomain, in.Domain, in.Name, in.Language, in.Currency
		out.Status = string(dispatch.AccountActive)
		out.AccessTokenEnc, out.RefreshTokenEnc = access, refresh
		out.TokenExpiresAt = in.Tokens.ExpiresAt.UnixMilli()
		out.RefreshLockOwner, out.RefreshLockUntil = "", 0
		out.DisabledAt = nil
		out.SetupDoneAt, out.SetupError = nil, ""
		out.UpdatedAt = now
		return tx.Save(&out).Error
	})
	if err != nil {
		return dispatch.Account{}, nil, translate(err, "save installation")
	}
	a, err := db.toAccount(out)
	return a, displaced, err
}

// Account returns one account by id, whatever its status.
func (db *DB) Account(ctx context.Context, id int64) (dispatch.Account, error) {
	var r accountRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return dispatch.Account{}, translate(err, fmt.Sprintf("account %d", id))
	}
	return db.toAccount(r)
}

// AccountByLinkCode finds the active account a Telegram link code belongs to.
func (db *DB) AccountByLinkCode(ctx context.Context, code string) (dispatch.Account, error) {
	var r accountRow
	err := db.gorm.WithContext(ctx).Where("link_code_hash = ? AND status = ?", linkCodeHash(code), dispatch.AccountActive).Take(&r).Error
	if err != nil {
		return dispatch.Account{}, translate(err, "account by link code")
	}
	return db.toAccount(r)
}

// RotateLinkCode gives an active account a new link code and returns it; the
// old one links nothing from then on. Chats already linked stay linked.
func (db *DB) RotateLinkCode(ctx context.Context, accountID int64) (string, error) {
	code, hash, sealed, err := db.newLinkCode(accountID)
	if err != nil {
		return "", err
	}
	res := db.gorm.WithContext(ctx).Model(&accountRow{}).Where("id = ? AND status = ?", accountID, dispatch.AccountActive).
		Updates(map[string]any{"link_code_hash": hash, "link_code_enc": sealed, "updated_at": db.utcNow()})
	if res.Error != nil {
		return "", translate(res.Error, "rotate link code")
	}
	if res.RowsAffected == 0 {
		return "", fmt.Errorf("rotate link code of account %d: %w", accountID, dispatch.ErrNotFound)
	}
	return code, nil
}

// sealLegacyLinkCodes finishes migration 00005: rows it left with no sealed
// code hold the plain code in link_code_hash; each is rewritten in one
// conditional UPDATE, so replicas migrating together convert a row once.
func (db *DB) sealLegacyLinkCodes(ctx context.Context) error {
	var rows []accountRow
	if err := db.gorm.WithContext(ctx).Select("id", "link_code_hash").Where("link_code_enc = ''").Find(&rows).Error; err != nil {
		return translate(err, "seal legacy link codes")
	}
	for _, r := range rows {
		plain := r.LinkCodeHash
		sealed, err := db.box.Seal(plain, aad(r.ID, "linkcode"))
		if err != nil {
			return fmt.Errorf("store: seal link code of account %d: %w", r.ID, err)
		}
		err = db.gorm.WithContext(ctx).Model(&accountRow{}).
			Where("id = ? AND link_code_enc = '' AND link_code_hash = ?", r.ID, plain).
			UpdateColumns(map[string]any{"link_code_hash": linkCodeHash(plain), "link_code_enc": sealed}).Error
		if err != nil {
			return translate(err, fmt.Sprintf("seal link code of account %d", r.ID))
		}
	}
	if len(rows) > 0 {
		db.log.Info("link codes hashed and sealed", "accounts", len(rows))
	}
	return nil
}

// ActiveAccounts lists the accounts that currently have the integration on.
func (db *DB) ActiveAccounts(ctx context.Context) ([]dispatch.Account, error) {
	var rows []accountRow
	if err := db.gorm.WithContext(ctx).Where("status = ?", dispatch.AccountActive).Order("id").Find(&rows).Error; err != nil {
		return nil, translate(err, "active accounts")
	}
	out := make([]dispatch.Account, 0, len(rows))
	for _, r := range rows {
		a, err := db.toAccount(r)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Tokens returns an active account's decrypted OAuth tokens.
func (db *DB) Tokens(ctx context.Context, accountID int64) (dispatch.Tokens, error) {
	var r accountRow
	err := db.gorm.WithContext(ctx).Select("id", "status", "access_token_enc", "refresh_token_enc", "token_expires_at").
		Where("id = ?", accountID).Take(&r).Error
	if err != nil {
		return dispatch.Tokens{}, translate(err, fmt.Sprintf("tokens of account %d", accountID))
	}
	if r.Status != string(dispatch.AccountActive) || r.RefreshTokenEnc == "" {
		return dispatch.Tokens{}, fmt.Errorf("account %d: %w", accountID, dispatch.ErrAccountOff)
	}
	access, err := db.box.Open(r.AccessTokenEnc, aad(r.ID, "access"))
	if err != nil {
		return dispatch.Tokens{}, fmt.Errorf("store: account %d access token: %w", r.ID, err)
	}
	refresh, err := db.box.Open(r.RefreshTokenEnc, aad(r.ID, "refresh"))
	if err != nil {
		return dispatch.Tokens{}, fmt.Errorf("store: account %d refresh token: %w", r.ID, err)
	}
	return dispatch.Tokens{Access: dispatch.Secret(access), Refresh: dispatch.Secret(refresh), ExpiresAt: time.UnixMilli(r.TokenExpiresAt)}, nil
}

// AcquireRefreshLock takes the account's refresh lease if it is free or
// expired. amoCRM refresh tokens are single-use, so only the holder may spend
// one; the lease is a row in the shared database, so this holds across processes.
func (db *DB) AcquireRefreshLock(ctx context.Context, accountID int64, owner string, ttl time.Duration) (bool, error) {
	now := db.nowMillis()
	res := db.gorm.WithContext(ctx).Model(&accountRow{}).
		Where("id = ? AND status = ? AND (refresh_lock_owner = '' OR refresh_lock_until < ?)", accountID, dispatch.AccountActive, now).
		Updates(map[string]any{"refresh_lock_owner": owner, "refresh_lock_until": now + ttl.Milliseconds()})
	if res.Error != nil {
		return false, translate(res.Error, "acquire refresh lock")
	}
	return res.RowsAffected == 1, nil
}

// ReleaseRefreshLock frees the lease if owner still holds it.
func (db *DB) ReleaseRefreshLock(ctx context.Context, accountID int64, owner string) error {
	err := db.gorm.WithContext(ctx).Model(&accountRow{}).
		Where("id = ? AND refresh_lock_owner = ?", accountID, owner).
		Updates(map[string]any{"refresh_lock_owner": "", "refresh_lock_until": 0}).Error
	return translate(err, "release refresh lock")
}

// SaveRefreshedTokens stores a refreshed pair, only while owner holds the lease:
// a holder whose lease expired must not overwrite a newer pair.
func (db *DB) SaveRefreshedTokens(ctx context.Context, accountID int64, owner string, t dispatch.Tokens) error {
	access, err := db.box.Seal(t.Access.Reveal(), aad(accountID, "access"))
	if err != nil {
		return err
	}
	refresh, err := db.box.Seal(t.Refresh.Reveal(), aad(accountID, "refresh"))
	if err != nil {
		return err
	}
	res := db.gorm.WithContext(ctx).Model(&accountRow{}).
		Where("id = ? AND refresh_lock_owner = ? AND status = ?", accountID, owner, dispatch.AccountActive).
		Updates(map[string]any{
			"access_token_enc": access, "refresh_token_enc": refresh, "token_expires_at": t.ExpiresAt.UnixMilli(),
			"updated_at": db.utcNow(),
		})
	if res.Error != nil {
		return translate(res.Error, "save refreshed tokens")
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("store: save refreshed tokens of account %d: refresh lease lost: %w", accountID, dispatch.ErrConflict)
	}
	return nil
}

// SetAccountStatus switches an account off (disabled by the admin, or revoked
// tokens). Its tokens are deleted: nothing may call amoCRM for it any more.
func (db *DB) SetAccountStatus(ctx context.Context, accountID int64, status dispatch.AccountStatus) error {
	now := db.utcNow()
	updates := map[string]any{"status": string(status), "updated_at": now}
	if status != dispatch.AccountActive {
		updates["access_token_enc"] = ""
		updates["refresh_token_enc"] = ""
		updates["token_expires_at"] = 0
		updates["disabled_at"] = now
	}
	res := db.gorm.WithContext(ctx).Model(&accountRow{}).Where("id = ?", accountID).Updates(updates)
	if res.Error != nil {
		return translate(res.Error, "set account status")
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("account %d: %w", accountID, dispatch.ErrNotFound)
	}
	return nil
}

// FinishSetup records the outcome of the post-install steps.
func (db *DB) FinishSetup(ctx context.Context, accountID, executorFieldID int64, setupErr string) error {
	updates := map[string]any{"setup_error": setupErr, "updated_at": db.utcNow()}
	if setupErr == "" {
		updates["setup_done_at"] = db.utcNow()
		updates["executor_field_id"] = executorFieldID
	}
	err := db.gorm.WithContext(ctx).Model(&accountRow{}).Where("id = ?", accountID).Updates(updates).Error
	return translate(err, "finish setup")
}

// AccountByDomain finds an installed account by its amoCRM host, for CORS:
// an active one, or one whose tokens amoCRM revoked, so that its widget can
// read the API's answer that the integration must be installed again.
func (db *DB) AccountByDomain(ctx context.Context, domain string) (dispatch.Account, error) {
	var r accountRow
	err := db.gorm.WithContext(ctx).Where("domain = ? AND status IN ?", domain, []dispatch.AccountStatus{dispatch.AccountActive, dispatch.AccountRevoked}).Take(&r).Error
	if err != nil {
		return dispatch.Account{}, translate(err, "account by domain")
	}
	return db.toAccount(r)
}
