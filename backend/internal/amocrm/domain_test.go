package amocrm

import (
	"errors"
	"testing"
)

func TestNormalizeDomain(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means rejected
	}{
		{"gastroincubator.amocrm.ru", "gastroincubator.amocrm.ru"},
		{"Example.AmoCRM.ru", "example.amocrm.ru"},
		{"  my-shop1.amocrm.com ", "my-shop1.amocrm.com"},
		{"subdomain.kommo.com", "subdomain.kommo.com"},
		{"https://subdomain.kommo.com", "subdomain.kommo.com"},
		{"https://subdomain.amocrm.ru/", "subdomain.amocrm.ru"},
		{"123.amocrm.ru", "123.amocrm.ru"},

		{"", ""},
		{"evil.com", ""},
		{"amocrm.ru", ""},
		{".amocrm.ru", ""},
		{"x.amocrm.ru.evil.com", ""},
		{"evilamocrm.ru", ""},
		{"a.b.amocrm.ru", ""},
		{"x.amocrm.ru:443", ""},
		{"x.amocrm.ru:8080", ""},
		{"x.amocrm.ru/path", ""},
		{"https://x.amocrm.ru/api", ""},
		{"x.amocrm.ru?x=1", ""},
		{"x.amocrm.ru#frag", ""},
		{"user@x.amocrm.ru", ""},
		{"https://user:pass@x.amocrm.ru", ""},
		{"evil.com@x.amocrm.ru", ""},
		{"evil.com/x.amocrm.ru", ""},
		{"evil.com#.amocrm.ru", ""},
		{"http://x.amocrm.ru", ""},
		{"x.amocrm.ru.", ""},
		{"x_y.amocrm.ru", ""},
		{"x%2e.amocrm.ru", ""},
		{"x y.amocrm.ru", ""},
		{"x.kommo.ru", ""},
		{"x.amocrm.org", ""},
		{"xn--80ak6aa92e.amocrm.ru", "xn--80ak6aa92e.amocrm.ru"},
		{"привет.amocrm.ru", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeDomain(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("NormalizeDomain(%q) = %q, want error", tt.in, got)
				}
				if !errors.Is(err, ErrInvalidDomain) {
					t.Fatalf("error %v does not match ErrInvalidDomain", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}
