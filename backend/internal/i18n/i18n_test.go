package i18n

import (
	"sort"
	"strings"
	"testing"
)

func TestCatalogParity(t *testing.T) {
	ru, en := Keys("ru"), Keys("en")
	sort.Strings(ru)
	sort.Strings(en)
	if strings.Join(ru, ",") != strings.Join(en, ",") {
		t.Fatalf("ru and en keys differ:\nru=%v\nen=%v", ru, en)
	}
	for _, k := range ru {
		if strings.Count(T("ru", k), "%") != strings.Count(T("en", k), "%") {
			t.Errorf("%s: placeholders differ between ru and en", k)
		}
	}
}

func TestLangFallback(t *testing.T) {
	if Lang("en-US") != "en" || Lang("de") != "ru" || Lang("") != "ru" {
		t.Fatal("language normalisation")
	}
	if T("de", "link.taken") != T("ru", "link.taken") {
		t.Fatal("unknown language must fall back to Russian")
	}
}
