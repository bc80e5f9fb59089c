package e2e

// A harness for the real dispatcher binary: built once per test run, started
// as a subprocess on the env's database and fakes, killed with SIGKILL or
// stopped with SIGTERM. A small round-robin reverse proxy in the test holds
// the env's PUBLIC_URL port, so amoCRM webhooks and Telegram webhook updates
// reach whichever processes are currently up, whatever their own ports.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/testkit"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// moduleRoot walks up from the working directory to the directory of go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// dispatcherBinary builds ./backend/cmd/dispatcher once per test binary run.
func dispatcherBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			binErr = err
			return
		}
		dir, err := os.MkdirTemp("", "amod-dispatcher-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "dispatcher")
		cmd := exec.Command("go", "build", "-o", binPath, "./backend/cmd/dispatcher")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build dispatcher: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is one dispatcher subprocess.
type proc struct {
	name string
	URL  string
	cmd  *exec.Cmd
	out  *testkit.Buffer
	done chan struct{}
	err  error // Wait's result, valid after done
}

// procEnv is the environment (*env).start gives an in-process backend, for
// a subprocess listening on port with the env's public URL.
func (e *env) procEnv(port int, extra map[string]string) []string {
	vars := e.backendVars(port)
	for k, v := range extra {
		vars[k] = v
	}
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := vars[k]; ours || strings.HasPrefix(k, "TELEGRAM_") || strings.HasPrefix(k, "AMOCRM_") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	return out
}

// startProc starts a dispatcher subprocess on a fresh port and waits until
// /readyz answers 200.
func (e *env) startProc(t testing.TB, name string, extra map[string]string) *proc {
	t.Helper()
	p, err := e.startProcErr(t, name, extra)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startProcErr is startProc for goroutines other than the test's.
func (e *env) startProcErr(t testing.TB, name string, extra map[string]string) (*proc, error) {
	bin := dispatcherBinary(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		p := &proc{name: name, URL: fmt.Sprintf("http://127.0.0.1:%d", port), out: &testkit.Buffer{}, done: make(chan struct{})}
		p.cmd = exec.Command(bin, "serve")
		p.cmd.Env = e.procEnv(port, extra)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %v", name, err)
		}
		go func() { p.err = p.cmd.Wait(); close(p.done) }()
		t.Cleanup(func() {
			p.kill()
			if t.Failed() {
				t.Logf("--- %s output (tail) ---\n%s", p.name, tail(p.out.String(), 150))
			}
		})
		if err := p.waitReady(30 * time.Second); err != nil {
			lastErr = err
			p.kill()
			// The port may have been taken between freePort and listen.
			if strings.Contains(p.out.String(), "address already in use") {
				continue
			}
			return nil, fmt.Errorf("%s not ready: %v\n%s", name, err, tail(p.out.String(), 100))
		}
		return p, nil
	}
	return nil, fmt.Errorf("%s not ready: %v", name, lastErr)
}

func (p *proc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		resp, err := client.Get(p.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("timed out waiting for /readyz")
}

// kill sends SIGKILL and waits for the process to be gone (idempotent).
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a graceful exit (SIGKILL after 30 s).
func (p *proc) stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited after SIGTERM: %v", p.name, p.err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s ignored SIGTERM for 30 s", p.name)
		p.kill()
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// rrProxy listens on the env's public port and spreads requests round-robin
// over the current targets; with none reachable it answers 502, as a load
// balancer in front of a dead backend would.
type rrProxy struct {
	srv     *http.Server
	mu      sync.Mutex
	targets []*url.URL
	next    atomic.Uint64
	rp      *httputil.ReverseProxy
	served  sync.Map // target host -> *atomic.Int64
}

func (e *env) newProxy(t testing.TB) *rrProxy {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", e.firstPort)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("proxy listen on the public port: %v", err)
	}
	p := &rrProxy{}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 10 * time.Second
	p.rp = &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(r *httputil.ProxyRequest) {
			target := r.In.Context().Value(targetKey{}).(*url.URL)
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: p}
	go func() { _ = p.srv.Serve(ln) }() // ErrServerClosed at cleanup
	e.started = true                    // the public port is taken: in-process backends get their own
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.srv.Shutdown(ctx)
		tr.CloseIdleConnections()
	})
	return p
}

type targetKey struct{}

func (p *rrProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	ts := p.targets
	p.mu.Unlock()
	if len(ts) == 0 {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	target := ts[int(p.next.Add(1)-1)%len(ts)]
	c, _ := p.served.LoadOrStore(target.Host, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
}

// set replaces the targets.
func (p *rrProxy) set(procs ...*proc) {
	var ts []*url.URL
	for _, pr := range procs {
		u, _ := url.Parse(pr.URL)
		ts = append(ts, u)
	}
	p.mu.Lock()
	p.targets = ts
	p.mu.Unlock()
}

// servedBy is how many requests the proxy passed to the process.
func (p *rrProxy) servedBy(pr *proc) int64 {
	u, _ := url.Parse(pr.URL)
	if c, ok := p.served.Load(u.Host); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}
