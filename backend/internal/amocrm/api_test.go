package amocrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// From the amoCRM docs GET /api/v4/leads/{id} sample (trailing comma removed,
// a custom field added).
const leadSample = `{
    "id": 3912171, "name": "Example", "price": 12, "responsible_user_id": 504141, "group_id": 0,
    "status_id": 143, "pipeline_id": 3104455, "loss_reason_id": 4203748, "source_id": null,
    "created_by": 504141, "updated_by": 504141, "created_at": 1585299171, "updated_at": 1590683337,
    "closed_at": 1590683337, "closest_task_at": null, "is_deleted": false,
    "custom_fields_values": [{"field_id": 55, "field_name": "Адрес", "field_code": null, "field_type": "text",
        "values": [{"value": "ул. Ленина, 1"}]},
        {"field_id": 56, "field_name": "Тип", "field_type": "select", "values": [{"value": "Монтаж", "enum_id": 9, "enum_code": null}]}],
    "score": null, "account_id": 28805383, "is_price_modified_by_robot": false,
    "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/leads/3912171"}},
    "_embedded": {
        "tags": [{"id": 100667, "name": "тест", "color": null}],
        "companies": [{"id": 10971463, "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/companies/10971463"}}}],
        "contacts": [{"id": 10971465, "is_main": true, "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/contacts/10971465"}}}]
    }
}`

func TestGetLead(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v4/leads/3912171":
			if r.URL.Query().Get("with") != "contacts" {
				t.Errorf("with = %q", r.URL.Query().Get("with"))
			}
			writeJSON(w, 200, leadSample)
		case "/api/v4/leads/404404":
			w.WriteHeader(http.StatusNoContent) // amoCRM's answer for a missing lead
		default:
			writeJSON(w, 404, problem(404, "Not Found"))
		}
	})
	api := env.api(&fakeTS{token: "t"})
	l, err := api.GetLead(context.Background(), 3912171, true)
	if err != nil {
		t.Fatal(err)
	}
	want := Lead{
		ID: 3912171, Name: "Example", Price: 12, StatusID: 143, PipelineID: 3104455, ResponsibleUserID: 504141,
		CreatedAt: 1585299171, UpdatedAt: 1590683337, ClosedAt: 1590683337, AccountID: 28805383,
		CustomFieldsValues: []CustomFieldValue{
			{FieldID: 55, FieldName: "Адрес", FieldType: "text", Values: []CustomFieldItem{{Value: "ул. Ленина, 1"}}},
			{FieldID: 56, FieldName: "Тип", FieldType: "select", Values: []CustomFieldItem{{Value: "Монтаж", EnumID: 9}}},
		},
		Contacts: []LeadContact{{ID: 10971465, IsMain: true}},
	}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("lead =\n%+v\nwant\n%+v", l, want)
	}
	if l.MainContactID() != 10971465 {
		t.Errorf("MainContactID = %d", l.MainContactID())
	}

	for _, id := range []int64{404404, 1} {
		_, err = api.GetLead(context.Background(), id, false)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("lead %d: err = %v, want ErrNotFound", id, err)
		}
	}
}

