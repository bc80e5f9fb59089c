package faketelegram

// PollWaiting lets the tests order two getUpdates requests without sleeping.
func (s *Server) PollWaiting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poll != nil
}
