// Command widgetpack checks the amoCRM widget folder and packs it:
//
//	go run ./backend/cmd/widgetpack -out widget.zip -backend-url https://dispatch.example.com \
//	    -support-email help@example.com -support-link https://example.com/help
//
// -backend-url replaces {{BACKEND_URL}} in widget/config.js. Without it the
// archive keeps the placeholder and the widget says it is not configured.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/amodispatch/amodispatch/backend/internal/widgetcheck"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "widgetpack:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("widgetpack", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "widget", "the widget folder")
	out := fl.String("out", "widget.zip", "the archive to write")
	backendURL := fl.String("backend-url", "", "the backend's public base URL, written into config.js")
	checkOnly := fl.Bool("check", false, "only check the folder, write nothing")
	local := fl.Bool("local", false, "allow an http:// backend URL (local testing only)")
	var support widgetcheck.Support
	fl.StringVar(&support.Email, "support-email", "", "your support e-mail, shown in amoCRM's marketplace card")
	fl.StringVar(&support.Link, "support-link", "", "your support page (https), shown in amoCRM's marketplace card")
	if err := fl.Parse(args); err != nil {
		return err
	}
	// amoCRM serves its pages over https, and the browser blocks the widget's
	// calls to an http:// backend as mixed content: such an archive would
	// install and then fail on every page.
	if strings.HasPrefix(strings.ToLower(*backendURL), "http://") && !*local {
		return fmt.Errorf("-backend-url %s: amoCRM pages are https and browsers block calls to http:// from them; use the https address (or -local for local testing)", *backendURL)
	}
	fsys := os.DirFS(*dir)
	if *checkOnly {
		if err := widgetcheck.Check(fsys); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", *dir)
		return nil
	}
	var buf bytes.Buffer
	if err := widgetcheck.Pack(fsys, &buf, *backendURL, support); err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	if *backendURL == "" {
		fmt.Fprintln(stderr, "widgetpack: warning: no -backend-url; the widget will report that it is not configured")
	}
	fmt.Fprintf(stdout, "%s: %d bytes\n", *out, buf.Len())
	return nil
}
