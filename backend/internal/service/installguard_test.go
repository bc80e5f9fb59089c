package service

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPlausibleCode(t *testing.T) {
	real := "def50200e176d7530cb132bab58f1acc6138265305ffc5f99f6f51fcbf8fb777" + strings.Repeat("0a", 421) // as long as the captured one
	for _, tc := range []struct {
		code string
		ok   bool
	}{
		{real, true},
		{strings.Repeat("ab", 32), true},               // shortest accepted
		{"def50200" + strings.Repeat("f", 4000), true}, // a longer Kommo code
		{"def50200forged", false},
		{"def50200" + strings.Repeat("f", 50), false}, // too short to be a ciphertext
		{strings.Repeat("a", maxCodeLen+1), false},    // too long
		{strings.ToUpper(real), false},                // amoCRM's hex is lowercase
		{real[:100] + "%00" + real[103:], false},      // not hex
		{real[:100] + "../" + real[103:], false},      // not hex
		{"", false},
	} {
		if got := plausibleCode(tc.code); got != tc.ok {
			t.Errorf("plausibleCode(%.20q… len %d) = %v, want %v", tc.code, len(tc.code), got, tc.ok)
		}
	}
}

func TestExchangeLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t.Run("per client", func(t *testing.T) {
		l := newExchangeLimiter()
		allowed := 0
		for range 50 {
			if l.allow("203.0.113.7", now) {
				allowed++
			}
		}
		if allowed != exchangePerClientBurst {
			t.Fatalf("one address got %d exchanges at once, want %d", allowed, exchangePerClientBurst)
		}
		if !l.allow("198.51.100.1", now) {
			t.Fatal("another address was refused by the first one's flood")
		}
		if !l.allow("203.0.113.7", now.Add(exchangePerClientEvery)) {
			t.Fatal("the address was not let in again after waiting")
		}
	})
	t.Run("overall", func(t *testing.T) {
		l := newExchangeLimiter()
		allowed := 0
		for i := range 500 {
			if l.allow(fmt.Sprintf("10.0.%d.%d", i/250, i%250), now) {
				allowed++
			}
		}
		if allowed != exchangeGlobalBurst {
			t.Fatalf("500 addresses got %d exchanges at once, want the overall burst %d", allowed, exchangeGlobalBurst)
		}
	})
	t.Run("bounded memory", func(t *testing.T) {
		l := newExchangeLimiter()
		for i := range exchangeClientsMax + 10 {
			l.allow(fmt.Sprint("client-", i), now)
		}
		if len(l.clients) > exchangeClientsMax {
			t.Fatalf("%d clients remembered, bound %d", len(l.clients), exchangeClientsMax)
		}
		l.allow("late", now.Add(exchangeClientIdle+time.Second))
		if len(l.clients) != 1 {
			t.Fatalf("idle clients were not forgotten: %d left", len(l.clients))
		}
	})
}

func TestPageProof(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Service{cfg: Config{StateKeys: [][]byte{[]byte("new-key"), []byte("old-key")}}, now: func() time.Time { return now }}
	p := s.PageProof(42)
	if id, ok := s.checkPageProof(p); !ok || id != 42 {
		t.Fatalf("own proof: %d %v", id, ok)
	}
	parts := strings.Split(p, ".")
	forged := []string{"", "42", "43." + parts[1] + "." + parts[2], "42.9999999999." + parts[2], p + "0", parts[0] + "." + parts[1] + ".deadbeef"}
	for _, f := range forged {
		if _, ok := s.checkPageProof(f); ok {
			t.Errorf("forged proof %q accepted", f)
		}
	}
	// A proof signed with a key later rotated out of first place still works.
	rotated := &Service{cfg: Config{StateKeys: [][]byte{[]byte("newer"), []byte("new-key")}}, now: s.now}
	if _, ok := rotated.checkPageProof(p); !ok {
		t.Error("proof refused after a key rotation")
	}
	now = now.Add(pageProofTTL + time.Second)
	if _, ok := s.checkPageProof(p); ok {
		t.Error("expired proof accepted")
	}
	// A state (the other thing these keys sign) is not a page proof.
	if _, ok := s.checkPageProof(s.State()); ok {
		t.Error("an OAuth state passed as a page proof")
	}
}
