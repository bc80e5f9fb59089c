package amocrm

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrBadWidgetToken: the widget's disposable token failed verification.
var ErrBadWidgetToken = errors.New("amocrm: invalid widget token")

// WidgetClaims are the claims of amoCRM's disposable token, which the widget
// sends as X-Auth-Token through self.$authorizedAjax.
type WidgetClaims struct {
	AccountID  int64  `json:"account_id"`
	UserID     int64  `json:"user_id"`
	Subdomain  string `json:"subdomain"`
	ClientUUID string `json:"client_uuid"`
	jwt.RegisteredClaims
}

// WidgetTokenVerifier checks disposable tokens: HS256 signed with the
// integration's secret key, valid now (small leeway), for our audience, from
// our integration, issued by an amoCRM/Kommo account host.
type WidgetTokenVerifier struct {
	Secret   []byte
	ClientID string
	// Audience is the scheme and host of the integration's redirect URI.
	Audience string
	Leeway   time.Duration
	Now      func() time.Time
}

// AudienceOf returns scheme://host of a redirect URI, as amoCRM puts it in `aud`.
func AudienceOf(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// Verify parses and checks a token. The returned error never contains the token.
func (v WidgetTokenVerifier) Verify(token string) (WidgetClaims, error) {
	if len(v.Secret) == 0 {
		return WidgetClaims{}, fmt.Errorf("%w: no integration secret configured", ErrBadWidgetToken)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	var c WidgetClaims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) { return v.Secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithLeeway(v.Leeway),
		jwt.WithTimeFunc(now),
		jwt.WithAudience(v.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	if err != nil {
		return WidgetClaims{}, fmt.Errorf("%w: %s", ErrBadWidgetToken, reason(err))
	}
	if subtle.ConstantTimeCompare([]byte(c.ClientUUID), []byte(v.ClientID)) != 1 {
		return WidgetClaims{}, fmt.Errorf("%w: issued for another integration", ErrBadWidgetToken)
	}
	if c.AccountID <= 0 {
		return WidgetClaims{}, fmt.Errorf("%w: no account_id", ErrBadWidgetToken)
	}
	host, err := NormalizeDomain(c.Issuer)
	if err != nil || !strings.HasPrefix(host, strings.ToLower(c.Subdomain)+".") {
		return WidgetClaims{}, fmt.Errorf("%w: issuer is not the account's amoCRM host", ErrBadWidgetToken)
	}
	return c, nil
}

// reason names the failed check without echoing token contents.
func reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "bad signature or algorithm"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "required claim missing"
	default:
		return "invalid"
	}
}
