package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPsqlSimpleQuery(t *testing.T) {
	psql := requireTool(t, "psql")
	g := sharedGateway(t)
	app := uniq("psql_simple")
	r := run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", app), nil, psql,
		"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "select 'hello-'||'psql' as greet, 41+1 as answer")
	if r.Code != 0 {
		t.Fatalf("psql -c: %s", r)
	}
	if got := strings.TrimSpace(r.Stdout); got != "hello-psql|42" {
		t.Errorf("psql printed %q, want %q", got, "hello-psql|42")
	}

	s, ev := g.waitSession(t, app)
	if s.User != "alice" || s.Target != "pg" {
		t.Errorf("session user/target = %q/%q, want alice/pg", s.User, s.Target)
	}
	if s.Type != "" && s.Type != "postgres" {
		t.Errorf("session type = %q, want postgres", s.Type)
	}
	start := ev[0]
	if start.str("user") != "alice" || start.str("target") != "pg" || start.str("role") != "user" {
		t.Errorf("session.start data = %v", start.Data)
	}
	if tls, _ := start.Data["tls"].(bool); !tls {
		t.Errorf("psql's default sslmode=prefer should have negotiated TLS; session.start tls = %v", start.Data["tls"])
	}
	q := mustQuery(t, ev, "select 'hello-'||'psql'")
	if p := q.str("protocol"); p != "simple" {
		t.Errorf("query protocol = %q, want simple", p)
	}
	res := ofType(ev, "result")
	if len(res) == 0 || res[0].str("tag") != "SELECT 1" || res[0].num("rows") != 1 {
		t.Errorf("result events = %+v, want tag SELECT 1 rows 1", res)
	}
	if n := sumNum(ev, "rows", "count"); n != 1 {
		t.Errorf("rows events count %d rows, want 1", n)
	}
	if rows := ofType(ev, "rows"); len(rows) > 0 && !strings.Contains(fmt.Sprint(rawRows(rows)), "hello-psql") {
		t.Errorf("rows event does not hold the value hello-psql: %v", rawRows(rows))
	}
	if r := endReason(ev); r != "client_terminated" {
		t.Errorf("end reason = %q, want client_terminated (psql sends Terminate)", r)
	}
	if s.EndReason != "" && s.EndReason != "client_terminated" {
		t.Errorf("listed end_reason = %q, want client_terminated", s.EndReason)
	}
}

func rawRows(ev []Event) []string {
	var out []string
	for _, e := range ev {
		for _, r := range e.Rows {
			out = append(out, string(r))
		}
	}
	return out
}

func TestPsqlScriptWithError(t *testing.T) {
	psql := requireTool(t, "psql")
	g := sharedGateway(t)
	app := uniq("psql_script")
	script := `create temp table e2e_script (id int primary key, name text);
insert into e2e_script values (1, 'one'), (2, 'two'), (3, 'three');
select count(*) as n from e2e_script;
select * from e2e_no_such_table_xyz;
update e2e_script set name = 'TWO' where id = 2;
select name from e2e_script where id = 2;
`
	f := filepath.Join(t.TempDir(), "script.sql")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", app), nil, psql, "-X", "-A", "-t", "-f", f)
	if r.Code != 0 { // without ON_ERROR_STOP psql goes on after an error and exits 0
		t.Fatalf("psql -f: %s", r)
	}
	if !strings.Contains(r.Stderr, "e2e_no_such_table_xyz") || !strings.Contains(r.Stderr, "does not exist") {
		t.Errorf("psql stderr lacks the error for the missing table: %q", r.Stderr)
	}
	out := strings.Fields(r.Stdout)
	if strings.Join(out, " ") != "CREATE TABLE INSERT 0 3 3 UPDATE 1 TWO" && !strings.Contains(r.Stdout, "TWO") {
		t.Errorf("psql stdout = %q", r.Stdout)
	}

	_, ev := g.waitSession(t, app)
	for _, want := range []string{"create temp table e2e_script", "insert into e2e_script", "select count(*)", "e2e_no_such_table_xyz", "update e2e_script", "select name from e2e_script"} {
		mustQuery(t, ev, want)
	}
	errs := ofType(ev, "error")
	if len(errs) != 1 || errs[0].str("code") != "42P01" || !strings.Contains(errs[0].str("message"), "e2e_no_such_table_xyz") {
		t.Errorf("error events = %+v, want one 42P01 about e2e_no_such_table_xyz", errs)
	}
	tags := map[string]bool{}
	for _, e := range ofType(ev, "result") {
		tags[e.str("tag")] = true
	}
	for _, want := range []string{"CREATE TABLE", "INSERT 0 3", "UPDATE 1", "SELECT 1"} {
		if !tags[want] {
			t.Errorf("no result with tag %q; tags %v", want, tags)
		}
	}
	// The statements after the error were recorded after it.
	var errSeq, updSeq uint64
	errSeq = errs[0].Seq
	if u, ok := findQuery(ev, "update e2e_script"); ok {
		updSeq = u.Seq
	}
	if len(errs) == 1 && updSeq < errSeq {
		t.Errorf("update (seq %d) recorded before the error (seq %d)", updSeq, errSeq)
	}
}

