package fakeamocrm

import (
	"testing"
)

// An account's time zone comes with datetime_settings: Europe/Moscow by
// default, or the one the account was seeded with, with its current offset.
func TestAccountTimezone(t *testing.T) {
	f := newFixture(t, Options{})
	spec := specB()
	spec.ID, spec.Subdomain, spec.Timezone = 0, "gamma", "Asia/Yekaterinburg"
	c := f.s.AddAccount(spec)
	tokC := f.s.IssueTokens(c.ID).AccessToken
	for _, tc := range []struct {
		token, zone, offset string
	}{
		{f.tokA, "Europe/Moscow", "+03:00"},
		{tokC, "Asia/Yekaterinburg", "+05:00"},
	} {
		m := f.do(tc.token, "GET", "/api/v4/account?with=datetime_settings", nil).json(t)
		emb, _ := m["_embedded"].(map[string]any)
		ds, _ := emb["datetime_settings"].(map[string]any)
		if ds["timezone"] != tc.zone || ds["timezone_offset"] != tc.offset {
			t.Errorf("datetime_settings %v, want %s %s", ds, tc.zone, tc.offset)
		}
	}
	if m := f.do(f.tokA, "GET", "/api/v4/account", nil).json(t); m["_embedded"] != nil {
		t.Errorf("datetime_settings without asking: %v", m["_embedded"])
	}
}
