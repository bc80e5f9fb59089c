package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/amodispatch/amodispatch/backend/internal/amocrm"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
)

// world is what setup created: the demo account and its people.
type world struct {
	acc       *fakeamocrm.Account
	pipeline  fakeamocrm.Pipeline
	searchID  int64 // "Поиск исполнителя"
	foundID   int64 // "Исполнитель найден"
	adminID   int64 // amoCRM admin who installed and configured the widget
	manager   faketelegram.User
	group     faketelegram.Chat
	executors []faketelegram.User
	leads     []int64
	// installPage is the backend's install confirmation page as the
	// install's browser got it.
	installPage []byte
}

// Fixed ids of the demo account, so that the page and its tests can name them.
const (
	accountID  = 31500000
	pipelineID = 7100000
	stageBase  = 7100010
	adminID    = 9100001
	fieldAddr  = 8100001
	fieldWhen  = 8100002
	fieldKind  = 8100003
)

var startgroupRe = regexp.MustCompile(`https://t\.me/[A-Za-z0-9_]+\?startgroup=([A-Za-z0-9_-]+)`)

type demoDeal struct {
	name, kind, addr, when string
	price                  int64
	contact                fakeamocrm.Contact
}

var demoDeals = []demoDeal{
	{name: "Доставка документов в налоговую", kind: "Курьер", price: 1500,
		addr: "Москва, ул. Тверская, 12, офис 304 → ИФНС № 7, ул. Земляной Вал, 9", when: "сегодня до 18:00",
		contact: fakeamocrm.Contact{Name: "Мария Соколова", FirstName: "Мария", LastName: "Соколова",
			Phones: []fakeamocrm.FieldValue{{Value: "+7 916 123-45-67", EnumCode: "MOB"}}}},
	{name: "Ремонт стиральной машины Bosch (не сливает воду)", kind: "Ремонт", price: 3500,
		addr: "Москва, Ленинский пр-т, 45, кв. 17, домофон 17К", when: "завтра, 10:00–14:00",
		contact: fakeamocrm.Contact{Name: "Сергей Павлов", FirstName: "Сергей", LastName: "Павлов",
			Phones: []fakeamocrm.FieldValue{{Value: "+7 903 765-43-21", EnumCode: "MOB"}}}},
	{name: "Перевод договора поставки RU→EN, 12 страниц", kind: "Перевод", price: 9600,
		addr: "удалённо, файлы по почте", when: "до пятницы",
		contact: fakeamocrm.Contact{Name: "Елена Кузнецова (ООО «Северный ветер»)", FirstName: "Елена", LastName: "Кузнецова",
			Phones: []fakeamocrm.FieldValue{{Value: "+7 495 221-33-44", EnumCode: "WORK"}},
			Emails: []fakeamocrm.FieldValue{{Value: "e.kuznetsova@severny-veter.test"}}}},
}

