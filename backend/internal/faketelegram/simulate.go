package faketelegram

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// The helpers below play the users' side. They panic on ids the fake never issued,
// since that is a bug in the test rather than a situation Telegram can produce.

// groupAnonymousBot is the sender Telegram uses for the supergroup side of a migration.
var groupAnonymousBot = User{ID: 1087968824, IsBot: true, FirstName: "Group", Username: "GroupAnonymousBot"}

// AddUser creates a Telegram user; their private chat with the bot has the user's id.
func (s *Server) AddUser(first, last, username string) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextUserID++
	u := User{ID: s.nextUserID, FirstName: first, LastName: last, Username: username}
	s.users[u.ID] = &userState{user: u}
	s.chats[u.ID] = s.newChatLocked(Chat{ID: u.ID, Type: ChatPrivate, FirstName: first, LastName: last, Username: username})
	return u
}

func (s *Server) newChatLocked(c Chat) *chatState {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", s.bot.ID, c.ID)
	return &chatState{chat: c, members: map[int64]string{}, msgs: map[int]*Message{},
		instance: strconv.FormatUint(h.Sum64()>>1, 10)}
}

func (s *Server) userLocked(id int64) *userState {
	u := s.users[id]
	if u == nil {
		panic(fmt.Sprintf("faketelegram: unknown user %d", id))
	}
	return u
}

func (s *Server) groupLocked(id int64) *chatState {
	c := s.chats[id]
	if c == nil || c.chat.Type == ChatPrivate {
		panic(fmt.Sprintf("faketelegram: unknown group %d", id))
	}
	if c.migratedTo != 0 {
		panic(fmt.Sprintf("faketelegram: group %d was migrated to %d", id, c.migratedTo))
	}
	return c
}

// UserStartsBot is the user pressing Start (or opening t.me/<bot>?start=<param>): the
// bot receives "/start" or "/start <param>" and may write to the user from then on.
// Pressing Start after blocking the bot unblocks it.
func (s *Server) UserStartsBot(userID int64, startParam string) Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(userID)
	if u.blocked {
		s.botStatusChangedLocked(s.chats[userID].chat, u.user, StatusKicked, StatusMember)
	}
	u.started, u.blocked = true, false
	text := "/start"
	if startParam != "" {
		text += " " + startParam
	}
	return s.userMessageLocked(s.chats[userID], u.user, text, true)
}

// SendPrivateMessage is the user writing to the bot. Writing opens the conversation, so
// the bot may answer afterwards.
func (s *Server) SendPrivateMessage(userID int64, text string) Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(userID)
	u.started, u.blocked = true, false
	return s.userMessageLocked(s.chats[userID], u.user, text, true)
}

// BlockBot is the user blocking the bot: sends now fail with 403 and the bot gets a
// my_chat_member update with status "kicked".
func (s *Server) BlockBot(userID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(userID)
	if !u.blocked {
		s.botStatusChangedLocked(s.chats[userID].chat, u.user, StatusMember, StatusKicked)
	}
	u.blocked = true
}

// DeactivateUser deletes the user's account: sends fail with "user is deactivated".
func (s *Server) DeactivateUser(userID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userLocked(userID).deactivated = true
}

// botStatusChangedLocked queues the my_chat_member update for a change of the bot's status.
func (s *Server) botStatusChangedLocked(c Chat, by User, from, to string) {
	s.enqueueLocked("my_chat_member", ChatMemberUpdated{Chat: c, From: by, Date: s.now().Unix(),
		OldChatMember: ChatMember{User: s.bot, Status: from},
		NewChatMember: ChatMember{User: s.bot, Status: to}})
}

func (s *Server) userMessageLocked(c *chatState, from User, text string, deliver bool) Message {
	m := c.addMessageLocked(&Message{From: &from, Date: s.now().Unix(), Text: text, RawText: text,
		Entities: commandEntities(text)})
	out := m.clone()
	if deliver {
		s.enqueueLocked("message", out)
	}
	return out
}

// NewGroup creates a basic group (id like -4000000001) without the bot in it.
func (s *Server) NewGroup(title string) Chat { return s.newGroup(title, ChatGroup, 4000000000) }

// NewSupergroup creates a supergroup (id like -1001000000001) without the bot in it.
func (s *Server) NewSupergroup(title string) Chat {
	return s.newGroup(title, ChatSupergroup, 1001000000000)
}

