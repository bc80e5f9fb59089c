package amocrm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestWidgetTokenVerification(t *testing.T) {
	now := time.Unix(1594204300, 0)
	v := WidgetTokenVerifier{Secret: []byte("integration-secret"), ClientID: "0b0832f6-d123-4123-9123-e73f236833c",
		Audience: "https://external.integration.io", Leeway: 30 * time.Second, Now: func() time.Time { return now }}
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "https://subdomain.amocrm.ru", "aud": "https://external.integration.io",
			"jti": "d628f123-5123-473e-a123-ed123ef31f8f", "iat": 1594204245, "nbf": 1594204245, "exp": 1594206045,
			"account_id": 12345678, "user_id": 87654321, "subdomain": "subdomain", "client_uuid": v.ClientID}
	}
	sign := func(c jwt.MapClaims, method jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(base(), jwt.SigningMethodHS256, v.Secret)
	c, err := v.Verify(good)
	if err != nil || c.AccountID != 12345678 || c.UserID != 87654321 {
		t.Fatalf("genuine token: %+v %v", c, err)
	}

	with := func(k string, val any) jwt.MapClaims { m := base(); m[k] = val; return m }
	without := func(k string) jwt.MapClaims { m := base(); delete(m, k); return m }
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, base()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	cases := map[string]string{
		"forged signature": sign(base(), jwt.SigningMethodHS256, []byte("other-secret")),
		"alg none":         noneTok,
		"HS512":            sign(base(), jwt.SigningMethodHS512, v.Secret),
		"expired":          sign(with("exp", 1594204200), jwt.SigningMethodHS256, v.Secret),
		"no exp":           sign(without("exp"), jwt.SigningMethodHS256, v.Secret),
		"not yet valid":    sign(with("nbf", 1594209999), jwt.SigningMethodHS256, v.Secret),
		"wrong audience":   sign(with("aud", "https://evil.example"), jwt.SigningMethodHS256, v.Secret),
		"other client":     sign(with("client_uuid", "someone-else"), jwt.SigningMethodHS256, v.Secret),
		"foreign issuer":   sign(with("iss", "https://evil.example"), jwt.SigningMethodHS256, v.Secret),
		"issuer mismatch":  sign(with("subdomain", "other"), jwt.SigningMethodHS256, v.Secret),
		"no account":       sign(without("account_id"), jwt.SigningMethodHS256, v.Secret),
		"garbage":          "not.a.token",
	}
	for name, tok := range cases {
		_, err := v.Verify(tok)
		if !errors.Is(err, ErrBadWidgetToken) {
			t.Errorf("%s: accepted (%v)", name, err)
			continue
		}
		if strings.Contains(err.Error(), tok) {
			t.Errorf("%s: error echoes the token", name)
		}
	}
	// Within the leeway a just-expired token still passes.
	now = time.Unix(1594206045+10, 0)
	if _, err := v.Verify(good); err != nil {
		t.Fatalf("leeway: %v", err)
	}
}
