package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadyzKeepsTheDatabaseErrorInTheLog(t *testing.T) {
	const dbErr = `failed to connect to host=10.1.2.3 user=dispatch database=prod: password authentication failed`
	var logs bytes.Buffer
	app := New(Deps{
		Ready: func(context.Context) error { return errors.New(dbErr) },
		Log:   slog.New(slog.NewTextHandler(&logs, nil)),
	})
	resp, err := app.Test(httptest.NewRequest("GET", "/readyz", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	for _, leak := range []string{"10.1.2.3", "dispatch", "password", "prod"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("body reveals %q: %s", leak, body)
		}
	}
	if !strings.Contains(string(body), "not ready") {
		t.Errorf("body does not say it is not ready: %s", body)
	}
	if !strings.Contains(logs.String(), "password authentication failed") {
		t.Errorf("the cause is not logged: %s", logs.String())
	}
}
