package fakeamocrm

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// CodeTTL is how long an authorization code is valid in amoCRM.
const CodeTTL = 20 * time.Minute

const oauthProblemType = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"

type authCode struct {
	accountID int64
	expires   time.Time
	used      bool
}

type tokenPair struct {
	accountID  int64
	userID     int64
	access     string
	refresh    string
	accessExp  time.Time
	refreshExp time.Time
	// accessDead is set when the pair was rotated away or revoked.
	accessDead bool
	// refreshUsed is set once the refresh token has been exchanged; reuse
	// then answers "Token has been revoked" like amoCRM does.
	refreshUsed bool
	issuedAt    time.Time
	seq         int64
}

// TokenPair describes one issued access/refresh pair.
type TokenPair struct {
	AccessToken      string
	RefreshToken     string
	ExpiresAt        time.Time // access token expiry
	RefreshExpiresAt time.Time
	AccessValid      bool // usable for the API right now
	RefreshValid     bool // exchangeable right now
}

// Install is what the backend's OAuth callback receives when a user installs
// the integration: amoCRM redirects the browser to RedirectURI with Query.
type Install struct {
	Code  string
	Query url.Values
	URL   string
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// IssueInstall creates a single-use authorization code (valid CodeTTL) and
// the install redirect amoCRM would send for it.
func (s *Server) IssueInstall(accountID int64, state string) Install {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.mustAccount(accountID)
	// The length of the captured real code (906 characters): the backend
	// bounds codes by length, and a short fake one would hide a bound too tight.
	code := "def50200" + randHex(449)
	s.codes[code] = &authCode{accountID: accountID, expires: s.now().Add(CodeTTL)}
	platform := "1"
	if acc.kommo {
		platform = "2"
	}
	q := url.Values{
		"code":        {code},
		"state":       {state},
		"referer":     {acc.domain},
		"platform":    {platform},
		"client_id":   {s.opts.ClientID},
		"from_widget": {"1"},
	}
	return Install{Code: code, Query: q, URL: s.opts.RedirectURI + "?" + q.Encode()}
}

// IssueCode is IssueInstall without a state, returning just the code.
func (s *Server) IssueCode(accountID int64) string {
	return s.IssueInstall(accountID, "").Code
}

// IssueTokens mints a token pair directly, skipping the OAuth dance, for
// tests that only need an authenticated account. It does not count as a
// refresh grant.
func (s *Server) IssueTokens(accountID int64) TokenPair {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.issuePairLocked(s.mustAccount(accountID))
	return s.pairView(p)
}

// Tokens lists every pair issued for the account, oldest first.
func (s *Server) Tokens(accountID int64) []TokenPair {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []TokenPair
	for _, p := range s.pairsByRT {
		if p.accountID == accountID {
			out = append(out, s.pairView(p))
		}
	}
	slices.SortFunc(out, func(a, b TokenPair) int {
		return cmp.Compare(s.pairsByRT[a.RefreshToken].seq, s.pairsByRT[b.RefreshToken].seq)
	})
	return out
}

func (s *Server) pairView(p *tokenPair) TokenPair {
	now := s.now()
	return TokenPair{
		AccessToken:      p.access,
		RefreshToken:     p.refresh,
		ExpiresAt:        p.accessExp,
		RefreshExpiresAt: p.refreshExp,
		AccessValid:      !p.accessDead && now.Before(p.accessExp),
		RefreshValid:     !p.refreshUsed && now.Before(p.refreshExp),
	}
}

// ExpireAccessTokens makes every access token of the account expired, as if
// its TTL had passed; refresh tokens keep working.
func (s *Server) ExpireAccessTokens(accountID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.now().Add(-time.Second)
	for _, p := range s.pairsByAT {
		if p.accountID == accountID {
			p.accessExp = past
		}
	}
}

// RevokeTokens simulates the integration being disabled/uninstalled: every
// existing access and refresh token of the account stops working. A new
// authorization code (re-install) still yields working tokens.
func (s *Server) RevokeTokens(accountID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pairsByAT {
		if p.accountID == accountID {
			p.accessDead = true
			p.refreshUsed = true
		}
	}
}

// RefreshCount is the number of successful refresh_token grants for the
// account; RefreshAttempts counts every refresh grant that named one of its
// tokens, successful or not.
func (s *Server) RefreshCount(accountID int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if acc := s.accounts[accountID]; acc != nil {
		return acc.refreshOK
	}
	return 0
}

// RefreshAttempts: see RefreshCount.
func (s *Server) RefreshAttempts(accountID int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if acc := s.accounts[accountID]; acc != nil {
		return acc.refreshAttempts
	}
	return 0
}

func (s *Server) mustAccount(id int64) *account {
	acc := s.accounts[id]
	if acc == nil {
		panic(fmt.Sprintf("fakeamocrm: unknown account %d", id))
	}
	return acc
}

// issuePairLocked mints a JWT-shaped access token (amoCRM's are JWTs and
// some clients peek at their claims) plus an opaque refresh token.
func (s *Server) issuePairLocked(acc *account) *tokenPair {
	now := s.now()
	exp := now.Add(s.opts.AccessTokenTTL)
	claims := map[string]any{
		"aud":         s.opts.ClientID,
		"jti":         randHex(20),
		"iat":         now.Unix(),
		"nbf":         now.Unix(),
		"exp":         exp.Unix(),
		"sub":         fmt.Sprint(acc.apiUserID),
		"account_id":  acc.id,
		"base_domain": strings.TrimPrefix(acc.domain, acc.subdomain+"."),
		"api_domain":  "api-b.amocrm.ru",
		"scopes":      []string{"crm", "notifications"},
	}
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"typ":"JWT","alg":"RS256","jti":"` + randHex(20) + `"}`))
	payload, _ := json.Marshal(claims)
	p := &tokenPair{
		accountID:  acc.id,
		userID:     acc.apiUserID,
		access:     header + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString([]byte(randHex(64))),
		refresh:    "def50200" + randHex(128),
		accessExp:  exp,
		refreshExp: now.Add(s.opts.RefreshTokenTTL),
		issuedAt:   now,
		seq:        s.newID(),
	}
	s.pairsByAT[p.access] = p
	s.pairsByRT[p.refresh] = p
	return p
}

// authenticate resolves the Bearer token. It returns the account whenever
// the token is known (even if dead) so the request can be attributed, and
// ok only when the token is currently valid.
func (s *Server) authenticate(r *http.Request) (*account, bool) {
	h := r.Header.Get("Authorization")
	tok, found := strings.CutPrefix(h, "Bearer ")
	if !found {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pairsByAT[strings.TrimSpace(tok)]
	if p == nil {
		return nil, false
	}
	acc := s.accounts[p.accountID]
	return acc, !p.accessDead && s.now().Before(p.accessExp)
}

func oauthProblem(w http.ResponseWriter, status int, hint string) {
	body := map[string]any{
		"hint":   hint,
		"title":  "Некорректный запрос",
		"type":   oauthProblemType,
		"status": status,
		"detail": "В запросе отсутствует ряд параметров или параметры невалидны",
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// tokenParams accepts the JSON body from amoCRM's docs as well as the
// classic form-encoded OAuth2 body; real amoCRM takes both.
func tokenParams(r *http.Request) (map[string]string, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	out := map[string]string{}
	if ct == "application/json" {
		var raw map[string]any
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			return nil, err
		}
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				out[k] = v
			case nil:
			default:
				out[k] = fmt.Sprint(v)
			}
		}
		return out, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	for k := range r.PostForm {
		out[k] = r.PostForm.Get(k)
	}
	return out, nil
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	p, err := tokenParams(r)
	if err != nil {
		oauthProblem(w, http.StatusBadRequest, "The request body is malformed")
		return
	}
	meta := metaOf(r)
	s.mu.Lock()
	defer s.mu.Unlock()

	if p["client_id"] == "" {
		oauthProblem(w, http.StatusBadRequest, "Check the `client_id` parameter")
		return
	}
	if p["client_id"] != s.opts.ClientID || p["client_secret"] != s.opts.ClientSecret {
		oauthProblem(w, http.StatusUnauthorized, "Client authentication failed")
		return
	}
	now := s.now()
	switch p["grant_type"] {
	case "authorization_code":
		code := p["code"]
		if code == "" {
			oauthProblem(w, http.StatusBadRequest, "Check the `code` parameter")
			return
		}
		c := s.codes[code]
		if c == nil {
			oauthProblem(w, http.StatusBadRequest, "Cannot decrypt the authorization code")
			return
		}
		meta.accountID = c.accountID
		if c.used {
			oauthProblem(w, http.StatusBadRequest, "Authorization code has been revoked")
			return
		}
		if !now.Before(c.expires) {
			oauthProblem(w, http.StatusBadRequest, "Authorization code has expired")
			return
		}
		if p["redirect_uri"] != s.opts.RedirectURI {
			oauthProblem(w, http.StatusBadRequest, "Invalid redirect URI")
			return
		}
		c.used = true
		s.writeTokens(w, s.issuePairLocked(s.accounts[c.accountID]))
	case "refresh_token":
		rt := p["refresh_token"]
		if rt == "" {
			oauthProblem(w, http.StatusBadRequest, "Check the `refresh_token` parameter")
			return
		}
		old := s.pairsByRT[rt]
		if old == nil {
			oauthProblem(w, http.StatusUnauthorized, "Cannot decrypt the refresh token")
			return
		}
		meta.accountID = old.accountID
		acc := s.accounts[old.accountID]
		acc.refreshAttempts++
		if old.refreshUsed {
			oauthProblem(w, http.StatusUnauthorized, "Token has been revoked")
			return
		}
		if !now.Before(old.refreshExp) {
			oauthProblem(w, http.StatusUnauthorized, "Token has expired")
			return
		}
		if p["redirect_uri"] != s.opts.RedirectURI {
			oauthProblem(w, http.StatusBadRequest, "Invalid redirect URI")
			return
		}
		old.refreshUsed = true
		old.accessDead = true
		acc.refreshOK++
		s.writeTokens(w, s.issuePairLocked(acc))
	case "":
		oauthProblem(w, http.StatusBadRequest, "Check the `grant_type` parameter")
	default:
		oauthProblem(w, http.StatusBadRequest, "The authorization grant type is not supported by the authorization server.")
	}
}

func (s *Server) writeTokens(w http.ResponseWriter, p *tokenPair) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token_type":    "Bearer",
		"expires_in":    int64(s.opts.AccessTokenTTL / time.Second),
		"access_token":  p.access,
		"refresh_token": p.refresh,
	})
}