func TestListLeadsPagination(t *testing.T) {
	var queries []url.Values
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v4/leads" {
			t.Errorf("path %s", r.URL.Path)
		}
		q := r.URL.Query()
		queries = append(queries, q)
		page, _ := strconv.Atoi(q.Get("page"))
		n := 250
		if page == 2 {
			n = 3
		}
		leads := make([]map[string]any, n)
		for i := range leads {
			leads[i] = map[string]any{"id": page*1000 + i, "status_id": 32392159, "pipeline_id": 3177727}
		}
		links := map[string]any{"self": map[string]string{"href": "x"}}
		if page == 1 {
			links["next"] = map[string]string{"href": "https://example.amocrm.ru/api/v4/leads?page=2"}
		}
		writeJSON(w, 200, map[string]any{"_page": page, "_links": links, "_embedded": map[string]any{"leads": leads}})
	})
	leads, err := env.api(&fakeTS{token: "t"}).ListLeads(context.Background(), LeadFilter{
		Statuses: []StatusFilter{{PipelineID: 3177727, StatusID: 32392159}, {PipelineID: 3177727, StatusID: 32392165}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(leads) != 253 || leads[0].ID != 1000 || leads[252].ID != 2002 || leads[5].StatusID != 32392159 {
		t.Fatalf("got %d leads", len(leads))
	}
	if len(queries) != 2 {
		t.Fatalf("requests = %d, want 2", len(queries))
	}
	for i, q := range queries {
		want := url.Values{
			"page":                             {strconv.Itoa(i + 1)},
			"limit":                            {"250"},
			"filter[statuses][0][pipeline_id]": {"3177727"},
			"filter[statuses][0][status_id]":   {"32392159"},
			"filter[statuses][1][pipeline_id]": {"3177727"},
			"filter[statuses][1][status_id]":   {"32392165"},
		}
		if !reflect.DeepEqual(q, want) {
			t.Errorf("query %d = %v\nwant %v", i, q, want)
		}
	}
}

func TestListLeadsEmptyAnd204(t *testing.T) {
	tests := []struct {
		name     string
		pages    int // pages with a next link before a 204
		wantLen  int
		wantHits int64
	}{
		{"204 at once", 0, 0, 1},
		{"204 after a full page with next", 1, 250, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				page, _ := strconv.Atoi(r.URL.Query().Get("page"))
				if page > tt.pages {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				leads := make([]map[string]any, 250)
				for i := range leads {
					leads[i] = map[string]any{"id": i + 1}
				}
				writeJSON(w, 200, map[string]any{"_links": map[string]any{"next": map[string]string{"href": "n"}},
					"_embedded": map[string]any{"leads": leads}})
			})
			leads, err := env.api(&fakeTS{token: "t"}).ListLeads(context.Background(), LeadFilter{IDs: []int64{1, 2}, WithContacts: true})
			if err != nil {
				t.Fatal(err)
			}
			if leads == nil || len(leads) != tt.wantLen || env.hits.Load() != tt.wantHits {
				t.Fatalf("len=%d nil=%v hits=%d", len(leads), leads == nil, env.hits.Load())
			}
		})
	}
}