func (s *Server) newGroup(title, typ string, idBase int64) Chat {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextGroupSeq++
	c := Chat{ID: -(idBase + s.nextGroupSeq), Type: typ, Title: title}
	s.chats[c.ID] = s.newChatLocked(c)
	return c
}

func (s *Server) joinLocked(c *chatState, userID int64) {
	if st := c.members[userID]; st != "" && st != StatusLeft {
		return
	}
	for _, st := range c.members {
		if st == StatusCreator {
			c.members[userID] = StatusMember
			return
		}
	}
	c.members[userID] = StatusCreator
}

// AddBotToGroup is byUserID adding the bot to the group. The bot receives my_chat_member
// (left -> member) and the new_chat_members service message; with a startParam (the
// t.me/<bot>?startgroup=<param> flow) also "/start@<bot> <param>" from that user.
func (s *Server) AddBotToGroup(chatID, byUserID int64, startParam string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.groupLocked(chatID)
	u := s.userLocked(byUserID)
	s.joinLocked(c, byUserID)
	old := c.botStatus
	if old == "" {
		old = StatusLeft
	}
	c.botStatus = StatusMember
	s.botStatusChangedLocked(c.chat, u.user, old, StatusMember)
	from := u.user
	m := c.addMessageLocked(&Message{From: &from, Date: s.now().Unix(), NewChatMembers: []User{s.bot}})
	s.enqueueLocked("message", m.clone())
	if startParam != "" {
		s.userMessageLocked(c, u.user, "/start@"+s.bot.Username+" "+startParam, true)
	}
}

// PromoteBot makes the bot an administrator of the group.
func (s *Server) PromoteBot(chatID, byUserID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.groupLocked(chatID)
	u := s.userLocked(byUserID)
	old := c.botStatus
	c.botStatus = StatusAdministrator
	s.botStatusChangedLocked(c.chat, u.user, old, StatusAdministrator)
}

// RemoveBotFromGroup is byUserID removing the bot. A basic group reports the bot as
// "left", a supergroup bans it ("kicked"); either way sends now fail with 403.
func (s *Server) RemoveBotFromGroup(chatID, byUserID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.groupLocked(chatID)
	u := s.userLocked(byUserID)
	status := StatusLeft
	if c.chat.Type == ChatSupergroup {
		status = StatusKicked
	}
	old := c.botStatus
	c.botStatus = status
	s.botStatusChangedLocked(c.chat, u.user, old, status)
	bot, from := s.bot, u.user
	c.addMessageLocked(&Message{From: &from, Date: s.now().Unix(), LeftChatMember: &bot})
}

// MigrateToSupergroup upgrades a basic group. The bot receives the two service messages
// (migrate_to_chat_id in the old group, migrate_from_chat_id in the new one), and from
// then on the old id answers 400 with parameters.migrate_to_chat_id.
func (s *Server) MigrateToSupergroup(chatID int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.groupLocked(chatID)
	if old.chat.Type != ChatGroup {
		panic(fmt.Sprintf("faketelegram: chat %d is not a basic group", chatID))
	}
	newID := -1000000000000 + chatID
	sg := s.newChatLocked(Chat{ID: newID, Type: ChatSupergroup, Title: old.chat.Title})
	sg.botStatus = old.botStatus
	for id, st := range old.members {
		sg.members[id] = st
	}
	s.chats[newID] = sg

	from := groupAnonymousBot
	for id, st := range old.members {
		if st == StatusCreator {
			from = s.users[id].user
		}
	}
	inGroup := old.botStatus == StatusMember || old.botStatus == StatusAdministrator
	m := old.addMessageLocked(&Message{From: &from, Date: s.now().Unix(), MigrateToChatID: newID})
	if inGroup {
		s.enqueueLocked("message", m.clone())
	}
	anon, sender := groupAnonymousBot, sg.chat
	m = sg.addMessageLocked(&Message{From: &anon, SenderChat: &sender, Date: s.now().Unix(), MigrateFromChatID: chatID})
	if inGroup {
		s.enqueueLocked("message", m.clone())
	}
	old.migratedTo = newID
	return newID
}

