package sandbox

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"
)

const usage = `usage: dispatcher demo [-addr 127.0.0.1:8090] [-data DIR]
  Runs the backend with a simulated amoCRM and Telegram in this process and
  serves a page that shows both sides. Ctrl-C stops everything.`

// Run is the demo command: it starts the sandbox, prints its URL and runs
// until ctx ends or SIGINT/SIGTERM arrives. DEMO_ADDR and DEMO_DATA_DIR are
// the defaults of -addr and -data; LOG_LEVEL sets the backend's log level
// (default warn), its lines going to stdout.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, start StartFunc) error {
	fl := flag.NewFlagSet("demo", flag.ContinueOnError)
	fl.SetOutput(stdout)
	fl.Usage = func() { fmt.Fprintln(stdout, usage) }
	addr := fl.String("addr", def(getenv("DEMO_ADDR"), "127.0.0.1:8090"), "where the sandbox page listens")
	data := fl.String("data", getenv("DEMO_DATA_DIR"), "keep the backend's SQLite database in this folder (default: a temporary one, removed at exit)")
	if err := fl.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("demo: unexpected argument %q\n%s", fl.Arg(0), usage)
	}
	level := def(getenv("LOG_LEVEL"), "warn")
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("demo: LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: lv}))

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(stdout, "Starting the sandbox: backend, simulated amoCRM and Telegram, demo account…")
	sb, err := Start(ctx, Options{Addr: *addr, DataDir: *data, LogLevel: level, Log: log, Start: start})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Sandbox: %s\n", sb.URL())
	if *data != "" {
		fmt.Fprintf(stdout, "The backend's database stays in %s.\n", *data)
	}
	fmt.Fprintln(stdout, "Ctrl-C stops it.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "Stopping the sandbox…")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return sb.Close(shutdownCtx)
}

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}
