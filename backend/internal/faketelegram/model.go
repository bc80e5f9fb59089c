package faketelegram

import (
	"encoding/json"
	"slices"
	"time"
)

// The types below mirror the Bot API objects the fake emits. They are the fake's own
// (not github.com/go-telegram/bot/models) so that the JSON on the wire is exactly what
// the fake decides, and the tests prove the real client can decode it.

// User is https://core.telegram.org/bots/api#user.
type User struct {
	ID           int64  `json:"id"`
	IsBot        bool   `json:"is_bot"`
	FirstName    string `json:"first_name"`
	LastName     string `json:"last_name,omitempty"`
	Username     string `json:"username,omitempty"`
	LanguageCode string `json:"language_code,omitempty"`
}

// Chat types as Telegram spells them.
const (
	ChatPrivate    = "private"
	ChatGroup      = "group"
	ChatSupergroup = "supergroup"
)

// Chat is https://core.telegram.org/bots/api#chat.
type Chat struct {
	ID        int64  `json:"id"`
	Type      string `json:"type"`
	Title     string `json:"title,omitempty"`
	Username  string `json:"username,omitempty"`
	FirstName string `json:"first_name,omitempty"`
	LastName  string `json:"last_name,omitempty"`
	// Basic groups still carry this legacy flag in real updates (see the samples).
	AllMembersAreAdministrators bool `json:"all_members_are_administrators,omitempty"`
}

// MessageEntity is https://core.telegram.org/bots/api#messageentity.
type MessageEntity struct {
	Type          string `json:"type"`
	Offset        int    `json:"offset"`
	Length        int    `json:"length"`
	URL           string `json:"url,omitempty"`
	Language      string `json:"language,omitempty"`
	CustomEmojiID string `json:"custom_emoji_id,omitempty"`
}

// Message is https://core.telegram.org/bots/api#message, limited to the fields the fake
// produces, plus fake-only state (json:"-") that tests assert on.
type Message struct {
	MessageID         int             `json:"message_id"`
	From              *User           `json:"from,omitempty"`
	SenderChat        *Chat           `json:"sender_chat,omitempty"`
	Date              int64           `json:"date"`
	Chat              Chat            `json:"chat"`
	EditDate          int64           `json:"edit_date,omitempty"`
	Text              string          `json:"text,omitempty"`
	Entities          []MessageEntity `json:"entities,omitempty"`
	NewChatMembers    []User          `json:"new_chat_members,omitempty"`
	LeftChatMember    *User           `json:"left_chat_member,omitempty"`
	MigrateToChatID   int64           `json:"migrate_to_chat_id,omitempty"`
	MigrateFromChatID int64           `json:"migrate_from_chat_id,omitempty"`
	// ReplyMarkup is kept as the JSON the bot sent (inline keyboards only, as Telegram
	// echoes nothing else back), so assertions see exactly what went over the wire.
	ReplyMarkup json.RawMessage `json:"reply_markup,omitempty"`

	// RawText is the text parameter as sent, before entity parsing.
	RawText   string `json:"-"`
	ParseMode string `json:"-"`
	Deleted   bool   `json:"-"`
	// History holds the earlier versions, oldest first; the current one is the message itself.
	History []Revision `json:"-"`
}

// Revision is one earlier state of an edited message.
type Revision struct {
	Text        string
	RawText     string
	ParseMode   string
	Entities    []MessageEntity
	ReplyMarkup json.RawMessage
	// ReplacedAt is when the edit that superseded this revision happened.
	ReplacedAt time.Time
}

// InlineKeyboard decodes the current inline keyboard (nil when there is none).
func (m Message) InlineKeyboard() [][]InlineKeyboardButton {
	if len(m.ReplyMarkup) == 0 {
		return nil
	}
	var mk struct {
		InlineKeyboard [][]InlineKeyboardButton `json:"inline_keyboard"`
	}
	if json.Unmarshal(m.ReplyMarkup, &mk) != nil {
		return nil
	}
	return mk.InlineKeyboard
}

// InlineKeyboardButton is the subset of https://core.telegram.org/bots/api#inlinekeyboardbutton
// tests usually look at.
type InlineKeyboardButton struct {
	Text         string `json:"text"`
	URL          string `json:"url,omitempty"`
	CallbackData string `json:"callback_data,omitempty"`
}

