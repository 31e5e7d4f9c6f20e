package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPgbench(t *testing.T) {
	pgbench := requireTool(t, "pgbench")
	g := sharedGateway(t)
	const db = "airlock_e2e_pgbench"
	ensureDatabase(t, db)
	app := uniq("pgbench")
	// "<target>/<database>" reaches another database of the same target.
	env := g.psqlEnv("alice", alicePassword, "pg/"+db, app)
	r := run(5*time.Minute, env, nil, pgbench, "-i", "-s", "1", "-q")
	if r.Code != 0 {
		t.Fatalf("pgbench -i -s 1: %s", r)
	}
	r = run(10*time.Minute, env, nil, pgbench, "-c", "4", "-j", "2", "-t", "200", "-n")
	if r.Code != 0 {
		t.Fatalf("pgbench -c 4 -j 2 -t 200: %s", r)
	}
	if m := regexp.MustCompile(`number of transactions actually processed: (\d+)/(\d+)`).FindStringSubmatch(r.Stdout); m == nil || m[1] != "800" {
		t.Errorf("pgbench did not process 800 transactions: %s", r.Stdout)
	}
	t.Logf("pgbench through the gateway:\n%s", r.Stdout)

	// init (1 session) + run (4 clients, plus pgbench's own setup connection).
	ss := g.waitSessions(t, app, 5, true)
	var updates, sessionsWithTx int
	for _, s := range ss {
		if s.User != "alice" || s.Target != "pg" {
			t.Errorf("session %s user/target %q/%q", s.ID, s.User, s.Target)
		}
		ev := g.events(t, g.adminToken(t), s.ID)
		checkChain(t, ev)
		if db := ev[0].str("database"); db != "" && db != "airlock_e2e_pgbench" {
			t.Errorf("session %s database %q", s.ID, db)
		}
		n := 0
		for _, q := range ofType(ev, "query") {
			if strings.Contains(strings.ToUpper(q.str("text")), "UPDATE PGBENCH_ACCOUNTS") {
				n++
			}
		}
		updates += n
		if n > 0 {
			sessionsWithTx++
		}
		if r := endReason(ev); r != "client_terminated" {
			t.Errorf("session %s ended with %q, want client_terminated", s.ID, r)
		}
	}
	if updates != 800 || sessionsWithTx != 4 {
		t.Errorf("recorded %d 'UPDATE pgbench_accounts' in %d sessions, want 800 in 4", updates, sessionsWithTx)
	}
}

// dumpFilter drops the lines of a pg_dump that differ from run to run.
func dumpFilter(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "--") || strings.HasPrefix(l, `\restrict`) || strings.HasPrefix(l, `\unrestrict`) || strings.TrimSpace(l) == "" {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestPgDump(t *testing.T) {
	pgdump := requireTool(t, "pg_dump")
	g := sharedGateway(t)
	// A table with data, so that the full dump streams COPY ... TO STDOUT.
	dc := directConn(t, "test")
	ctx := context.Background()
	if _, err := dc.Exec(ctx, `create table if not exists e2e_dump_sample (id int primary key, name text);
		insert into e2e_dump_sample select g, 'dump-row-'||g from generate_series(1,1000) g on conflict do nothing`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Other packages' tests may change database test's schema while this runs: a difference
	// counts only if it is there on three tries in a row.
	var via cmdResult
	appS := uniq("pgdump_schema")
	for try := 1; ; try++ {
		direct := run(5*time.Minute, append(cleanEnv(), "PGHOST=127.0.0.1", "PGPORT=5432", "PGUSER=postgres"), nil, pgdump, "-s", "test")
		if direct.Code != 0 {
			t.Fatalf("direct pg_dump -s: %s", direct)
		}
		via = run(5*time.Minute, g.psqlEnv("alice", alicePassword, "pg", appS), nil, pgdump, "-s")
		if via.Code != 0 {
			t.Fatalf("pg_dump -s through the gateway: %s", via)
		}
		a, b := dumpFilter(direct.Stdout), dumpFilter(via.Stdout)
		if a == b {
			break
		}
		if try == 3 {
			os.WriteFile(filepath.Join(dir, "direct.sql"), []byte(direct.Stdout), 0o644)
			os.WriteFile(filepath.Join(dir, "gateway.sql"), []byte(via.Stdout), 0o644)
			t.Errorf("schema dump through the gateway differs from the direct one (%d vs %d bytes); diff %s/direct.sql %s/gateway.sql", len(a), len(b), dir, dir)
			break
		}
	}
	if !strings.Contains(via.Stdout, "CREATE TABLE public.e2e_dump_sample") {
		t.Errorf("schema dump lacks e2e_dump_sample")
	}

	appF := uniq("pgdump_full")
	full := filepath.Join(dir, "full.sql")
	r := run(5*time.Minute, g.psqlEnv("alice", alicePassword, "pg", appF), nil, pgdump, "-f", full)
	if r.Code != 0 {
		t.Fatalf("full pg_dump through the gateway: %s", r)
	}
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "COPY public.e2e_dump_sample") || !strings.Contains(string(b), "1000\tdump-row-1000\n") {
		t.Errorf("full dump lacks the data of e2e_dump_sample")
	}

	for _, s := range g.waitSessions(t, appS, 1, true) {
		ev := g.events(t, g.adminToken(t), s.ID)
		checkChain(t, ev)
		if len(ofType(ev, "query")) < 5 {
			t.Errorf("schema dump session recorded only %d queries", len(ofType(ev, "query")))
		}
	}
	var ev []Event
	_, ev = g.waitSession(t, appF)
	mustQuery(t, ev, "COPY public.e2e_dump_sample")
	if n := sumNum(ev, "copy.out", "bytes"); n < int64(len("1000\tdump-row-1000\n")*1000/2) {
		t.Errorf("full dump session recorded %d copy.out bytes", n)
	}
	t.Log(fmt.Sprintf("dump sizes: schema %d bytes, full %d bytes", len(via.Stdout), len(b)))
}