func TestUpdateLeadSendsOnlySetFields(t *testing.T) {
	tests := []struct {
		name string
		u    LeadUpdate
		want string
	}{
		{"status only", LeadUpdate{ID: 7, StatusID: Ptr[int64](142)}, `{"status_id":142}`},
		{"status and pipeline", LeadUpdate{ID: 7, StatusID: Ptr[int64](1), PipelineID: Ptr[int64](2)}, `{"pipeline_id":2,"status_id":1}`},
		{"responsible zero is still sent", LeadUpdate{ID: 7, ResponsibleUserID: Ptr[int64](0)}, `{"responsible_user_id":0}`},
		{"custom field", LeadUpdate{ID: 7, CustomFieldsValues: []CustomFieldValue{
			{FieldID: 5, Values: []CustomFieldItem{{Value: "Иван"}}},
			{FieldID: 6, Values: []CustomFieldItem{{EnumID: 3}}},
			{FieldID: 8, Values: []CustomFieldItem{{Value: false}}},
			{FieldID: 9}, // clears the field
		}}, `{"custom_fields_values":[{"field_id":5,"values":[{"value":"Иван"}]},{"field_id":6,"values":[{"enum_id":3}]},{"field_id":8,"values":[{"value":false}]},{"field_id":9,"values":null}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPatch || r.URL.Path != "/api/v4/leads/7" {
					t.Errorf("%s %s", r.Method, r.URL.Path)
				}
				b, _ := io.ReadAll(r.Body)
				got = string(b)
				writeJSON(w, 200, `{"id":7,"updated_at":1589556420,"_links":{"self":{"href":"x"}}}`)
			})
			if err := env.api(&fakeTS{token: "t"}).UpdateLead(context.Background(), tt.u); err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, got, tt.want) {
				t.Errorf("body = %s, want %s", got, tt.want)
			}
		})
	}
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) { t.Error("unexpected request") })
	if err := env.api(&fakeTS{token: "t"}).UpdateLead(context.Background(), LeadUpdate{StatusID: Ptr[int64](1)}); err == nil {
		t.Error("want error for missing ID")
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("bad json %q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("bad json %q: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func TestGetContactPhonesEmails(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v4/contacts/3" {
			t.Errorf("path %s", r.URL.Path)
		}
		writeJSON(w, 200, `{"id":3,"name":"Иван Иванов","first_name":"Иван","last_name":"Иванов","responsible_user_id":504141,
			"created_at":1582117331,"updated_at":1590943929,"closest_task_at":null,
			"custom_fields_values":[
				{"field_id":3,"field_name":"Телефон","field_code":"PHONE","field_type":"multitext",
				 "values":[{"value":"+79123","enum_id":1,"enum":"WORK"},{"value":"+79001112233","enum_id":2,"enum_code":"MOB"}]},
				{"field_id":4,"field_name":"Email","field_code":"EMAIL","field_type":"multitext","values":[{"value":"ivan@example.com","enum_id":5,"enum_code":"WORK"}]},
				{"field_id":7,"field_name":"Возраст","field_type":"numeric","values":[{"value":42}]}],
			"account_id":28805383,"_embedded":{"tags":[],"leads":[{"id":1}]}}`)
	})
	c, err := env.api(&fakeTS{token: "t"}).GetContact(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Иван Иванов" || c.FirstName != "Иван" || c.ResponsibleUserID != 504141 {
		t.Errorf("contact = %+v", c)
	}
	if got := c.Phones(); !reflect.DeepEqual(got, []string{"+79123", "+79001112233"}) {
		t.Errorf("Phones = %v", got)
	}
	if got := c.Emails(); !reflect.DeepEqual(got, []string{"ivan@example.com"}) {
		t.Errorf("Emails = %v", got)
	}
	if c.CustomFieldsValues[0].Values[0].EnumCode != "WORK" {
		t.Errorf("legacy enum not mapped: %+v", c.CustomFieldsValues[0].Values[0])
	}
	if s := c.CustomFieldsValues[2].Values[0].String(); s != "42" {
		t.Errorf("numeric String = %q", s)
	}
}

func TestListPipelines(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v4/leads/pipelines" {
			t.Errorf("path %s", r.URL.Path)
		}
		writeJSON(w, 200, `{"_total_items":1,"_embedded":{"pipelines":[{"id":3177727,"name":"Воронка","sort":1,"is_main":true,
			"is_unsorted_on":true,"is_archive":false,"account_id":12345678,"_embedded":{"statuses":[
			{"id":32392156,"name":"Неразобранное","sort":10,"is_editable":false,"pipeline_id":3177727,"color":"#c1c1c1","type":1},
			{"id":142,"name":"Успешно реализовано","sort":10000,"is_editable":false,"pipeline_id":3177727,"color":"#CCFF66","type":0}]}}]}}`)
	})
	ps, err := env.api(&fakeTS{token: "t"}).ListPipelines(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Pipeline{{ID: 3177727, Name: "Воронка", Sort: 1, IsMain: true, Statuses: []Status{
		{ID: 32392156, Name: "Неразобранное", Sort: 10, Color: "#c1c1c1", Type: 1, PipelineID: 3177727},
		{ID: StatusWon, Name: "Успешно реализовано", Sort: 10000, Color: "#CCFF66", PipelineID: 3177727},
	}}}
	if !reflect.DeepEqual(ps, want) {
		t.Errorf("pipelines = %+v", ps)
	}
}

func TestPagedLists(t *testing.T) {
	// Page 1 full with next, page 2 partial without next.
	serve := func(key string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			page, _ := strconv.Atoi(r.URL.Query().Get("page"))
			if r.URL.Query().Get("limit") != "250" {
				t.Errorf("limit = %q", r.URL.Query().Get("limit"))
			}
			n := 250
			links := map[string]any{"next": map[string]string{"href": "n"}}
			if page == 2 {
				n, links = 1, map[string]any{}
			}
			items := make([]map[string]any, n)
			for i := range items {
				items[i] = map[string]any{"id": page*1000 + i, "name": fmt.Sprint("n", i), "type": "text",
					"rights": map[string]any{"is_admin": i == 0, "is_active": true}}
			}
			writeJSON(w, 200, map[string]any{"_links": links, "_embedded": map[string]any{key: items}})
		}
	}
	t.Run("users", func(t *testing.T) {
		env := newEnv(t, serve("users"))
		us, err := env.api(&fakeTS{token: "t"}).ListUsers(context.Background())
		if err != nil || len(us) != 251 || !us[0].Rights.IsAdmin || us[1].Rights.IsAdmin || !us[1].Rights.IsActive {
			t.Fatalf("users: %d %v", len(us), err)
		}
	})
	t.Run("custom fields", func(t *testing.T) {
		env := newEnv(t, serve("custom_fields"))
		fs, err := env.api(&fakeTS{token: "t"}).ListLeadCustomFields(context.Background())
		if err != nil || len(fs) != 251 || fs[250].ID != 2000 || fs[0].Type != "text" {
			t.Fatalf("fields: %d %v", len(fs), err)
		}
	})
}

func TestCreateLeadCustomFields(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		want := `[{"name":"Исполнитель","type":"text"},{"name":"Статус","type":"select","enums":[{"value":"Взят"},{"value":"Готово","sort":2}]}]`
		if r.Method != http.MethodPost || r.URL.Path != "/api/v4/leads/custom_fields" || !jsonEqual(t, string(b), want) {
			t.Errorf("%s %s %s", r.Method, r.URL.Path, b)
		}
		writeJSON(w, 200, `{"_embedded":{"custom_fields":[{"id":11,"name":"Исполнитель","type":"text"},
			{"id":12,"name":"Статус","type":"select","enums":[{"id":1,"value":"Взят","sort":1},{"id":2,"value":"Готово","sort":2}]}]}}`)
	})
	out, err := env.api(&fakeTS{token: "t"}).CreateLeadCustomFields(context.Background(), []CustomField{
		{ID: 99, Name: "Исполнитель", Type: "text"},
		{Name: "Статус", Type: "select", Enums: []CustomFieldEnum{{Value: "Взят"}, {Value: "Готово", Sort: 2}}},
	})
	if err != nil || len(out) != 2 || out[0].ID != 11 || out[1].Enums[1].ID != 2 {
		t.Fatalf("out = %+v, %v", out, err)
	}
}

func TestAddLeadNote(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		want := `[{"entity_id":26050861,"note_type":"common","params":{"text":"Взял: @ivan"}}]`
		if r.Method != http.MethodPost || r.URL.Path != "/api/v4/leads/notes" || !jsonEqual(t, string(b), want) {
			t.Errorf("%s %s %s", r.Method, r.URL.Path, b)
		}
		writeJSON(w, 200, `{"_links":{"self":{"href":"x"}},"_embedded":{"notes":[{"id":42709325,"entity_id":26050861,"request_id":"0"}]}}`)
	})
	n, err := env.api(&fakeTS{token: "t"}).AddLeadNote(context.Background(), 26050861, "Взял: @ivan")
	want := Note{ID: 42709325, EntityID: 26050861, NoteType: "common", Params: NoteParams{Text: "Взял: @ivan"}}
	if err != nil || n != want {
		t.Fatalf("note = %+v, %v", n, err)
	}
}

func TestWebhooks(t *testing.T) {
	var calls []string
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls = append(calls, r.Method+" "+r.URL.Path+" "+strings.TrimSpace(string(b)))
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, 200, `{"_total_items":1,"_embedded":{"webhooks":[{"id":1,"destination":"https://d.example/hook","created_at":1,
				"updated_at":1,"account_id":5,"created_by":2,"sort":1,"disabled":false,"settings":["status_lead","responsible_lead"]}]}}`)
		case http.MethodPost:
			writeJSON(w, 200, `{"id":2,"destination":"https://d.example/hook","settings":["status_lead"],"sort":1,"disabled":false}`)
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	api := env.api(&fakeTS{token: "t"})
	ctx := context.Background()
	hooks, err := api.ListWebhooks(ctx)
	if err != nil || len(hooks) != 1 || hooks[0].Destination != "https://d.example/hook" || len(hooks[0].Settings) != 2 {
		t.Fatalf("hooks = %+v, %v", hooks, err)
	}
	h, err := api.SubscribeWebhook(ctx, "https://d.example/hook", []string{"status_lead"})
	if err != nil || h.ID != 2 {
		t.Fatalf("hook = %+v, %v", h, err)
	}
	if err := api.UnsubscribeWebhook(ctx, "https://d.example/hook"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GET /api/v4/webhooks ",
		`POST /api/v4/webhooks {"destination":"https://d.example/hook","settings":["status_lead"]}`,
		`DELETE /api/v4/webhooks {"destination":"https://d.example/hook"}`,
	}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls =\n%q\nwant\n%q", calls, want)
	}
}

func TestAccountRejectsBadDomain(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) { t.Error("unexpected request") })
	_, err := env.c.Account("x.amocrm.ru.evil.com", 1, &fakeTS{token: "t"}).GetAccount(context.Background())
	if !errors.Is(err, ErrInvalidDomain) {
		t.Fatalf("err = %v", err)
	}
}

func TestGetAccount(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"id":28805383,"name":"Shop","subdomain":"shop","created_at":1,"current_user_id":504141,
			"country":"RU","currency":"RUB","currency_symbol":"₽","customers_mode":"disabled","language":"ru"}`)
	})
	acc, err := env.api(&fakeTS{token: "t"}).GetAccount(context.Background())
	want := Account{ID: 28805383, Name: "Shop", Subdomain: "shop", Currency: "RUB", CurrencySymbol: "₽",
		Country: "RU", Language: "ru", CurrentUserID: 504141}
	if err != nil || acc != want {
		t.Fatalf("account = %+v, %v", acc, err)
	}
}

