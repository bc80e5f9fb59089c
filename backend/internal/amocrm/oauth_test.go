package amocrm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestExchangeCode(t *testing.T) {
	const code = "def50200e176d7530cb132bab58f1acc6138265305ffc5f99f6f51f"
	var got map[string]string
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/oauth2/access_token" {
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if r.Header.Get("Authorization") != "" {
			t.Errorf("token endpoint must not get an Authorization header")
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("body: %v", err)
		}
		writeJSON(w, 200, `{"token_type":"Bearer","expires_in":86400,"access_token":"acc-1","refresh_token":"ref-1"}`)
	})
	tok, err := env.c.ExchangeCode(context.Background(), "Shop.amocrm.ru", code)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"client_id":     "client-id-1",
		"client_secret": testSecret,
		"grant_type":    "authorization_code",
		"code":          code,
		"redirect_uri":  "https://dispatch.example/oauth/callback",
	}
	if len(got) != len(want) {
		t.Errorf("body fields = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("body[%s] = %q, want %q", k, got[k], v)
		}
	}
	if tok.AccessToken != "acc-1" || tok.RefreshToken != "ref-1" || tok.TokenType != "Bearer" {
		t.Errorf("token = %+v", tok)
	}
	if wantExp := env.clock.Now().Add(24 * time.Hour); !tok.ExpiresAt.Equal(wantExp) {
		t.Errorf("ExpiresAt = %v, want %v", tok.ExpiresAt, wantExp)
	}
	if s := tok.String(); strings.Contains(s, "acc-1") || strings.Contains(s, "ref-1") {
		t.Errorf("Token.String leaks: %s", s)
	}
}

func TestExchangeCodeRejectsForeignDomain(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("no request expected, got %s", r.URL)
	})
	for _, d := range []string{"evil.com", "x.amocrm.ru.evil.com", "x.amocrm.ru:1234"} {
		if _, err := env.c.ExchangeCode(context.Background(), d, "code-123456"); !errors.Is(err, ErrInvalidDomain) {
			t.Errorf("%s: err = %v, want ErrInvalidDomain", d, err)
		}
	}
}

type recordTransport struct {
	urls []string
}

func (rt *recordTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.urls = append(rt.urls, r.URL.String())
	return nil, errors.New("stop")
}

// Without BaseURL the account's own host must be used.
func TestOriginFromDomain(t *testing.T) {
	rt := &recordTransport{}
	c := New(Options{HTTPClient: &http.Client{Transport: rt}, MaxAttempts: 1, RatePerSecond: -1})
	_, _ = c.RefreshToken(context.Background(), "Shop.Kommo.com", "ref-xyz")
	_, _ = c.Account("shop.amocrm.ru", 1, &fakeTS{token: "t"}).GetLead(context.Background(), 7, true)
	want := []string{
		"https://shop.kommo.com/oauth2/access_token",
		"https://shop.amocrm.ru/api/v4/leads/7?with=contacts",
	}
	if strings.Join(rt.urls, " ") != strings.Join(want, " ") {
		t.Fatalf("urls = %v, want %v", rt.urls, want)
	}
}

func TestRefreshToken(t *testing.T) {
	var got map[string]string
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
		writeJSON(w, 200, `{"token_type":"Bearer","expires_in":3600,"access_token":"acc-2","refresh_token":"ref-2"}`)
	})
	tok, err := env.c.RefreshToken(context.Background(), "shop.amocrm.ru", "ref-1-old")
	if err != nil {
		t.Fatal(err)
	}
	if got["grant_type"] != "refresh_token" || got["refresh_token"] != "ref-1-old" || got["client_secret"] != testSecret ||
		got["client_id"] != "client-id-1" || got["redirect_uri"] == "" || got["code"] != "" {
		t.Errorf("body = %v", got)
	}
	if tok.AccessToken != "acc-2" || tok.RefreshToken != "ref-2" || !tok.ExpiresAt.Equal(env.clock.Now().Add(time.Hour)) {
		t.Errorf("token = %+v", tok)
	}
}

func TestRefreshTokenRevoked(t *testing.T) {
	const refresh = "def502009999revokedrefreshtoken"
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 401, `{"hint":"Token has been revoked","title":"Некорректный запрос","type":"https://developers.amocrm.ru/v3/errors/OAuthProblemJson","status":401,"detail":"В запросе отсутствует ряд параметров или параметры невалидны"}`)
	})
	_, err := env.c.RefreshToken(context.Background(), "shop.amocrm.ru", refresh)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Hint != "Token has been revoked" || e.StatusCode != 401 ||
		e.Type != "https://developers.amocrm.ru/v3/errors/OAuthProblemJson" {
		t.Fatalf("error = %#v", e)
	}
	if env.hits.Load() != 1 {
		t.Errorf("hits = %d, a 401 must not be retried", env.hits.Load())
	}
	if strings.Contains(err.Error(), refresh) || strings.Contains(err.Error(), testSecret) {
		t.Errorf("secret in error: %v", err)
	}
}

func TestTokenResponseValidation(t *testing.T) {
	tests := []struct{ name, body string }{
		{"no access token", `{"token_type":"Bearer","expires_in":1,"refresh_token":"r"}`},
		{"no refresh token", `{"token_type":"Bearer","expires_in":1,"access_token":"a"}`},
		{"wrong type", `{"token_type":"MAC","expires_in":1,"access_token":"a","refresh_token":"r"}`},
		{"not json", `<html>oops</html>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, tt.body) })
			if _, err := env.c.ExchangeCode(context.Background(), "a.amocrm.ru", "code-abcdef"); err == nil {
				t.Fatal("want error")
			}
		})
	}
}
