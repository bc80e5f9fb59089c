package orderview

import (
	"regexp"
	"strings"
	"unicode"
)

// Telephony and site forms put the caller's number or address into the deal's
// name and free-text fields ("Входящий звонок +7 916 555-12-34"), so group
// text never carries them as typed: the group is wider than the executor who
// takes the order, and only the private message gets the full values.

var (
	// A run of digits with the separators people type in phone numbers. The
	// digit count decides below: a regexp alone cannot tell a phone from a
	// date, a price or an order number.
	phoneRun = regexp.MustCompile(`\+?\d(?:[ \t\-.()\x{00a0}]{0,2}\d)+`)
	// A Moscow-style local number, 555-12-34: too few digits for the rule
	// below, but unmistakable by its shape.
	localPhone = regexp.MustCompile(`^\d{3}-\d{2}-\d{2}$`)
	emailAddr  = regexp.MustCompile(`[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}`)
)

// Phone numbers have 10 to 15 digits in E.164 (with the country code), and
// Russian ones are written with 10 or 11; dates and prices have fewer.
const minPhoneDigits, maxPhoneDigits = 10, 15

// maskContacts hides the phone numbers and e-mail addresses in s, keeping
// only what tells two of them apart in a conversation (the last two digits,
// the first letter).
func maskContacts(s string) string {
	s = emailAddr.ReplaceAllStringFunc(s, func(m string) string {
		r := []rune(m)
		return string(r[0]) + "***@***"
	})
	return phoneRun.ReplaceAllStringFunc(s, func(m string) string {
		digits := 0
		for _, r := range m {
			if unicode.IsDigit(r) {
				digits++
			}
		}
		if (digits < minPhoneDigits || digits > maxPhoneDigits) && !localPhone.MatchString(m) {
			return m
		}
		var b strings.Builder
		seen := 0
		for _, r := range m {
			if unicode.IsDigit(r) {
				seen++
				if seen <= digits-2 {
					r = '*'
				}
			}
			b.WriteRune(r)
		}
		return b.String()
	})
}

// contactField reports fields that hold the client's contact details or
// identity as a whole (phone and e-mail lists, a legal entity, a payer): they
// are left out of group text altogether rather than masked.
func contactField(typ, code string) bool {
	switch typ {
	case "multitext", "legal_entity", "payer", "supplier":
		return true
	}
	switch strings.ToUpper(code) {
	case "PHONE", "EMAIL", "IM":
		return true
	}
	return false
}
