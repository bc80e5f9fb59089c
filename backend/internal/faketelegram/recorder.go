package faketelegram

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Calls returns the recorded requests to method (matched case-insensitively), oldest first.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if strings.EqualFold(c.Method, method) {
			out = append(out, c)
		}
	}
	return out
}

// AllCalls returns every recorded request, oldest first.
func (s *Server) AllCalls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	copy(out, s.calls)
	return out
}

// Messages returns the chat's messages in order, deleted ones included (Deleted set).
func (s *Server) Messages(chatID int64) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chats[chatID]
	if c == nil {
		return nil
	}
	out := make([]Message, 0, len(c.order))
	for _, id := range c.order {
		out = append(out, c.msgs[id].clone())
	}
	return out
}

// Message returns one message's current state.
func (s *Server) Message(chatID int64, messageID int) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chats[chatID]
	if c == nil || c.msgs[messageID] == nil {
		return Message{}, false
	}
	return c.msgs[messageID].clone(), true
}

// Chat returns a chat the fake knows.
func (s *Server) Chat(chatID int64) (Chat, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chats[chatID]
	if c == nil {
		return Chat{}, false
	}
	return c.chat, true
}

// CallbackAnswers returns the accepted answers to one query: at most one, since
// Telegram rejects a second answer.
func (s *Server) CallbackAnswers(queryID string) []CallbackAnswer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []CallbackAnswer
	for _, a := range s.answers {
		if a.QueryID == queryID {
			out = append(out, a)
		}
	}
	return out
}

// AllCallbackAnswers returns every accepted answer, oldest first.
func (s *Server) AllCallbackAnswers() []CallbackAnswer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CallbackAnswer, len(s.answers))
	copy(out, s.answers)
	return out
}

// WaitFor polls cond until it holds or ctx ends; the work under test runs elsewhere, so
// polling with a deadline replaces sleeping.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("faketelegram: condition not met: %w", ctx.Err())
		case <-t.C:
		}
	}
}
