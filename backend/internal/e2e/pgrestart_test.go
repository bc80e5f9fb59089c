package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// pgCluster is a PostgreSQL instance of the test's own, so that it can be
// stopped and started without disturbing the shared server other tests use.
type pgCluster struct {
	t          testing.TB
	bin, dir   string
	port       int
	asPostgres bool // run the server tools as the postgres user (root may not)
}

// newPGCluster initialises a cluster in a fresh directory and starts it. The
// server tools missing is a failure under REQUIRE_POSTGRES=1 and a loud skip
// otherwise.
func newPGCluster(t testing.TB) *pgCluster {
	t.Helper()
	bin := pgBinDir()
	if bin == "" {
		if os.Getenv("REQUIRE_POSTGRES") == "1" {
			t.Fatal("REQUIRE_POSTGRES=1 but the PostgreSQL server tools (initdb, pg_ctl) were not found")
		}
		t.Log("LEFT OUT: PostgreSQL server tools (initdb, pg_ctl) not found; the restart test did not run")
		t.Skip("no initdb/pg_ctl")
	}
	dir, err := os.MkdirTemp("", "amod-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &pgCluster{t: t, bin: bin, dir: filepath.Join(dir, "data"), port: freePort(t), asPostgres: os.Geteuid() == 0}
	if c.asPostgres {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and there is no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	c.run("initdb", "-D", c.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	c.start()
	t.Cleanup(func() { c.pgctl("stop", "-m", "immediate") })
	return c
}

func pgBinDir() string {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return ""
	}
	return filepath.Dir(matches[len(matches)-1])
}

func (c *pgCluster) run(tool string, args ...string) string {
	c.t.Helper()
	name := filepath.Join(c.bin, tool)
	if c.asPostgres {
		args = append([]string{"-u", "postgres", "--", name}, args...)
		name = "runuser"
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = filepath.Dir(c.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
	return string(out)
}

func (c *pgCluster) pgctl(args ...string) {
	c.t.Helper()
	c.run("pg_ctl", append([]string{"-D", c.dir, "-w", "-t", "60"}, args...)...)
}

func (c *pgCluster) start() {
	c.t.Helper()
	c.pgctl("start", "-l", filepath.Join(filepath.Dir(c.dir), "server.log"),
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off", c.port, filepath.Dir(c.dir)))
}

// stop shuts the server down the way a restart or failover does: sessions
// are cut, in-flight transactions roll back.
func (c *pgCluster) stop() { c.t.Helper(); c.pgctl("stop", "-m", "fast") }

func (c *pgCluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// TestPostgresRestart: the database goes away for a while under a running
// dispatcher binary. /readyz says so, nothing answered with 2xx is lost, and
// once the database is back the process carries on without a restart of its
// own: the press made during the outage takes the order, the deal whose
// webhook was refused is posted by the reconciler, and every write happens
// once.
func TestPostgresRestart(t *testing.T) {
	pg := newPGCluster(t)
	ctx := context.Background()
	e := newEnv(t, "postgres", withDatabaseURL(pg.url()), withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
	proxy := e.newProxy(t)
	p := e.startProc(t, "dispatcher", map[string]string{"RECONCILE_INTERVAL": "10s"})
	proxy.set(p)
	db := dbtest.OpenAt(t, e.dbURL, e.dir, nil)
	tn := setupProcTenant(t, e, db, 49200000, "pgrestart", 1)
	pp := tn.pipes[0]
	posted := func(leadID int64) (dispatch.Order, bool) {
		o, err := db.ActiveOrder(ctx, tn.acc.ID, leadID)
		return o, err == nil && o.MessageID != 0
	}

	l1 := tn.newLead(t, e, pp, "До перезапуска базы")
	if err := e.amo.MoveLead(tn.acc.ID, l1.ID, pp.search); err != nil {
		t.Fatal(err)
	}
	eventually(t, "post 1 recorded", func() bool { _, ok := posted(l1.ID); return ok })
	o1, _ := posted(l1.ID)
	post1, _ := e.tg.Message(pp.group.ID, o1.MessageID)

	pg.stop()
	readyz := func() int {
		resp, err := http.Get(p.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually(t, "/readyz not ready", func() bool { return readyz() == http.StatusServiceUnavailable })
	if code, _ := get(t, p.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d while the database is down: the process itself is alive", code)
	}

	// During the outage: an executor presses "Take" (Telegram keeps the update
	// until the backend stores it) and a deal moves to the search stage (the
	// webhook cannot be stored, so it is refused, not acknowledged).
	taker := e.tg.AddUser("Во время сбоя", "", "outage_taker")
	q, err := e.tg.PressButton(pp.group.ID, post1.MessageID, taker.ID, buttonsOf(t, post1)[1].CallbackData)
	if err != nil {
		t.Fatal(err)
	}
	l2 := tn.newLead(t, e, pp, "Во время сбоя базы")
	if err := e.amo.MoveLead(tn.acc.ID, l2.ID, pp.search); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the webhook refused", func() bool {
		for _, d := range e.amo.Deliveries(tn.acc.ID) {
			if d.LeadID == l2.ID && d.StatusCode >= 500 {
				return true
			}
		}
		return false
	})
	for _, d := range e.amo.Deliveries(tn.acc.ID) {
		if d.LeadID == l2.ID && d.StatusCode >= 200 && d.StatusCode < 300 {
			t.Fatalf("a webhook was acknowledged while the database was down: %+v", d)
		}
	}
	time.Sleep(3 * time.Second) // long enough for every loop to meet the outage

	pg.start()
	eventually(t, "/readyz ready again", func() bool { return readyz() == http.StatusOK })

	eventuallyFor(t, 45*time.Second, "the press during the outage took the order", func() bool {
		o, err := db.Order(ctx, tn.acc.ID, o1.ID)
		return err == nil && o.Status == dispatch.OrderTaken && o.ExecutorID == taker.ID
	})
	if len(e.tg.CallbackAnswers(q)) > 1 {
		t.Fatalf("the press was answered %d times", len(e.tg.CallbackAnswers(q)))
	}
	eventuallyFor(t, 45*time.Second, "the deal whose webhook was refused posted by the reconciler", func() bool {
		_, ok := posted(l2.ID)
		return ok
	})
	eventuallyFor(t, 45*time.Second, "deal 1 written back, jobs idle", func() bool {
		return len(backendLeadUpdates(e, tn.acc.ID, l1.ID)) >= 1 && len(e.amo.Notes(tn.acc.ID, l1.ID)) >= 1 &&
			countJobs(t, db, pendingStates) == 0
	})
	if n := len(backendLeadUpdates(e, tn.acc.ID, l1.ID)); n != 1 {
		t.Fatalf("%d updates of deal 1, want 1", n)
	}
	if n := len(e.amo.Notes(tn.acc.ID, l1.ID)); n != 1 {
		t.Fatalf("%d notes on deal 1, want 1", n)
	}
	if n := len(orderPosts(e, pp.group.ID)); n != 2 {
		t.Fatalf("%d posts, want 2 (one per deal)", n)
	}
	m, _ := e.tg.Message(pp.group.ID, o1.MessageID)
	if !strings.Contains(m.Text, "@"+taker.Username) {
		t.Fatalf("post 1 does not name the executor: %s", m.Text)
	}
	p.stop(t)
}
