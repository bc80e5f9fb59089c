package app

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/testkit"
)

// `dispatcher demo` prints the sandbox's URL, serves it, and stops
// everything when its context ends (as on Ctrl-C), removing its temporary
// data folder.
func TestDemoCommand(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the demo's temporary data folder lands here
	out := &testkit.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"demo", "-addr", "127.0.0.1:0"}, func(string) string { return "" }, out)
	}()

	urlRe := regexp.MustCompile(`Sandbox: (http://127\.0\.0\.1:\d+/)`)
	var url string
	deadline := time.Now().Add(60 * time.Second)
	for url == "" {
		if m := urlRe.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("demo stopped before serving: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sandbox URL printed:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(url + "sandbox/state")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Поиск исполнителя") {
		t.Fatalf("sandbox state: HTTP %d: %s", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stopped with %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop")
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("the sandbox page still answers after the stop")
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the demo left %d entries in the temporary folder (%s…)", len(left), left[0].Name())
	}
}