// SendGroupMessage is a user writing in a group. Leading /command (or /command@bot)
// gets a bot_command entity. The bot receives it if it is in the group and privacy mode
// lets it through (commands for this bot, or privacy off, or the bot is an admin).
func (s *Server) SendGroupMessage(chatID, fromUserID int64, text string) Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.groupLocked(chatID)
	u := s.userLocked(fromUserID)
	s.joinLocked(c, fromUserID)
	in := c.botStatus == StatusMember || c.botStatus == StatusAdministrator
	sees := !s.privacyMode || c.botStatus == StatusAdministrator || s.isCommandForBot(text)
	return s.userMessageLocked(c, u.user, text, in && sees)
}

func (s *Server) isCommandForBot(text string) bool {
	ents := commandEntities(text)
	if len(ents) == 0 {
		return false
	}
	cmd, _, _ := strings.Cut(text, " ")
	cmd = strings.Fields(cmd)[0]
	_, target, addressed := strings.Cut(cmd, "@")
	return !addressed || strings.EqualFold(target, s.bot.Username)
}

// PressButton is userID pressing the inline button with this callback_data on the
// bot's message. It fails if the message's current keyboard has no such button.
func (s *Server) PressButton(chatID int64, messageID int, userID int64, data string) (string, error) {
	return s.press(chatID, messageID, userID, data, pressHonest)
}

// ForgePress is a modified client sending any callback_data on a message it can see.
// Telegram passes such a query on unchecked: the Bot API warns that the message may
// carry no button with the query's data. The query's message is the message as it
// is now, keyboard included.
func (s *Server) ForgePress(chatID int64, messageID int, userID int64, data string) (string, error) {
	return s.press(chatID, messageID, userID, data, pressForged)
}

// PressInaccessible is userID pressing a button on a message the bot can no longer
// access: the query's message is an InaccessibleMessage (chat, message_id, date 0),
// without text or keyboard.
func (s *Server) PressInaccessible(chatID int64, messageID int, userID int64, data string) (string, error) {
	return s.press(chatID, messageID, userID, data, pressInaccessible)
}

type pressKind int

const (
	pressHonest pressKind = iota
	pressForged
	pressInaccessible
)

func (s *Server) press(chatID int64, messageID int, userID int64, data string, kind pressKind) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chats[chatID]
	if c == nil {
		return "", fmt.Errorf("faketelegram: unknown chat %d", chatID)
	}
	u := s.users[userID]
	if u == nil {
		return "", fmt.Errorf("faketelegram: unknown user %d", userID)
	}
	if c.chat.Type == ChatPrivate && chatID != userID {
		return "", fmt.Errorf("faketelegram: user %d cannot see private chat %d", userID, chatID)
	}
	m := c.msgs[messageID]
	if m == nil || m.Deleted {
		return "", fmt.Errorf("faketelegram: no message %d in chat %d", messageID, chatID)
	}
	if len(data) == 0 || len(data) > 64 {
		return "", fmt.Errorf("faketelegram: callback_data must be 1-64 bytes, got %d", len(data))
	}
	if kind == pressHonest {
		found := false
		for _, row := range m.InlineKeyboard() {
			for _, b := range row {
				found = found || (b.URL == "" && b.CallbackData == data)
			}
		}
		if !found {
			return "", errors.New("faketelegram: the message's keyboard has no button with callback_data " + strconv.Quote(data))
		}
	}
	s.nextQuerySeq++
	id := strconv.FormatInt(6667286990484858000+s.nextQuerySeq, 10)
	s.queries[id] = &queryState{created: s.now()}
	var msg any
	if kind == pressInaccessible {
		msg = InaccessibleMessage{Chat: c.chat, MessageID: messageID, Date: 0}
	} else {
		snapshot := m.clone()
		msg = &snapshot
	}
	s.enqueueLocked("callback_query", CallbackQuery{ID: id, From: u.user, Message: msg,
		ChatInstance: c.instance, Data: data})
	return id, nil
}

// AdminDeletesMessage is a group admin (or the user, in private) deleting a message.
// Telegram does not tell bots about deletions, so no update is queued.
func (s *Server) AdminDeletesMessage(chatID int64, messageID int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chats[chatID]
	if c == nil || c.msgs[messageID] == nil {
		panic(fmt.Sprintf("faketelegram: no message %d in chat %d", messageID, chatID))
	}
	c.msgs[messageID].Deleted = true
}
