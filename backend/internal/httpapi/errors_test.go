package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

// fakeInstaller is the service as func fields; only the webhook door is used here.
type fakeInstaller struct {
	Installer // nil: any other method panics, which fails the test
	auth      func(accountID, secret string, body []byte) (int64, error)
}

func (f fakeInstaller) AuthenticateWebhook(_ context.Context, accountID, secret string, body []byte) (int64, error) {
	return f.auth(accountID, secret, body)
}

type intakeFunc func(ctx context.Context, accountID int64, body []byte) error

func (f intakeFunc) Intake(ctx context.Context, accountID int64, body []byte) error {
	return f(ctx, accountID, body)
}

func post(t *testing.T, app *fiber.App, path, body string) (int, string) {
	t.Helper()
	return call(t, app, "POST", path, "application/x-www-form-urlencoded", body)
}

func call(t *testing.T, app *fiber.App, method, path, contentType, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Auth-Token", "t")
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Every domain error has one status, decided in one place; internal
// details never reach the client.
func TestDomainErrorsToStatus(t *testing.T) {
	tests := []struct {
		err    error
		status int
		body   string
	}{
		{dispatch.Invalid("stage %d is wrong", 5), 400, "stage 5 is wrong"},
		{fmt.Errorf("webhook: %w", dispatch.ErrUnauthorized), 401, "unauthorized"},
		{dispatch.ErrForbidden, 403, "only an account admin"},
		{fmt.Errorf("order x: %w", dispatch.ErrNotFound), 404, "not found"},
		{dispatch.ErrRateLimited, 429, "too many requests"},
		{dispatch.ErrAccountOff, 410, "disabled for this account"},
		{fmt.Errorf("deal 1 already has an order: %w", dispatch.ErrConflict), 409, "already has an order"},
		{dispatch.ErrChatTaken, 409, "linked to another account"},
		{dispatch.ErrNotConfigured, 503, "not configured"},
		{errors.New("pq: connection to 10.0.0.5 refused"), 500, "internal error"},
		{fiber.NewError(418, "teapot"), 418, "teapot"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			app := New(Deps{Installer: fakeInstaller{auth: func(string, string, []byte) (int64, error) { return 0, tc.err }},
				Intake: intakeFunc(func(context.Context, int64, []byte) error { return nil })})
			status, body := post(t, app, "/amocrm/webhook/1/s", "a=b")
			if status != tc.status || !strings.Contains(body, tc.body) {
				t.Errorf("%v: %d %s, want %d with %q", tc.err, status, body, tc.status, tc.body)
			}
			if strings.Contains(body, "10.0.0.5") {
				t.Errorf("an internal error reached the client: %s", body)
			}
		})
	}
}

// A webhook is stored for the account its secret proved, and only then.
func TestWebhookStoredForTheAuthenticatedAccount(t *testing.T) {
	var stored []int64
	app := New(Deps{
		Installer: fakeInstaller{auth: func(id, secret string, _ []byte) (int64, error) {
			if secret != "right" {
				return 0, dispatch.ErrUnauthorized
			}
			return 77, nil
		}},
		Intake: intakeFunc(func(_ context.Context, id int64, body []byte) error {
			if string(body) != "leads[status][0][id]=1" {
				t.Errorf("stored body %q", body)
			}
			stored = append(stored, id)
			return nil
		}),
	})
	if status, _ := post(t, app, "/amocrm/webhook/77/wrong", "leads[status][0][id]=1"); status != 401 {
		t.Errorf("wrong secret: %d, want 401", status)
	}
	if status, _ := post(t, app, "/amocrm/webhook/77/right", "leads[status][0][id]=1"); status != 200 {
		t.Errorf("right secret: %d, want 200", status)
	}
	if len(stored) != 1 || stored[0] != 77 {
		t.Errorf("stored for %v, want once for 77", stored)
	}
}

// fakeWidget is the widget service with what the settings route needs.
type fakeWidget struct {
	WidgetAPI // nil: any other method panics
	saved     *dispatch.Settings
}

func (f *fakeWidget) Authenticate(context.Context, string) (dispatch.Account, int64, error) {
	return dispatch.Account{ID: 1}, 9, nil
}
func (f *fakeWidget) RequireAdmin(context.Context, dispatch.Account, int64) error { return nil }
func (f *fakeWidget) SaveSettings(_ context.Context, _ dispatch.Account, s dispatch.Settings) (dispatch.Settings, error) {
	f.saved = &s
	return s, nil
}

