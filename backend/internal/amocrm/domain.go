package amocrm

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidDomain is returned for any account host that is not a plain
// amoCRM/Kommo subdomain.
var ErrInvalidDomain = errors.New("amocrm: invalid account domain")

// accountZones are the only parent domains we will ever send an OAuth secret or
// a bearer token to. The account host arrives in an attacker-controllable query
// parameter (`referer`), so anything outside this list must be rejected to keep
// tokens from leaking to a foreign host (SSRF / credential exfiltration).
var accountZones = []string{".amocrm.ru", ".amocrm.com", ".kommo.com"}

// NormalizeDomain validates the account host taken from the OAuth `referer`
// parameter (or a disposable-token `iss` claim) and returns it lowercased, e.g.
// "example.amocrm.ru". An "https://" prefix with an empty path is tolerated
// because `iss` claims carry one; ports, paths, queries, userinfo, nested
// subdomains and other hosts are rejected.
func NormalizeDomain(referer string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(referer))
	if rest, ok := strings.CutPrefix(s, "https://"); ok {
		s = strings.TrimSuffix(rest, "/")
	}
	for _, zone := range accountZones {
		sub, ok := strings.CutSuffix(s, zone)
		if !ok {
			continue
		}
		if !validSubdomain(sub) {
			break
		}
		return sub + zone, nil
	}
	return "", fmt.Errorf("%w: %q", ErrInvalidDomain, truncate(referer, 100))
}

// validSubdomain accepts a single DNS label of [a-z0-9-]. Rejecting dots is what
// stops "evil.com/x.amocrm.ru"-style or "a.b.amocrm.ru" tricks, and rejecting
// every other byte covers ':', '@', '/', '?', '#', '%', whitespace, etc.
func validSubdomain(sub string) bool {
	if sub == "" || len(sub) > 63 {
		return false
	}
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
