package faketelegram

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

func (s *Server) getMe(context.Context, params) (any, error) {
	return struct {
		User
		CanJoinGroups           bool `json:"can_join_groups"`
		CanReadAllGroupMessages bool `json:"can_read_all_group_messages"`
		SupportsInlineQueries   bool `json:"supports_inline_queries"`
	}{User: s.bot, CanJoinGroups: true, CanReadAllGroupMessages: !s.privacyModeOn()}, nil
}

func (s *Server) privacyModeOn() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.privacyMode
}

// chatLocked resolves chat_id the way the Bot API does for a bot acting in the chat.
// toUser adds the checks that apply when the bot writes to a private chat.
func (s *Server) chatLocked(p params, toUser bool) (*chatState, *apiError) {
	raw, _ := p.str("chat_id")
	if raw == "" {
		return nil, badRequest("chat_id is empty")
	}
	id, ok := p.int("chat_id")
	c := s.chats[id]
	if !ok || c == nil {
		return nil, badRequest("chat not found")
	}
	if c.migratedTo != 0 {
		e := badRequest("group chat was upgraded to a supergroup chat")
		e.MigrateTo = c.migratedTo
		return nil, e
	}
	if c.chat.Type == ChatPrivate {
		u := s.users[id]
		switch {
		case !toUser:
		case u.deactivated:
			return nil, forbidden("user is deactivated")
		case u.blocked:
			return nil, forbidden("bot was blocked by the user")
		case !u.started:
			return nil, forbidden("bot can't initiate conversation with a user")
		}
		return c, nil
	}
	switch c.botStatus {
	case "":
		// A bot cannot see a group it has never been in.
		return nil, badRequest("chat not found")
	case StatusKicked:
		return nil, forbidden("bot was kicked from the " + c.chat.Type + " chat")
	case StatusLeft:
		// Basic groups report a removed bot as kicked whatever the way it went.
		if c.chat.Type == ChatGroup {
			return nil, forbidden("bot was kicked from the group chat")
		}
		return nil, forbidden("bot is not a member of the " + c.chat.Type + " chat")
	}
	return c, nil
}

// messageText validates text and parse_mode and returns the text Telegram would store.
func messageText(p params) (text string, entities []MessageEntity, raw, mode string, err *apiError) {
	raw, _ = p.str("text")
	mode, _ = p.str("parse_mode")
	if !utf8.ValidString(raw) {
		return "", nil, "", "", badRequest("strings must be encoded in UTF-8")
	}
	switch strings.ToLower(mode) {
	case "":
		text = raw
		if v, present, ok := p.json("entities"); present && ok {
			b, _ := json.Marshal(v)
			if json.Unmarshal(b, &entities) != nil {
				return "", nil, "", "", badRequest("can't parse entities JSON object")
			}
		}
	case "html":
		var perr error
		text, entities, perr = parseHTML(raw)
		if perr != nil {
			return "", nil, "", "", badRequest("can't parse entities: " + perr.Error())
		}
	case "markdown", "markdownv2":
		// Markdown parsing is not modelled: the text is kept as sent.
		text = raw
	default:
		return "", nil, "", "", badRequest("unsupported parse_mode")
	}
	text, entities = trimText(text, entities)
	if text == "" {
		return "", nil, "", "", badRequest("message text is empty")
	}
	if utf16Len(text) > 4096 {
		return "", nil, "", "", badRequest("message is too long")
	}
	return text, entities, raw, mode, nil
}

// Action fields of an inline button in the order the Bot API server looks for them: the
// first one present decides the button's kind. Strictly "exactly one" would reject the
// real client, since go-telegram/bot always serialises copy_text.
var buttonKinds = []string{"url", "callback_data", "callback_game", "pay", "switch_inline_query",
	"switch_inline_query_chosen_chat", "switch_inline_query_current_chat", "login_url", "web_app", "copy_text"}

// replyMarkup validates reply_markup and returns the inline keyboard to store on the
// message (nil when there is none: absent, empty, or a non-inline keyboard).
func replyMarkup(p params, inlineOnly bool) (json.RawMessage, *apiError) {
	v, present, ok := p.json("reply_markup")
	if !present {
		return nil, nil
	}
	obj, isObj := v.(map[string]any)
	if !ok || !isObj {
		return nil, badRequest("can't parse reply keyboard markup JSON object")
	}
	ik, hasInline := obj["inline_keyboard"]
	if !hasInline {
		if inlineOnly {
			return nil, badRequest("can't parse inline keyboard markup JSON object")
		}
		for _, k := range []string{"keyboard", "remove_keyboard", "force_reply"} {
			if _, ok := obj[k]; ok {
				return nil, nil
			}
		}
		return nil, badRequest("can't parse reply keyboard markup JSON object")
	}
	rows, ok := ik.([]any)
	if !ok {
		return nil, badRequest("can't parse inline keyboard markup JSON object: Field \"inline_keyboard\" must be an Array")
	}
	buttons := 0
	for _, row := range rows {
		cells, ok := row.([]any)
		if !ok {
			return nil, badRequest("can't parse inline keyboard markup JSON object: InlineKeyboardMarkup must be an Array of Arrays")
		}
		for _, cell := range cells {
			if err := checkButton(cell); err != nil {
				return nil, err
			}
			buttons++
		}
	}
	if buttons == 0 {
		return nil, nil
	}
	// Re-encoding gives a canonical form, so "not modified" compares content, not spelling.
	canonical, _ := json.Marshal(obj)
	return canonical, nil
}

