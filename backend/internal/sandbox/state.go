package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
	"github.com/amodispatch/amodispatch/backend/internal/faketelegram"
	"github.com/amodispatch/amodispatch/backend/internal/service"
)

// The page's JSON: everything it shows, read from the fakes (what amoCRM and
// Telegram hold) and, for the selected deal, from the widget API.
type (
	stateView struct {
		Account   string         `json:"account"`
		Stages    []stageView    `json:"stages"`
		Deals     []dealCard     `json:"deals"`
		Group     chatView       `json:"group"`
		Executors []executorView `json:"executors"`
		Deal      *dealView      `json:"deal"`
	}
	stageView struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	dealCard struct {
		ID          int64  `json:"id"`
		Name        string `json:"name"`
		Price       int64  `json:"price"`
		StageID     int64  `json:"stage_id"`
		Contact     string `json:"contact"`
		Executor    string `json:"executor"`
		Responsible string `json:"responsible"`
	}
	chatView struct {
		ID       int64         `json:"id"`
		Title    string        `json:"title"`
		Messages []messageView `json:"messages"`
	}
	messageView struct {
		ID      int            `json:"id"`
		From    string         `json:"from"`
		Bot     bool           `json:"bot"`
		HTML    string         `json:"html"`
		Buttons [][]buttonView `json:"buttons"`
		Edited  bool           `json:"edited"`
		Time    string         `json:"time"`
		// Joined names the member a "joined the group" service message is about.
		Joined string `json:"joined,omitempty"`
	}
	buttonView struct {
		Text string `json:"text"`
		Data string `json:"data,omitempty"`
		URL  string `json:"url,omitempty"`
	}
	executorView struct {
		ID        int64    `json:"id"`
		Name      string   `json:"name"`
		Username  string   `json:"username"`
		OpenedBot bool     `json:"opened_bot"`
		Chat      chatView `json:"chat"`
	}
	dealView struct {
		ID          int64       `json:"id"`
		Name        string      `json:"name"`
		Price       int64       `json:"price"`
		Stage       string      `json:"stage"`
		Responsible string      `json:"responsible"`
		Fields      []fieldView `json:"fields"`
		Contact     contactView `json:"contact"`
		Notes       []noteView  `json:"notes"`
		// Order is the widget API's view of the deal's order; the page
		// reloads the widget's panel when it changes.
		Order json.RawMessage `json:"order"`
	}
	fieldView struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	contactView struct {
		Name   string   `json:"name"`
		Phones []string `json:"phones"`
	}
	noteView struct {
		Text string `json:"text"`
		Time string `json:"time"`
	}
)

func (s *Sandbox) state(ctx context.Context, lead int64) (stateView, error) {
	d := s.demo
	p := d.acc.MainPipeline()
	st := stateView{Account: "bystrye-ruki.amocrm.ru", Stages: []stageView{}, Deals: []dealCard{}, Executors: []executorView{}}
	for _, stage := range p.Statuses {
		if stage.ID == fakeamocrm.StatusWon || stage.ID == fakeamocrm.StatusLost {
			continue
		}
		st.Stages = append(st.Stages, stageView{ID: stage.ID, Name: stage.Name})
	}
	users := map[int64]string{}
	for _, u := range d.acc.Users() {
		users[u.ID] = u.Name
	}
	fields := d.acc.LeadFields()
	for _, l := range s.amo.Leads(d.acc.ID) {
		c := dealCard{ID: l.ID, Name: l.Name, Price: l.Price, StageID: l.StatusID, Responsible: users[l.ResponsibleUserID],
			Executor: fieldValue(l, fields, func(f fakeamocrm.CustomField) bool { return f.Code == service.ExecutorFieldCode })}
		if contact, ok := s.mainContact(l); ok {
			c.Contact = contact.Name
		}
		st.Deals = append(st.Deals, c)
	}
	st.Group = s.chat(d.group.ID, d.group.Title)
	for _, x := range d.executors {
		ch := s.chat(x.ID, x.FirstName+" "+x.LastName)
		opened := slices.ContainsFunc(s.tg.Messages(x.ID), func(m faketelegram.Message) bool {
			return m.From != nil && m.From.ID == x.ID && strings.HasPrefix(m.Text, "/start")
		})
		st.Executors = append(st.Executors, executorView{ID: x.ID, Name: x.FirstName + " " + x.LastName, Username: x.Username,
			OpenedBot: opened, Chat: ch})
	}
	if lead == 0 {
		return st, nil
	}
	l, ok := s.amo.Lead(d.acc.ID, lead)
	if !ok || l.Deleted {
		return st, nil
	}
	dv := &dealView{ID: l.ID, Name: l.Name, Price: l.Price, Responsible: users[l.ResponsibleUserID], Fields: []fieldView{}, Notes: []noteView{}}
	for _, stage := range p.Statuses {
		if stage.ID == l.StatusID {
			dv.Stage = stage.Name
		}
	}
	for _, f := range fields {
		if v := fieldValue(l, fields, func(g fakeamocrm.CustomField) bool { return g.ID == f.ID }); v != "" {
			dv.Fields = append(dv.Fields, fieldView{Name: f.Name, Value: v})
		}
	}
	if c, ok := s.mainContact(l); ok {
		dv.Contact.Name = c.Name
		for _, ph := range c.Phones {
			dv.Contact.Phones = append(dv.Contact.Phones, fmt.Sprint(ph.Value))
		}
	}
	for _, n := range s.amo.Notes(d.acc.ID, l.ID) {
		dv.Notes = append(dv.Notes, noteView{Text: n.Text(), Time: n.CreatedAt.Local().Format("15:04:05")})
	}
	var order struct {
		Order json.RawMessage `json:"order"`
	}
	if err := s.widgetAPI(ctx, http.MethodGet, fmt.Sprintf("/api/widget/deals/%d", l.ID), s.token(d.acc, d.adminID), nil, &order); err != nil {
		return st, err
	}
	dv.Order = order.Order
	st.Deal = dv
	return st, nil
}

