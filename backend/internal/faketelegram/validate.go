package faketelegram

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ValidateHTML checks a parse_mode=HTML message text the way sendMessage does and
// returns the length Telegram enforces the 4096 limit on: UTF-16 code units of the
// visible text after entity parsing and whitespace trimming. It lets renderers
// assert their output offline without starting a fake server; the limit itself is
// left to the caller because captions and messages have different ones.
func ValidateHTML(s string) (visibleUTF16Len int, err error) {
	if !utf8.ValidString(s) {
		return 0, errors.New("strings must be encoded in UTF-8")
	}
	text, entities, err := parseHTML(s)
	if err != nil {
		return 0, fmt.Errorf("can't parse entities: %w", err)
	}
	text, _ = trimText(text, entities)
	if text == "" {
		return 0, errors.New("message text is empty")
	}
	return utf16Len(text), nil
}