// setup does, through the backend's doors, what the people of a real
// account do: the admin installs the integration (amoCRM's redirect to the
// OAuth callback), the manager adds the bot to the group with the link code
// from the confirmation page, executors open the bot, and the admin saves
// the settings through the widget's API.
func (s *Sandbox) setup(ctx context.Context) (*world, error) {
	stages := []string{"Новая", "Поиск исполнителя", "Исполнитель найден", "В работе"}
	p := fakeamocrm.Pipeline{ID: pipelineID, Name: "Заказы", IsMain: true}
	for i, n := range stages {
		p.Statuses = append(p.Statuses, fakeamocrm.Status{ID: stageBase + int64(i+1), Name: n, Sort: (i + 1) * 10})
	}
	w := &world{searchID: stageBase + 2, foundID: stageBase + 3, adminID: adminID}
	w.acc = s.amo.AddAccount(fakeamocrm.AccountSpec{ID: accountID, Subdomain: "bystrye-ruki", Name: "Сервис «Быстрые руки»",
		Language: "ru", APIUserID: adminID, Pipelines: []fakeamocrm.Pipeline{p},
		Users: []fakeamocrm.User{
			{ID: adminID, Name: "Анна Менеджерова", Email: "anna@bystrye-ruki.test", IsAdmin: true},
			{ID: adminID + 1, Name: "Иван Петров (курьер)", Email: "ivan@bystrye-ruki.test"},
			{ID: adminID + 2, Name: "Алексей Смирнов (мастер)", Email: "alexey@bystrye-ruki.test"},
			{ID: adminID + 3, Name: "Ольга Васильева (переводчик)", Email: "olga@bystrye-ruki.test"},
		},
		LeadFields: []fakeamocrm.CustomField{
			{ID: fieldAddr, Name: "Адрес", Type: "text", Sort: 1},
			{ID: fieldWhen, Name: "Срок", Type: "text", Sort: 2},
			{ID: fieldKind, Name: "Вид работ", Type: "text", Sort: 3},
		}})
	w.pipeline = w.acc.MainPipeline()

	// The install, as amoCRM's redirect after the admin's consent.
	in := s.amo.IssueInstall(w.acc.ID, "")
	status, page, err := s.call(ctx, http.MethodGet, s.backendURL+"/oauth/amocrm/callback?"+in.Query.Encode(), "", nil)
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("install: the callback answered HTTP %d", status)
	}
	m := startgroupRe.FindSubmatch(page)
	if m == nil {
		return nil, fmt.Errorf("install: the confirmation page shows no link to add the bot to a group")
	}
	w.installPage = page
	code := string(m[1])

	w.manager = s.tg.AddUser("Анна", "Менеджерова", "anna_manager")
	w.group = s.tg.NewGroup("Исполнители · Быстрые руки")
	s.tg.AddBotToGroup(w.group.ID, w.manager.ID, code)
	// The bot's answer in the group is what the manager waits for; each
	// look at the widget's state costs three amoCRM calls of the account's
	// seven a second, so it is asked once, after.
	bot := s.tg.Bot().ID
	if err := s.waitFor(ctx, "the bot's answer in the group", func() (bool, error) {
		return slices.ContainsFunc(s.tg.Messages(w.group.ID), func(m faketelegram.Message) bool {
			return m.From != nil && m.From.ID == bot
		}), nil
	}); err != nil {
		return nil, err
	}
	token := s.token(w.acc, adminID)
	var st struct {
		Chats []struct {
			ID     int64 `json:"id"`
			Active bool  `json:"active"`
		} `json:"chats"`
	}
	if err := s.widgetAPI(ctx, http.MethodGet, "/api/widget/state", token, nil, &st); err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(st.Chats, func(c struct {
		ID     int64 `json:"id"`
		Active bool  `json:"active"`
	}) bool {
		return c.ID == w.group.ID && c.Active
	}) {
		return nil, fmt.Errorf("the bot answered in the group but did not link it: %s", lastText(s.tg.Messages(w.group.ID)))
	}

	// Two executors opened the bot already; the third has not, so her
	// first press shows the "open the bot" link.
	w.executors = []faketelegram.User{
		s.tg.AddUser("Иван", "Петров", "ivan_courier"),
		s.tg.AddUser("Алексей", "Смирнов", "master_alexey"),
		s.tg.AddUser("Ольга", "Васильева", "olga_translate"),
	}
	s.tg.UserStartsBot(w.executors[0].ID, "")
	s.tg.UserStartsBot(w.executors[1].ID, "")

	settings := map[string]any{
		"language":        "ru",
		"order_field_ids": []int64{fieldKind, fieldAddr, fieldWhen},
		"show_budget":     true,
		"rules": []map[string]any{{"pipeline_id": w.pipeline.ID, "trigger_stage_ids": []int64{w.searchID},
			"found_stage_id": w.foundID, "default_chat_id": w.group.ID,
			// "▶️ Приступил" moves the deal to "В работе".
			"status_stages": map[string]int64{"started": stageBase + 4}}},
		"executor_users": map[string]int64{
			strconv.FormatInt(w.executors[0].ID, 10): adminID + 1,
			strconv.FormatInt(w.executors[1].ID, 10): adminID + 2,
			strconv.FormatInt(w.executors[2].ID, 10): adminID + 3,
		},
	}
	if err := s.widgetAPI(ctx, http.MethodPut, "/api/widget/settings", token, settings, nil); err != nil {
		return nil, fmt.Errorf("save settings: %w", err)
	}

	for _, d := range demoDeals {
		c, err := s.amo.AddContact(w.acc.ID, d.contact)
		if err != nil {
			return nil, err
		}
		l, err := s.amo.AddLead(w.acc.ID, fakeamocrm.Lead{Name: d.name, Price: d.price, PipelineID: w.pipeline.ID,
			StatusID: w.pipeline.Statuses[0].ID, ResponsibleUserID: adminID,
			CustomFieldsValues: []fakeamocrm.CustomFieldValue{
				{FieldID: fieldAddr, Values: []fakeamocrm.FieldValue{{Value: d.addr}}},
				{FieldID: fieldWhen, Values: []fakeamocrm.FieldValue{{Value: d.when}}},
				{FieldID: fieldKind, Values: []fakeamocrm.FieldValue{{Value: d.kind}}},
			},
			Contacts: []fakeamocrm.ContactLink{{ID: c.ID, IsMain: true}}})
		if err != nil {
			return nil, err
		}
		w.leads = append(w.leads, l.ID)
	}
	return w, nil
}

// token is amoCRM's disposable widget token for the account's user: HS256
// with the integration's secret, the claims amoCRM documents.
func (s *Sandbox) token(acc *fakeamocrm.Account, userID int64) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss":         "https://" + acc.Domain,
		"aud":         amocrm.AudienceOf(s.publicURL + "/oauth/amocrm/callback"),
		"jti":         uuid.NewString(),
		"iat":         now.Unix(),
		"nbf":         now.Unix(),
		"exp":         now.Add(30 * time.Minute).Unix(),
		"account_id":  acc.ID,
		"user_id":     userID,
		"subdomain":   acc.Subdomain,
		"client_uuid": clientID,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(s.secret))
	if err != nil {
		panic(err) // HS256 with a non-empty key does not fail
	}
	return tok
}

// widgetAPI calls the backend's widget API as the widget does (a token per
// call) and decodes the answer into out.
func (s *Sandbox) widgetAPI(ctx context.Context, method, path, token string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	status, raw, err := s.call(ctx, method, s.backendURL+path, token, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, status, bytes.TrimSpace(raw))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func (s *Sandbox) call(ctx context.Context, method, url, token string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, raw, err
}

// waitFor polls cond until it holds, fails, or ctx ends: the work it waits
// for runs in the backend's own goroutines.
func (s *Sandbox) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

func lastText(msgs []faketelegram.Message) string {
	if len(msgs) == 0 {
		return ""
	}
	return msgs[len(msgs)-1].Text
}
