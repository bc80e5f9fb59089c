package amocrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

const tokenPath = "/oauth2/access_token"

// Token is an OAuth2 token pair. amoCRM rotates refresh tokens: the one passed
// to RefreshToken is dead once the call succeeds, so RefreshToken must be persisted.
type Token struct {
	AccessToken  string
	RefreshToken string
	TokenType    string
	ExpiresAt    time.Time
}

// String keeps tokens out of logs and fmt output.
func (t Token) String() string {
	return fmt.Sprintf("amocrm.Token{type=%s, expires=%s, access=[REDACTED], refresh=[REDACTED]}",
		t.TokenType, t.ExpiresAt.Format(time.RFC3339))
}

// GoString keeps tokens out of %#v output.
func (t Token) GoString() string { return t.String() }

type tokenRequest struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	GrantType    string `json:"grant_type"`
	Code         string `json:"code,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	RedirectURI  string `json:"redirect_uri"`
}

type tokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// ExchangeCode trades an authorization code (from the install redirect) for a
// token pair. domain is validated with NormalizeDomain before anything is sent.
func (c *Client) ExchangeCode(ctx context.Context, domain, code string) (Token, error) {
	if code == "" {
		return Token{}, errors.New("amocrm: exchange code: empty code")
	}
	return c.token(ctx, domain, tokenRequest{GrantType: "authorization_code", Code: code}, code)
}

// RefreshToken obtains a new token pair. A revoked or already-used refresh
// token yields an error matching ErrUnauthorized.
//
// The request is not repeated after an ambiguous network failure: if amoCRM
// did process it, the old refresh token is already burnt and a retry could not
// succeed anyway, while the caller still has a chance to recover under its lock.
func (c *Client) RefreshToken(ctx context.Context, domain, refreshToken string) (Token, error) {
	if refreshToken == "" {
		return Token{}, errors.New("amocrm: refresh token: empty refresh token")
	}
	return c.token(ctx, domain, tokenRequest{GrantType: "refresh_token", RefreshToken: refreshToken}, refreshToken)
}

func (c *Client) token(ctx context.Context, domain string, tr tokenRequest, grantSecret string) (Token, error) {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return Token{}, err
	}
	tr.ClientID, tr.ClientSecret, tr.RedirectURI = c.clientID, c.clientSecret, c.redirectURI
	body, err := json.Marshal(tr)
	if err != nil {
		return Token{}, fmt.Errorf("amocrm: encoding token request: %w", err)
	}
	issued := c.now()
	// Under the account's limit like every other request: an install's
	// exchange and its first reads come together.
	resp, err := c.send(ctx, c.origin(d), c.limiter(limitKey(d)), request{
		method:  http.MethodPost,
		path:    tokenPath,
		body:    body,
		secrets: []string{c.clientSecret, grantSecret},
	})
	if err != nil {
		return Token{}, err
	}
	var out tokenResponse
	if err := decodeJSON(resp.body, &out, http.MethodPost, tokenPath); err != nil {
		return Token{}, err
	}
	if out.AccessToken == "" || out.RefreshToken == "" {
		return Token{}, fmt.Errorf("amocrm: POST %s: response lacks access_token or refresh_token", tokenPath)
	}
	if out.TokenType == "" {
		out.TokenType = "Bearer"
	}
	if !strings.EqualFold(out.TokenType, "Bearer") {
		return Token{}, fmt.Errorf("amocrm: POST %s: unsupported token_type %q", tokenPath, truncate(out.TokenType, 20))
	}
	return Token{
		AccessToken:  out.AccessToken,
		RefreshToken: out.RefreshToken,
		TokenType:    out.TokenType,
		// Measured from before the request so the local expiry is never later than the server's.
		ExpiresAt: issued.Add(time.Duration(out.ExpiresIn) * time.Second),
	}, nil
}
