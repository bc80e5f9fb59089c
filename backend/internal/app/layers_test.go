package app

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const internal = "github.com/amodispatch/amodispatch/backend/internal/"

// ours lists each of the module's packages with the module packages it
// imports: directly (direct) and at any depth (deps), by short name.
func ours(t *testing.T) (direct, deps map[string][]string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports ","}}|{{join .Deps ","}}`,
		"github.com/amodispatch/amodispatch/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	short := func(list string) []string {
		var s []string
		for _, p := range strings.Split(list, ",") {
			if name, ok := strings.CutPrefix(p, internal); ok {
				s = append(s, name)
			}
		}
		return s
	}
	direct, deps = map[string][]string{}, map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(line, "|")
		name, ok := strings.CutPrefix(parts[0], internal)
		if !ok {
			name = parts[0]
		}
		direct[name], deps[name] = short(parts[1]), short(parts[2])
	}
	return direct, deps
}

// The dependency rules of the README's code map. They keep a change local:
// the domain moves nothing else, and an adapter can be replaced alone.
func TestDependencyRules(t *testing.T) {
	direct, deps := ours(t)
	for _, p := range []string{"dispatch", "telegram", "amocrm", "store", "flow", "service", "tgbot", "httpapi", "app", "testkit"} {
		if _, ok := direct[p]; !ok {
			t.Fatalf("package %s not listed: the rules below would pass vacuously", p)
		}
	}
	// Packages that must not depend on any package of ours, at any depth.
	for _, p := range []string{"dispatch", "telegram", "amocrm", "fakeamocrm", "faketelegram", "i18n", "secret", "testkit"} {
		if len(deps[p]) > 0 {
			t.Errorf("%s depends on %v; it must import nothing of ours", p, deps[p])
		}
	}
	// Adapters do not import one another (tgbot and store share the inbox
	// through app, not an import).
	adapters := []string{"store", "amocrm", "telegram", "httpapi", "tgbot"}
	for _, a := range adapters {
		for _, imp := range direct[a] {
			if imp != a && slices.Contains(adapters, imp) {
				t.Errorf("adapter %s imports adapter %s", a, imp)
			}
		}
	}
	// Use cases do not import each other or what calls them.
	for _, uc := range []string{"flow", "service"} {
		for _, imp := range direct[uc] {
			if slices.Contains([]string{"flow", "service", "tgbot", "httpapi", "app", "sandbox"}, imp) && imp != uc {
				t.Errorf("use case %s imports %s", uc, imp)
			}
		}
	}
	// testkit is for tests: go list's Imports and Deps leave test files out,
	// so any package reaching it here is production code importing it.
	for p, ds := range deps {
		if slices.Contains(ds, "testkit") {
			t.Errorf("%s depends on testkit; only tests may import it", p)
		}
	}
	// app wires; only the command imports it.
	for p, imps := range direct {
		if slices.Contains(imps, "app") && p != "github.com/amodispatch/amodispatch/backend/cmd/dispatcher" {
			t.Errorf("%s imports app", p)
		}
	}
}