// The settings body's JSON shape converts to the domain's settings and back.
func TestSettingsConversion(t *testing.T) {
	w := &fakeWidget{}
	app := New(Deps{Widget: w})
	put := func(body string) (int, string) {
		return call(t, app, "PUT", "/api/widget/settings", "application/json", body)
	}
	if status, body := put(`{"executor_users": {"ivan": 5}}`); status != 400 || !strings.Contains(body, `\"ivan\" is not a Telegram user id`) || w.saved != nil {
		t.Errorf("a non-numeric Telegram id: %d %s (saved %v), want 400 before saving", status, body, w.saved)
	}
	status, body := put(`{"language":"en","rules":[{"pipeline_id":10,"trigger_stage_ids":[101],"found_stage_id":102,"default_chat_id":-5}],"executor_users":{"42":900}}`)
	if status != 200 || w.saved == nil {
		t.Fatalf("%d %s", status, body)
	}
	want := dispatch.Settings{Language: "en", ExecutorUsers: map[int64]int64{42: 900},
		Rules: []dispatch.Rule{{PipelineID: 10, TriggerStageIDs: []int64{101}, FoundStageID: 102, DefaultChatID: -5,
			Ladder: dispatch.DefaultLadder()}}} // a client that does not send the ladder gets the default
	if fmt.Sprint(*w.saved) != fmt.Sprint(want) {
		t.Errorf("saved %+v, want %+v", *w.saved, want)
	}
	// The escalation ladder: minutes (hours for expiry), 0 switches a step off.
	if status, body := put(`{"rules":[{"pipeline_id":10,"trigger_stage_ids":[101],"default_chat_id":-5,` +
		`"ladder":{"bump_min":0,"fallback_min":30,"fallback_chat_id":-7,"task_min":45,"expire_hours":6}}]}`); status != 200 ||
		w.saved.Rules[0].Ladder != (dispatch.Ladder{FallbackAfter: 30 * time.Minute, FallbackChatID: -7, TaskAfter: 45 * time.Minute, ExpireAfter: 6 * time.Hour}) ||
		!strings.Contains(body, `"ladder":{"bump_min":0,"fallback_min":30,"fallback_chat_id":-7,"task_min":45,"expire_hours":6}`) {
		t.Errorf("ladder: %d %s, saved %+v", status, body, w.saved.Rules[0].Ladder)
	}
	var back SettingsView
	if err := json.Unmarshal([]byte(body), &back); err != nil || back.ExecutorUsers["42"] != 900 || len(back.Rules) != 1 || back.OrderFieldIDs != nil {
		t.Errorf("answer %s", body)
	}
	// The executor's side: status stages, the buttons shown, the contact policy.
	status, body = put(`{"contact_policy":"executor","rules":[{"pipeline_id":10,"trigger_stage_ids":[101],` +
		`"status_stages":{"on_way":103},"status_buttons":["done","released"]}]}`)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	r := w.saved.Rules[0]
	if w.saved.ContactPolicy != dispatch.ContactExecutorOnly || r.StatusStages[dispatch.OrderOnWay] != 103 ||
		fmt.Sprint(r.StatusButtons) != "[done released]" {
		t.Errorf("saved %+v", *w.saved)
	}
	back = SettingsView{}
	if err := json.Unmarshal([]byte(body), &back); err != nil || back.ContactPolicy != "executor" ||
		back.Rules[0].StatusStages["on_way"] != 103 || fmt.Sprint(back.Rules[0].StatusButtons) != "[done released]" {
		t.Errorf("answer %s", body)
	}
	// Buttons left out mean all of them (null), not none.
	if _, body = put(`{"rules":[{"pipeline_id":10,"trigger_stage_ids":[101]}]}`); w.saved.Rules[0].StatusButtons != nil ||
		!strings.Contains(body, `"status_buttons":null`) {
		t.Errorf("no buttons chosen: saved %v, answer %s", w.saved.Rules[0].StatusButtons, body)
	}
}

// The deal card sees the executor only of a taken order.
func TestDealView(t *testing.T) {
	o := dispatch.Order{ID: "o", Status: dispatch.OrderOpen, ChatID: -5, ExecutorID: 42, ExecutorName: "Ivan"}
	v := dealView(service.Deal{LeadID: 3, Order: &o, ChatTitle: "Group"})
	if v.Order == nil || v.Order.Executor != nil || v.Order.Chat != (ChatRef{ID: -5, Title: "Group"}) {
		t.Errorf("open order: %+v", v.Order)
	}
	o.Status = dispatch.OrderTaken
	if v := dealView(service.Deal{LeadID: 3, Order: &o}); v.Order.Executor == nil || v.Order.Executor.Name != "Ivan" {
		t.Errorf("taken order: %+v", v.Order)
	}
	if v := dealView(service.Deal{LeadID: 3}); v.Order != nil || v.Timeline == nil {
		t.Errorf("no order: %+v, timeline %v (want [] not null)", v.Order, v.Timeline)
	}
	// Every step of the executor's side still names the executor; the
	// timeline goes out as recorded.
	o.Status = dispatch.OrderOnWay
	v = dealView(service.Deal{LeadID: 3, Order: &o, Timeline: []dispatch.Event{{OrderID: "o", Kind: "on_way", Actor: "Ivan (@ivan)"}}})
	if v.Order.Executor == nil || len(v.Timeline) != 1 || v.Timeline[0].Kind != "on_way" || v.Timeline[0].Actor != "Ivan (@ivan)" {
		t.Errorf("on the way: %+v, timeline %+v", v.Order, v.Timeline)
	}
}