func fieldValue(l fakeamocrm.Lead, fields []fakeamocrm.CustomField, match func(fakeamocrm.CustomField) bool) string {
	for _, f := range fields {
		if !match(f) {
			continue
		}
		for _, v := range l.CustomFieldsValues {
			if v.FieldID != f.ID {
				continue
			}
			var parts []string
			for _, x := range v.Values {
				parts = append(parts, fmt.Sprint(x.Value))
			}
			return strings.Join(parts, ", ")
		}
	}
	return ""
}

func (s *Sandbox) mainContact(l fakeamocrm.Lead) (fakeamocrm.Contact, bool) {
	for _, c := range l.Contacts {
		if c.IsMain {
			return s.amo.Contact(s.demo.acc.ID, c.ID)
		}
	}
	return fakeamocrm.Contact{}, false
}

// chat is a chat's visible messages, as a Telegram client shows them.
func (s *Sandbox) chat(id int64, title string) chatView {
	v := chatView{ID: id, Title: title, Messages: []messageView{}}
	bot := s.tg.Bot().ID
	for _, m := range s.tg.Messages(id) {
		if m.Deleted {
			continue
		}
		mv := messageView{ID: m.MessageID, Edited: len(m.History) > 0, Time: time.Unix(m.Date, 0).Local().Format("15:04"),
			Buttons: [][]buttonView{}}
		if m.From != nil {
			mv.From = strings.TrimSpace(m.From.FirstName + " " + m.From.LastName)
			mv.Bot = m.From.ID == bot
		}
		switch {
		case m.Text != "":
			mv.HTML = renderHTML(m.Text, m.Entities)
		case len(m.NewChatMembers) > 0:
			mv.Joined = "@" + m.NewChatMembers[0].Username
		default:
			continue // other service messages
		}
		for _, row := range m.InlineKeyboard() {
			r := []buttonView{}
			for _, b := range row {
				r = append(r, buttonView{Text: b.Text, Data: b.CallbackData, URL: b.URL})
			}
			mv.Buttons = append(mv.Buttons, r)
		}
		v.Messages = append(v.Messages, mv)
	}
	return v
}

type pressInput struct {
	ChatID    int64  `json:"chat_id"`
	MessageID int    `json:"message_id"`
	UserID    int64  `json:"user_id"`
	Data      string `json:"data"`
}

type pressResult struct {
	// Answer is the bot's answerCallbackQuery text: the toast Telegram shows.
	Answer string `json:"answer"`
	// OpenedBot: the answer carried a t.me start link and the executor
	// followed it (pressed Start in the bot).
	OpenedBot bool `json:"opened_bot"`
}

// press is an executor pressing a button of a bot's message. It waits for
// the bot's answer, and follows a start link in it as that executor, as
// Telegram opens the bot when the user taps such a toast.
func (s *Sandbox) press(ctx context.Context, in pressInput) (pressResult, error) {
	if !slices.ContainsFunc(s.demo.executors, func(u faketelegram.User) bool { return u.ID == in.UserID }) {
		return pressResult{}, fmt.Errorf("user %d is not an executor of the demo", in.UserID)
	}
	if in.ChatID != s.demo.group.ID && in.ChatID != in.UserID {
		return pressResult{}, fmt.Errorf("chat %d is neither the group nor the executor's private chat", in.ChatID)
	}
	qid, err := s.tg.PressButton(in.ChatID, in.MessageID, in.UserID, in.Data)
	if err != nil {
		return pressResult{}, err
	}
	var answers []faketelegram.CallbackAnswer
	if err := s.tg.WaitFor(ctx, func() bool { answers = s.tg.CallbackAnswers(qid); return len(answers) > 0 }); err != nil {
		return pressResult{}, errors.Join(errors.New("the bot did not answer the press"), err)
	}
	res := pressResult{Answer: answers[0].Text}
	if u, err := url.Parse(answers[0].URL); err == nil && u.Host == "t.me" && u.Query().Get("start") != "" {
		s.tg.UserStartsBot(in.UserID, u.Query().Get("start"))
		res.OpenedBot = true
	}
	return res, nil
}