func checkButton(cell any) *apiError {
	b, ok := cell.(map[string]any)
	if !ok {
		return badRequest("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
	}
	text, ok := b["text"].(string)
	if !ok {
		return badRequest("can't parse inline keyboard button: Field \"text\" must be of type String")
	}
	if strings.TrimSpace(text) == "" {
		return badRequest("BUTTON_TEXT_INVALID")
	}
	for _, kind := range buttonKinds {
		v, present := b[kind]
		if !present {
			continue
		}
		switch kind {
		case "url":
			u, _ := v.(string)
			if !validButtonURL(u) {
				return badRequest("BUTTON_URL_INVALID")
			}
		case "callback_data":
			d, ok := v.(string)
			if !ok || len(d) < 1 || len(d) > 64 {
				return badRequest("BUTTON_DATA_INVALID")
			}
		}
		return nil
	}
	return badRequest("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
}

func validButtonURL(raw string) bool {
	if raw == "" || strings.ContainsAny(raw, " \t\n") {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return u.Host != ""
	case "tg":
		return u.Opaque != "" || u.Host != ""
	case "":
		// Telegram treats "t.me/x" as http://t.me/x.
		u, err = url.Parse("http://" + raw)
		return err == nil && strings.Contains(u.Host, ".")
	}
	return false
}

func (c *chatState) addMessageLocked(m *Message) *Message {
	c.nextMsgID++
	m.MessageID = c.nextMsgID
	m.Chat = c.chat
	if c.msgs == nil {
		c.msgs = map[int]*Message{}
	}
	c.msgs[m.MessageID] = m
	c.order = append(c.order, m.MessageID)
	return m
}

func (s *Server) sendMessage(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.chatLocked(p, true)
	if err != nil {
		return nil, err
	}
	text, entities, raw, mode, err := messageText(p)
	if err != nil {
		return nil, err
	}
	markup, err := replyMarkup(p, false)
	if err != nil {
		return nil, err
	}
	if err := s.floodCheckLocked(c); err != nil {
		return nil, err
	}
	bot := s.bot
	m := c.addMessageLocked(&Message{From: &bot, Date: s.now().Unix(), Text: text, Entities: entities,
		ReplyMarkup: markup, RawText: raw, ParseMode: mode})
	return m.clone(), nil
}

// chatActions are sendChatAction's documented actions.
var chatActions = []string{"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
	"upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note"}

// sendChatAction answers like sendMessage as far as access goes: a user who never
// started the bot, blocked it or was deactivated gets the same 403. Nothing is stored:
// the status only shows in the user's client for a few seconds.
func (s *Server) sendChatAction(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.chatLocked(p, true); err != nil {
		return nil, err
	}
	action, _ := p.str("action")
	if !slices.Contains(chatActions, action) {
		return nil, badRequest("wrong parameter action in request")
	}
	return true, nil
}

// editableLocked finds the bot's own message named by chat_id and message_id.
func (s *Server) editableLocked(p params) (*Message, *apiError) {
	if _, ok := p["inline_message_id"]; ok {
		return nil, badRequest("MESSAGE_ID_INVALID") // inline messages are not modelled
	}
	c, err := s.chatLocked(p, true)
	if err != nil {
		return nil, err
	}
	id, ok := p.int("message_id")
	if !ok || id <= 0 {
		return nil, badRequest("message identifier is not specified")
	}
	m := c.msgs[int(id)]
	if m == nil || m.Deleted {
		return nil, badRequest("message to edit not found")
	}
	if m.From == nil || m.From.ID != s.bot.ID {
		return nil, badRequest("message can't be edited")
	}
	return m, nil
}

const notModified = "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"

func (s *Server) editMessageText(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.editableLocked(p)
	if err != nil {
		return nil, err
	}
	if m.Text == "" {
		return nil, badRequest("there is no text in the message to edit")
	}
	text, entities, raw, mode, err := messageText(p)
	if err != nil {
		return nil, err
	}
	// An edit without reply_markup removes the inline keyboard, as in Telegram.
	markup, err := replyMarkup(p, true)
	if err != nil {
		return nil, err
	}
	if text == m.Text && slices.Equal(entities, m.Entities) && bytes.Equal(markup, m.ReplyMarkup) {
		return nil, badRequest(notModified)
	}
	s.reviseLocked(m)
	m.Text, m.Entities, m.RawText, m.ParseMode, m.ReplyMarkup = text, entities, raw, mode, markup
	return m.clone(), nil
}

func (s *Server) editMessageReplyMarkup(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.editableLocked(p)
	if err != nil {
		return nil, err
	}
	markup, err := replyMarkup(p, true)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(markup, m.ReplyMarkup) {
		return nil, badRequest(notModified)
	}
	s.reviseLocked(m)
	m.ReplyMarkup = markup
	return m.clone(), nil
}

func (s *Server) reviseLocked(m *Message) {
	now := s.now()
	m.History = append(m.History, Revision{Text: m.Text, RawText: m.RawText, ParseMode: m.ParseMode,
		Entities: m.Entities, ReplyMarkup: m.ReplyMarkup, ReplacedAt: now})
	m.EditDate = now.Unix()
}

const queryInvalid = "query is too old and response timeout expired or query ID is invalid"

func (s *Server) answerCallbackQuery(_ context.Context, p params) (any, error) {
	id, _ := p.str("callback_query_id")
	text, _ := p.str("text")
	link, _ := p.str("url")
	cacheTime, _ := p.int("cache_time")
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queries[id]
	now := s.now()
	if q == nil || q.answered || now.Sub(q.created) > s.callbackMaxAge {
		return nil, badRequest(queryInvalid)
	}
	if utf16Len(text) > 200 {
		return nil, badRequest("MESSAGE_TOO_LONG")
	}
	if link != "" && !s.isStartLink(link) {
		return nil, badRequest("URL_INVALID")
	}
	q.answered = true
	s.answers = append(s.answers, CallbackAnswer{QueryID: id, Text: text, ShowAlert: p.bool("show_alert"),
		URL: link, CacheTime: cacheTime, Time: now})
	return true, nil
}

// isStartLink accepts t.me/<this bot>?start=..., the only url a callback answer may open
// outside games.
func (s *Server) isStartLink(link string) bool {
	if !strings.Contains(link, "://") {
		link = "https://" + link
	}
	u, err := url.Parse(link)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return false
	}
	if h := strings.ToLower(u.Host); h != "t.me" && h != "telegram.me" {
		return false
	}
	return strings.EqualFold(strings.Trim(u.Path, "/"), s.bot.Username) && u.Query().Has("start")
}

func (s *Server) deleteMessage(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.chatLocked(p, false)
	if err != nil {
		return nil, err
	}
	id, _ := p.int("message_id")
	m := c.msgs[int(id)]
	if m == nil || m.Deleted {
		return nil, badRequest("message to delete not found")
	}
	own := m.From != nil && m.From.ID == s.bot.ID
	admin := c.botStatus == StatusAdministrator || c.botStatus == StatusCreator
	if c.chat.Type != ChatPrivate && !own && !admin {
		return nil, badRequest("message can't be deleted")
	}
	if s.now().Sub(time.Unix(m.Date, 0)) > 48*time.Hour {
		return nil, badRequest("message can't be deleted")
	}
	m.Deleted = true
	return true, nil
}

func (s *Server) getChat(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.chatLocked(p, false)
	if err != nil {
		return nil, err
	}
	return struct {
		Chat
		AccentColorID    int `json:"accent_color_id"`
		MaxReactionCount int `json:"max_reaction_count"`
	}{Chat: c.chat, MaxReactionCount: 11}, nil
}

func (s *Server) getChatMember(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.chatLocked(p, false)
	if err != nil {
		return nil, err
	}
	uid, ok := p.int("user_id")
	if !ok {
		return nil, badRequest("invalid user_id specified")
	}
	if uid == s.bot.ID {
		status := c.botStatus
		if c.chat.Type == ChatPrivate {
			status = StatusMember
		}
		return ChatMember{User: s.bot, Status: status}, nil
	}
	u := s.users[uid]
	if u == nil {
		return nil, badRequest("user not found")
	}
	status := c.members[uid]
	switch {
	case c.chat.Type == ChatPrivate && uid == c.chat.ID:
		status = StatusMember
	case status == "":
		status = StatusLeft
	}
	return ChatMember{User: u.user, Status: status}, nil
}

func (s *Server) leaveChat(_ context.Context, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.chatLocked(p, false)
	if err != nil {
		return nil, err
	}
	if c.chat.Type == ChatPrivate {
		return nil, badRequest("chat member status can't be changed in private chats")
	}
	old := c.botStatus
	c.botStatus = StatusLeft
	s.botStatusChangedLocked(c.chat, s.bot, old, StatusLeft)
	return true, nil
}