func (m Message) clone() Message {
	c := m
	if m.From != nil {
		u := *m.From
		c.From = &u
	}
	if m.SenderChat != nil {
		ch := *m.SenderChat
		c.SenderChat = &ch
	}
	if m.LeftChatMember != nil {
		u := *m.LeftChatMember
		c.LeftChatMember = &u
	}
	c.Entities = slices.Clone(m.Entities)
	c.NewChatMembers = slices.Clone(m.NewChatMembers)
	c.ReplyMarkup = slices.Clone(m.ReplyMarkup)
	c.History = slices.Clone(m.History)
	for i := range c.History {
		c.History[i].Entities = slices.Clone(c.History[i].Entities)
		c.History[i].ReplyMarkup = slices.Clone(c.History[i].ReplyMarkup)
	}
	return c
}

// InaccessibleMessage is https://core.telegram.org/bots/api#inaccessiblemessage: a
// date of 0 is what tells it apart from a Message.
type InaccessibleMessage struct {
	Chat      Chat  `json:"chat"`
	MessageID int   `json:"message_id"`
	Date      int64 `json:"date"`
}

// CallbackQuery is https://core.telegram.org/bots/api#callbackquery.
type CallbackQuery struct {
	ID   string `json:"id"`
	From User   `json:"from"`
	// Message is a *Message or an InaccessibleMessage (MaybeInaccessibleMessage).
	Message      any    `json:"message,omitempty"`
	ChatInstance string `json:"chat_instance"`
	Data         string `json:"data,omitempty"`
}

// Chat member statuses as Telegram spells them.
const (
	StatusCreator       = "creator"
	StatusAdministrator = "administrator"
	StatusMember        = "member"
	StatusLeft          = "left"
	StatusKicked        = "kicked"
)

// ChatMember is https://core.telegram.org/bots/api#chatmember (status-discriminated).
type ChatMember struct {
	User   User   `json:"user"`
	Status string `json:"status"`
}

// MarshalJSON adds the fields each status requires: ChatMemberBanned.until_date is
// mandatory (0 = forever) and administrators carry their rights.
func (m ChatMember) MarshalJSON() ([]byte, error) {
	type plain ChatMember
	switch m.Status {
	case StatusKicked:
		return json.Marshal(struct {
			plain
			UntilDate int64 `json:"until_date"`
		}{plain: plain(m)})
	case StatusAdministrator:
		return json.Marshal(struct {
			plain
			CanBeEdited        bool `json:"can_be_edited"`
			IsAnonymous        bool `json:"is_anonymous"`
			CanManageChat      bool `json:"can_manage_chat"`
			CanDeleteMessages  bool `json:"can_delete_messages"`
			CanRestrictMembers bool `json:"can_restrict_members"`
			CanPromoteMembers  bool `json:"can_promote_members"`
			CanChangeInfo      bool `json:"can_change_info"`
			CanInviteUsers     bool `json:"can_invite_users"`
			CanPinMessages     bool `json:"can_pin_messages"`
		}{plain: plain(m), CanManageChat: true, CanDeleteMessages: true, CanRestrictMembers: true,
			CanChangeInfo: true, CanInviteUsers: true, CanPinMessages: true})
	}
	return json.Marshal(plain(m))
}

// ChatMemberUpdated is https://core.telegram.org/bots/api#chatmemberupdated.
type ChatMemberUpdated struct {
	Chat          Chat       `json:"chat"`
	From          User       `json:"from"`
	Date          int64      `json:"date"`
	OldChatMember ChatMember `json:"old_chat_member"`
	NewChatMember ChatMember `json:"new_chat_member"`
}

// Call is one recorded request to the fake.
type Call struct {
	// Method is the Bot API spelling ("sendMessage") for known methods, else as requested.
	Method string
	// Params holds the request parameters whatever the encoding: JSON-valued form fields
	// (reply_markup, allowed_updates, ...) are decoded, integer fields are int64 and
	// boolean fields are bool, so JSON and multipart requests record the same values.
	Params      map[string]any
	Time        time.Time
	Status      int
	OK          bool
	Description string
	Result      json.RawMessage
}

// Int returns an integer parameter.
func (c Call) Int(key string) (int64, bool) {
	return params(c.Params).int(key)
}

// String returns a string parameter ("" when absent).
func (c Call) String(key string) string {
	s, _ := params(c.Params).str(key)
	return s
}

// CallbackAnswer is one accepted answerCallbackQuery.
type CallbackAnswer struct {
	QueryID   string
	Text      string
	ShowAlert bool
	URL       string
	CacheTime int64
	Time      time.Time
}

// Delivery is one attempt to POST an update to the webhook.
type Delivery struct {
	UpdateID int64
	URL      string
	// SecretToken is the X-Telegram-Bot-Api-Secret-Token header sent ("" when none).
	SecretToken string
	Status      int
	Err         string
	Time        time.Time
}

// Delivered reports whether Telegram would count this attempt as a success.
func (d Delivery) Delivered() bool { return d.Err == "" && d.Status >= 200 && d.Status < 300 }