func TestPsqlCopyBothWays(t *testing.T) {
	psql := requireTool(t, "psql")
	g := sharedGateway(t)
	app := uniq("psql_copy")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	out := filepath.Join(dir, "out.csv")
	const n = 5000
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d,row-%d,\"quoted, %d\"\n", i, i, i*7)
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`create temp table e2e_copy (id int, name text, note text);
\copy e2e_copy from '%s' csv
select count(*) from e2e_copy;
\copy (select * from e2e_copy order by id) to '%s' csv
`, in, out)
	r := run(2*time.Minute, g.psqlEnv("alice", alicePassword, "pg", app), strings.NewReader(script), psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1")
	if r.Code != 0 {
		t.Fatalf("psql \\copy: %s", r)
	}
	if !strings.Contains(r.Stdout, fmt.Sprint(n)) {
		t.Errorf("count after \\copy from: stdout %q, want %d", r.Stdout, n)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(got), "\n"); c != n {
		t.Errorf("\\copy to wrote %d rows, want %d", c, n)
	}
	if string(got) != b.String() {
		t.Errorf("\\copy round trip changed the data (first bytes %q)", clip(string(got), 200))
	}

	_, ev := g.waitSession(t, app)
	mustQuery(t, ev, "COPY")
	tags := map[string]bool{}
	for _, e := range ofType(ev, "result") {
		tags[e.str("tag")] = true
	}
	if !tags[fmt.Sprintf("COPY %d", n)] {
		t.Errorf("no result tagged COPY %d; tags %v", n, tags)
	}
	if in := sumNum(ev, "copy.in", "bytes"); in != int64(b.Len()) {
		t.Errorf("copy.in events carry %d bytes, the file has %d", in, b.Len())
	}
	if o := sumNum(ev, "copy.out", "bytes"); o != int64(len(got)) {
		t.Errorf("copy.out events carry %d bytes, psql wrote %d", o, len(got))
	}
}

func TestPsqlLargeResult(t *testing.T) {
	psql := requireTool(t, "psql")
	g := sharedGateway(t)
	app := uniq("psql_large")
	const n = 200000
	// FETCH_COUNT=0 (the default): psql reads the whole result in one go. Output goes to
	// /dev/null; psql's own "(N rows)" footer is printed to the terminal by \echo of ROW_COUNT.
	script := fmt.Sprintf("\\o /dev/null\nselect g, md5(g::text) from generate_series(1,%d) g;\n\\o\n\\echo rows=:ROW_COUNT\n", n)
	r := run(3*time.Minute, g.psqlEnv("alice", alicePassword, "pg", app), strings.NewReader(script), psql, "-X", "-v", "ON_ERROR_STOP=1")
	if r.Code != 0 {
		t.Fatalf("psql large result: %s", r)
	}
	if !strings.Contains(r.Stdout, fmt.Sprintf("rows=%d", n)) {
		t.Errorf("psql reports %q, want rows=%d", strings.TrimSpace(r.Stdout), n)
	}
	_, ev := g.waitSession(t, app)
	mustQuery(t, ev, "generate_series(1,200000)")
	if c := sumNum(ev, "rows", "count"); c != n {
		t.Errorf("rows events hold %d rows, want %d", c, n)
	}
	var found bool
	for _, e := range ofType(ev, "result") {
		if e.str("tag") == fmt.Sprintf("SELECT %d", n) && e.num("rows") == n {
			found = true
		}
	}
	if !found {
		t.Errorf("no result event with tag SELECT %d and rows %d", n, n)
	}
}