func TestGetUser(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v4/users/123123":
			// From the amoCRM docs' users sample (rights abridged).
			writeJSON(w, 200, `{"id":123123,"name":"Пользователь для примера 2","email":"example2@mail.com","lang":"en",
				"rights":{"leads":{"view":"A","edit":"A","add":"A","delete":"A","export":"A"},"mail_access":false,
				"status_rights":[],"is_admin":true,"is_free":false,"is_active":true,"group_id":null,"role_id":null},
				"_links":{"self":{"href":"https://example.amocrm.ru/api/v4/users/123123"}}}`)
		case "/api/v4/users/5":
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, 404, problem(404, "Not Found"))
		}
	})
	api := env.api(&fakeTS{token: "t"})
	u, err := api.GetUser(context.Background(), 123123)
	if err != nil || u.ID != 123123 || !u.Rights.IsAdmin || !u.Rights.IsActive || u.Rights.IsFree {
		t.Fatalf("user = %+v, %v", u, err)
	}
	if _, err := api.GetUser(context.Background(), 5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing user: %v, want ErrNotFound", err)
	}
}

func TestLeadTasks(t *testing.T) {
	env := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.Method {
		case http.MethodPost:
			want := `[{"entity_id":26050861,"entity_type":"leads","task_type_id":1,"text":"Никто не взял заказ","complete_till":1588885140,"responsible_user_id":7}]`
			if r.URL.Path != "/api/v4/tasks" || !jsonEqual(t, string(b), want) {
				t.Errorf("%s %s %s", r.Method, r.URL.Path, b)
			}
			writeJSON(w, 200, `{"_links":{"self":{"href":"x"}},"_embedded":{"tasks":[{"id":4745251,"request_id":"0","_links":{"self":{"href":"x"}}}]}}`)
		case http.MethodGet:
			if q := r.URL.Query(); q.Get("filter[entity_type]") != "leads" || q.Get("filter[entity_id][]") != "26050861" {
				t.Errorf("list query %s", r.URL.RawQuery)
			}
			writeJSON(w, 200, `{"_page":1,"_links":{"self":{"href":"x"}},"_embedded":{"tasks":[{"id":4745251,"entity_id":26050861,
				"entity_type":"leads","task_type_id":1,"text":"Никто не взял заказ","complete_till":1588885140,"responsible_user_id":7,
				"is_completed":false,"duration":0,"result":[],"account_id":5}]}}`)
		}
	})
	api := env.api(&fakeTS{token: "t"})
	ctx := context.Background()
	task, err := api.AddLeadTask(ctx, Task{EntityID: 26050861, Text: "Никто не взял заказ", CompleteTill: 1588885140, ResponsibleUserID: 7})
	if err != nil || task.ID != 4745251 || task.EntityType != "leads" {
		t.Fatalf("task = %+v, %v", task, err)
	}
	if _, err := api.AddLeadTask(ctx, Task{EntityID: 26050861}); err == nil {
		t.Fatal("a task without text or deadline was sent")
	}
	tasks, err := api.ListLeadTasks(ctx, 26050861)
	if err != nil || len(tasks) != 1 || tasks[0].Text != "Никто не взял заказ" || tasks[0].CompleteTill != 1588885140 {
		t.Fatalf("tasks = %+v, %v", tasks, err)
	}
}
