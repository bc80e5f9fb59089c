package service

import (
	"crypto/hmac"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Authorization codes are defuse/php-encryption ciphertexts in hex
// ("def50200…", about 1,000 characters in the captured install redirect).
// Only the charset and generous length bounds are checked, so a longer
// Kommo code or a new version prefix still passes; what fails cannot be a
// code at all and never costs a request to amoCRM.
const (
	minCodeLen = 64
	maxCodeLen = 8192
)

func plausibleCode(code string) bool {
	if len(code) < minCodeLen || len(code) > maxCodeLen {
		return false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Limits of code exchanges started by the anonymous install callback. Each
// one sends the client secret to amoCRM; a flood of them could get our
// address blocked there, for every tenant. A real admin installs once and
// perhaps reloads the page a few times.
const (
	exchangePerClientBurst = 10
	exchangePerClientEvery = 6 * time.Second
	exchangeGlobalBurst    = 20
	exchangeGlobalPerSec   = 2
	exchangeClientsMax     = 10_000
	exchangeClientIdle     = 10 * time.Minute
)

// exchangeLimiter allows code exchanges per client address and overall.
type exchangeLimiter struct {
	mu      sync.Mutex
	global  *rate.Limiter
	clients map[string]*clientLimit
}

type clientLimit struct {
	lim  *rate.Limiter
	seen time.Time
}

func newExchangeLimiter() *exchangeLimiter {
	return &exchangeLimiter{
		global:  rate.NewLimiter(exchangeGlobalPerSec, exchangeGlobalBurst),
		clients: map[string]*clientLimit{},
	}
}

func (l *exchangeLimiter) allow(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[client]
	if c == nil {
		if len(l.clients) >= exchangeClientsMax {
			for k, v := range l.clients {
				if now.Sub(v.seen) > exchangeClientIdle {
					delete(l.clients, k)
				}
			}
		}
		// Still full: that many addresses at once is itself a flood.
		if len(l.clients) >= exchangeClientsMax {
			return false
		}
		c = &clientLimit{lim: rate.NewLimiter(rate.Every(exchangePerClientEvery), exchangePerClientBurst)}
		l.clients[client] = c
	}
	c.seen = now
	// The client's token is spent first: one address alone must not drain
	// the budget everyone shares.
	return c.lim.AllowN(now, 1) && l.global.AllowN(now, 1)
}

// pageProofTTL bounds how long the browser that completed an install may
// see its confirmation page again by reloading it.
const pageProofTTL = 30 * time.Minute

// PageProof is given to the browser that completed an install (as a cookie)
// so that reloading the page, whose code amoCRM then refuses as used, shows
// the same confirmation again. Without it, a refused code reveals nothing:
// the page carries the account's Telegram link code, and anyone can call the
// callback with a garbage code and a victim's referer.
func (s *Service) PageProof(accountID int64) string {
	id := strconv.FormatInt(accountID, 10)
	exp := strconv.FormatInt(s.now().Add(pageProofTTL).Unix(), 10)
	return id + "." + exp + "." + s.sign("install-page|"+id+"|"+exp)
}

// checkPageProof returns the account id a proof was issued for.
func (s *Service) checkPageProof(proof string) (int64, bool) {
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return 0, false
	}
	signed := false
	for _, k := range s.cfg.StateKeys {
		signed = signed || hmac.Equal([]byte(parts[2]), []byte(signWith(k, "install-page|"+parts[0]+"|"+parts[1])))
	}
	id, err1 := strconv.ParseInt(parts[0], 10, 64)
	exp, err2 := strconv.ParseInt(parts[1], 10, 64)
	if !signed || err1 != nil || err2 != nil || s.now().Unix() > exp {
		return 0, false
	}
	return id, true
}
