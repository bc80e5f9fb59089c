package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// widgetToken mints amoCRM's disposable token for the widget, as amoCRM does.
func widgetToken(t testing.TB, b *backend, accountID int64, sub string, edit func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": "https://" + sub + ".amocrm.ru", "aud": b.publicURL, "jti": fmt.Sprint(now.UnixNano()),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(30 * time.Minute).Unix(),
		"account_id": accountID, "user_id": accountID + 1, "subdomain": sub, "client_uuid": clientID}
	if edit != nil {
		edit(c)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(clientSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func widgetCall(t testing.TB, b *backend, method, path, token, body string, headers ...string) (int, map[string]any, http.Header) {
	t.Helper()
	status, raw, h := exchange(t, method, b.URL+path, []byte(body),
		append([]string{"X-Auth-Token", token, "Content-Type", jsonIf(body)}, headers...)...)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return status, out, h
}

// jsonIf is the Content-Type of a widget request body ("" without one).
func jsonIf(body string) string {
	if body == "" {
		return ""
	}
	return "application/json"
}

func TestWidgetAPI(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		ctx := context.Background()
		ta := newTenant(t, e, b, 45000000, "delta", "ru", 5000)
		tb := newTenant(t, e, b, 46000000, "omega", "en", 6000)
		tokA := widgetToken(t, b, ta.acc.ID, "delta", nil)
		tokB := widgetToken(t, b, tb.acc.ID, "omega", nil)

		// State: chats, real pipelines, fields, users, settings, deep link.
		status, st, _ := widgetCall(t, b, "GET", "/api/widget/state", tokA, "")
		if status != 200 {
			t.Fatalf("state: %d %v", status, st)
		}
		if chats := st["chats"].([]any); len(chats) != 1 || chats[0].(map[string]any)["title"] != ta.group.Title {
			t.Fatalf("chats of A: %v", st["chats"])
		}
		if bot := st["bot"].(map[string]any); !strings.Contains(bot["startgroup_url"].(string), "?startgroup=") {
			t.Fatalf("bot: %v", bot)
		}
		if p := st["pipelines"].([]any); len(p) != 1 {
			t.Fatalf("pipelines: %v", p)
		}

		// Settings: validated against the account's real data.
		bad := []string{
			fmt.Sprintf(`{"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d]}]}`, tb.pipeline, tb.statusByIndex(1)),
			fmt.Sprintf(`{"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d]}]}`, ta.pipeline, tb.statusByIndex(1)),
			fmt.Sprintf(`{"rules":[{"pipeline_id":%d,"trigger_stage_ids":[142]}]}`, ta.pipeline),
			fmt.Sprintf(`{"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d],"found_stage_id":%d}]}`, ta.pipeline, ta.statusByIndex(1), ta.statusByIndex(1)),
			fmt.Sprintf(`{"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d],"default_chat_id":%d}]}`, ta.pipeline, ta.statusByIndex(1), tb.group.ID),
			`{"order_field_ids":[123456789]}`,
			`{"executor_users":{"777":999999999}}`,
			`{"language":"de"}`,
			`not json`,
		}
		before, _ := b.Store().Settings(ctx, ta.acc.ID)
		for _, body := range bad {
			if s, out, _ := widgetCall(t, b, "PUT", "/api/widget/settings", tokA, body); s != 400 || out["error"] == "" {
				t.Errorf("bad settings %s: %d %v", body, s, out)
			}
		}
		if after, _ := b.Store().Settings(ctx, ta.acc.ID); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatal("rejected settings changed the stored ones")
		}
		good := fmt.Sprintf(`{"language":"en","show_budget":false,"rules":[{"pipeline_id":%d,"trigger_stage_ids":[%d,%d],"found_stage_id":%d,"default_chat_id":%d}],"executor_users":{"777":%d}}`,
			ta.pipeline, ta.statusByIndex(1), ta.statusByIndex(3), ta.statusByIndex(2), ta.group.ID, ta.amoUser)
		if s, out, _ := widgetCall(t, b, "PUT", "/api/widget/settings", tokA, good); s != 200 {
			t.Fatalf("good settings: %d %v", s, out)
		}
		saved, _ := b.Store().Settings(ctx, ta.acc.ID)
		if saved.Language != "en" || saved.ShowBudget || len(saved.Rules) != 1 || len(saved.Rules[0].TriggerStageIDs) != 2 || saved.ExecutorUsers[777] != ta.amoUser {
			t.Fatalf("saved settings: %+v", saved)
		}

		// Deal panel: pick the chat, post, see the state; B's token sees nothing of A's deal.
		lead := ta.newLead(t, e, "Из карточки")
		path := fmt.Sprintf("/api/widget/deals/%d", lead.ID)
		if s, out, _ := widgetCall(t, b, "PUT", path+"/chat", tokA, fmt.Sprintf(`{"chat_id":%d}`, tb.group.ID)); s != 400 {
			t.Fatalf("B's chat accepted for A's deal: %d %v", s, out)
		}
		if s, _, _ := widgetCall(t, b, "PUT", path+"/chat", tokA, fmt.Sprintf(`{"chat_id":%d}`, ta.group.ID)); s != 200 {
			t.Fatalf("set chat: %d", s)
		}
		if c, _ := b.Store().DealTarget(ctx, ta.acc.ID, lead.ID); c != ta.group.ID {
			t.Fatalf("deal target = %d", c)
		}
		if s, out, _ := widgetCall(t, b, "POST", path+"/post", tokA, ""); s != 200 {
			t.Fatalf("post now: %d %v", s, out)
		}
		eventually(t, "posted from the card", func() bool {
			_, out, _ := widgetCall(t, b, "GET", path, tokA, "")
			o, _ := out["order"].(map[string]any)
			return o != nil && o["status"] == "open"
		})
		if s, _, _ := widgetCall(t, b, "POST", path+"/post", tokA, ""); s != 409 {
			t.Fatalf("second post: %d", s)
		}
		_, out, _ := widgetCall(t, b, "GET", path, tokB, "")
		if out["order"] != nil || out["target_chat_id"].(float64) != 0 {
			t.Fatalf("B sees A's deal: %v", out)
		}
		if s, _, _ := widgetCall(t, b, "POST", path+"/withdraw", tokB, ""); s != 200 {
			t.Fatalf("B's withdraw of an unknown deal: %d", s)
		}
		if o, err := b.Store().ActiveOrder(ctx, ta.acc.ID, lead.ID); err != nil || o.Status != "open" {
			t.Fatalf("B's token withdrew A's order: %+v %v", o, err)
		}
		if s, _, _ := widgetCall(t, b, "POST", path+"/withdraw", tokA, ""); s != 200 {
			t.Fatal("withdraw")
		}
		eventually(t, "withdrawn", func() bool {
			_, out, _ := widgetCall(t, b, "GET", path, tokA, "")
			o, _ := out["order"].(map[string]any)
			return o != nil && o["status"] == "withdrawn"
		})

		// Hostile tokens: 401 and nothing changes.
		settingsBefore, _ := b.Store().Settings(ctx, ta.acc.ID)
		noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"account_id": ta.acc.ID, "client_uuid": clientID,
			"iss": "https://delta.amocrm.ru", "subdomain": "delta", "aud": b.publicURL, "exp": time.Now().Add(time.Hour).Unix()}).
			SignedString(jwt.UnsafeAllowNoneSignatureType)
		forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"account_id": ta.acc.ID, "client_uuid": clientID,
			"iss": "https://delta.amocrm.ru", "subdomain": "delta", "aud": b.publicURL, "exp": time.Now().Add(time.Hour).Unix()}).
			SignedString([]byte("guessed-secret"))
		hostile := map[string]string{
			"missing":  "",
			"garbage":  "abc.def.ghi",
			"alg none": noneTok,
			"forged":   forged,
			"expired":  widgetToken(t, b, ta.acc.ID, "delta", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }),
			"audience": widgetToken(t, b, ta.acc.ID, "delta", func(c jwt.MapClaims) { c["aud"] = "https://other.example" }),
			"client":   widgetToken(t, b, ta.acc.ID, "delta", func(c jwt.MapClaims) { c["client_uuid"] = "another-integration" }),
			"issuer":   widgetToken(t, b, ta.acc.ID, "omega", nil), // B's host claiming A's account
			"unknown":  widgetToken(t, b, 999, "nobody", nil),
		}
		for name, tok := range hostile {
			s, _, _ := widgetCall(t, b, "PUT", "/api/widget/settings", tok, `{"language":"ru"}`)
			want := 401
			if name == "unknown" {
				want = 404
			}
			if s != want {
				t.Errorf("%s token: %d, want %d", name, s, want)
			}
		}
		if after, _ := b.Store().Settings(ctx, ta.acc.ID); fmt.Sprint(after) != fmt.Sprint(settingsBefore) {
			t.Fatal("a hostile token changed settings")
		}

		// CORS: only the account's own amoCRM origin, preflight included.
		s, _, h := widgetCall(t, b, "OPTIONS", "/api/widget/state", "", "", "Origin", "https://delta.amocrm.ru",
			"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "X-Auth-Token")
		if s != 204 || h.Get("Access-Control-Allow-Origin") != "https://delta.amocrm.ru" || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-Auth-Token") {
			t.Fatalf("preflight from the account's origin: %d %v", s, h)
		}
		for _, origin := range []string{"https://evil.example", "https://unknown.amocrm.ru", "http://delta.amocrm.ru"} {
			s, _, h := widgetCall(t, b, "OPTIONS", "/api/widget/state", "", "", "Origin", origin, "Access-Control-Request-Method", "GET")
			if s != 403 || h.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("preflight from %s: %d %q", origin, s, h.Get("Access-Control-Allow-Origin"))
			}
		}
		if s, _, _ := widgetCall(t, b, "GET", "/api/widget/state", tokA, "", "Origin", "https://omega.amocrm.ru"); s != 401 {
			t.Fatalf("A's token from B's page: %d", s)
		}
		if s, _, h := widgetCall(t, b, "GET", "/api/widget/state", tokA, "", "Origin", "https://delta.amocrm.ru"); s != 200 || h.Get("Access-Control-Allow-Origin") != "https://delta.amocrm.ru" {
			t.Fatalf("A's token from A's page: %d", s)
		}

		// amoCRM revoked A's tokens: A's page may still read the answer,
		// 410, which the widget turns into "install again".
		if err := b.Store().SetAccountStatus(ctx, ta.acc.ID, dispatch.AccountRevoked); err != nil {
			t.Fatal(err)
		}
		s, out, h = widgetCall(t, b, "GET", "/api/widget/state", tokA, "", "Origin", "https://delta.amocrm.ru")
		if s != 410 || h.Get("Access-Control-Allow-Origin") != "https://delta.amocrm.ru" || out["error"] == nil {
			t.Fatalf("revoked account from its own page: %d %v %v", s, out, h)
		}
	})
}
