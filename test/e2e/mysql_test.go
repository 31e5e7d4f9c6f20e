package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
)

// The MySQL engine's end-to-end tests drive the stock mariadb client, mariadb-dump, sysbench and
// go-sql-driver/mysql through the gateway to the real MariaDB on 127.0.0.1:3306 (root, no
// password).

const myAddr = "127.0.0.1:3306"

// requireMySQL skips (or fails in CI) when MariaDB is not reachable, and makes sure database
// test exists.
func requireMySQL(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", "root@tcp("+myAddr+")/?multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		missing(t, "MariaDB/MySQL at %s not reachable: %v", myAddr, err)
		return nil
	}
	if _, err := db.Exec("create database if not exists test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// myTarget is the MariaDB target every MySQL test names "my".
func myTarget(name string) targetCfg {
	return targetCfg{Name: name, Type: "mysql", Address: myAddr, Raw: "    database: test\n    username: root\n    password: \"\"\n"}
}

// startMySQLGateway starts a gateway with a mysql listener and the targets given (default: my).
func startMySQLGateway(t *testing.T, cfg gwConfig) *gateway {
	t.Helper()
	requireMySQL(t)
	cfg.Listeners = append(cfg.Listeners, "mysql")
	if cfg.Targets == nil {
		cfg.Targets = []targetCfg{myTarget("my")}
	}
	return startGateway(t, cfg)
}

// mariadb runs the stock client against the gateway: TLS on (the gateway's certificate is
// self-signed, and the 10.11 client does not verify it unless told to), password on the
// command line.
func (g *gateway) mariadb(t testing.TB, user, password, db string, args ...string) cmdResult {
	t.Helper()
	bin := requireTool(t, "mariadb")
	base := []string{"--no-defaults", "-h", "127.0.0.1", "-P", fmt.Sprint(g.Port("mysql")), "--ssl",
		"-u", user, "-p" + password, "-D", db, "--batch", "--skip-column-names"}
	return run(2*time.Minute, cleanEnv(), nil, bin, append(base, args...)...)
}

// myDSN is a go-sql-driver DSN through the gateway; app becomes the session's application_name.
func (g *gateway) myDSN(user, password, db, app string, extra ...string) string {
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", fmt.Sprintf("127.0.0.1:%d", g.Port("mysql")), db
	cfg.TLSConfig = "skip-verify"
	cfg.ParseTime = true
	cfg.ConnectionAttributes = "program_name:" + app
	dsn := cfg.FormatDSN()
	for _, e := range extra {
		dsn += "&" + e
	}
	return dsn
}

func (g *gateway) myOpen(t testing.TB, user, password, db, app string, extra ...string) *sql.DB {
	t.Helper()
	d, err := sql.Open("mysql", g.myDSN(user, password, db, app, extra...))
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	t.Cleanup(func() { d.Close() })
	return d
}

// mySession waits for the one ended session whose query texts contain marker and returns it with
// its events (chain checked).
func (g *gateway) mySession(t testing.TB, marker string) (Session, []Event) {
	t.Helper()
	ss, evs := g.mySessions(t, marker)
	if len(ss) != 1 {
		t.Fatalf("%d sessions ran a query containing %q", len(ss), marker)
	}
	return ss[0], evs[0]
}

// mySessions waits until at least one ended session ran a query containing marker and returns
// all such sessions with their events (chains checked).
func (g *gateway) mySessions(t testing.TB, marker string) ([]Session, [][]Event) {
	t.Helper()
	tok := g.adminToken(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var found []Session
		var evs [][]Event
		for _, s := range g.sessions(t, tok, sessionFilter{}) {
			if s.Type != "mysql" || !s.ended() {
				continue
			}
			ev := g.events(t, tok, s.ID)
			for _, q := range queryTexts(ev) {
				if strings.Contains(q, marker) {
					checkChain(t, ev)
					found = append(found, s)
					evs = append(evs, ev)
					break
				}
			}
		}
		if len(found) > 0 {
			return found, evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ended mysql session ran a query containing %q", marker)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rowsOf returns the values of every recorded row, as strings (null as "NULL").
func rowsOf(ev []Event) [][]string {
	var out [][]string
	for _, e := range ofType(ev, "rows") {
		for _, raw := range e.Rows {
			var vals []any
			if err := jsonUnmarshal(raw, &vals); err != nil {
				continue
			}
			row := make([]string, len(vals))
			for i, v := range vals {
				switch x := v.(type) {
				case nil:
					row[i] = "NULL"
				case string:
					row[i] = x
				default:
					row[i] = fmt.Sprint(x)
				}
			}
			out = append(out, row)
		}
	}
	return out
}

func TestMySQLClient(t *testing.T) {
	g := startMySQLGateway(t, gwConfig{})
	m := uniq("myclient")

	// -e with several statements, a database after the target, and USE in the middle.
	r := g.mariadb(t, "alice", alicePassword, "my/test", "-e",
		fmt.Sprintf("select '%s' as marker, 42 as n; use mysql; select database(); select 1 from dual where 1 = 0", m))
	if r.Code != 0 {
		t.Fatalf("mariadb -e: %s", r)
	}
	if got := strings.Fields(r.Stdout); strings.Join(got, " ") != m+" 42 mysql" {
		t.Errorf("mariadb -e printed %q, want %q", r.Stdout, m+"\t42\nmysql")
	}
	s, ev := g.mySession(t, m)
	if s.User != "alice" || s.Target != "my" || s.EndReason != "client_terminated" {
		t.Errorf("session %+v: want alice on my, ended client_terminated", s)
	}
	start := ev[0]
	if start.str("target_type") != "mysql" || start.str("database") != "test" || start.Data["tls"] != true {
		t.Errorf("session.start = %v", start.Data)
	}
	q := mustQuery(t, ev, m)
	if q.str("protocol") != "text" {
		t.Errorf("query event %v: want protocol text", q.Data)
	}
	mustQuery(t, ev, "USE `mysql`")
	rows := rowsOf(ev)
	if len(rows) < 2 || strings.Join(rows[0], ",") != m+",42" {
		t.Errorf("recorded rows %q, want [%s 42] first", rows, m)
	}
	var results []Event
	for _, e := range ofType(ev, "result") {
		results = append(results, e)
		if e.num("duration_ns") <= 0 {
			t.Errorf("result %v has no duration", e.Data)
		}
	}
	if n := len(results); n < 4 {
		t.Errorf("%d result events, want one per statement (4+)", n)
	}
	if last := results[len(results)-1]; last.str("tag") != "SELECT" || last.num("rows") != 0 {
		t.Errorf("last result %v, want SELECT with 0 rows", last.Data)
	}

	// Interactive: statements on stdin, as typed at the prompt.
	m2 := uniq("myinteractive")
	bin := requireTool(t, "mariadb")
	r = run(time.Minute, cleanEnv(), strings.NewReader(fmt.Sprintf("select '%s';\nselect no_such_column;\nselect 2;\n", m2)), bin,
		"--no-defaults", "-h", "127.0.0.1", "-P", fmt.Sprint(g.Port("mysql")), "--ssl", "-u", "alice", "-p"+alicePassword,
		"-D", "my", "--force", "--skip-column-names")
	if !strings.Contains(r.Stdout, m2) || !strings.Contains(r.Stderr, "ERROR 1054") || !strings.Contains(r.Stdout, "2") {
		t.Errorf("interactive session: want the marker, ERROR 1054 and the last select: %s", r)
	}
	_, ev = g.mySession(t, m2)
	errs := ofType(ev, "error")
	if len(errs) != 1 || errs[0].str("code") != "1054" || errs[0].str("source") != "target" {
		t.Errorf("error events %v, want one 1054 from the target", errs)
	}
}

func TestMySQLRefusals(t *testing.T) {
	down := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	g := startMySQLGateway(t, gwConfig{Targets: []targetCfg{myTarget("my"),
		{Name: "mydown", Type: "mysql", Address: down, Raw: "    username: root\n"},
		{Name: "mybadlogin", Type: "mysql", Address: myAddr, Raw: "    username: airlock_no_such_user\n    password: x\n"},
		{Name: "pg", Address: pgAddr, Database: "test"}}})
	tests := []struct {
		name, user, password, db string
		code                     string
		msg                      string
	}{
		{"wrong password", "alice", "not-her-password", "my", "ERROR 1045", "Access denied"},
		{"unknown user", "mallory", alicePassword, "my", "ERROR 1045", "Access denied"},
		{"unknown target", "alice", alicePassword, "nosuchtarget", "ERROR 1049", "nosuchtarget"},
		{"not a mysql target", "alice", alicePassword, "pg", "ERROR 1049", "not mysql"},
		{"target down", "alice", alicePassword, "mydown", "ERROR 1429", "mydown"},
		{"unknown database on target", "alice", alicePassword, "my/no_such_db_here", "ERROR 1049", "no_such_db_here"},
		{"target refuses the gateway's login", "alice", alicePassword, "mybadlogin", "ERROR 1429", "refused the gateway's login"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.mariadb(t, tt.user, tt.password, tt.db, "-e", "select 1")
			if r.Code == 0 || !strings.Contains(r.Stderr, tt.code) || !strings.Contains(r.Stderr, tt.msg) {
				t.Errorf("want %s mentioning %q: %s", tt.code, tt.msg, r)
			}
		})
	}
	t.Run("failed logins audited with their reason", func(t *testing.T) {
		g.requireAudit(t, "login", map[string]string{"actor": "alice", "outcome": "denied", "protocol": "mysql", "target": "my", "reason": "bad_password"})
		g.requireAudit(t, "login", map[string]string{"actor": "mallory", "outcome": "denied", "protocol": "mysql", "reason": "unknown_user"})
	})
	t.Run("plaintext", func(t *testing.T) {
		r := run(time.Minute, cleanEnv(), nil, requireTool(t, "mariadb"), "--no-defaults", "-h", "127.0.0.1",
			"-P", fmt.Sprint(g.Port("mysql")), "--skip-ssl", "-u", "alice", "-p"+alicePassword, "-D", "my", "-e", "select 1")
		if r.Code == 0 || !strings.Contains(r.Stderr, "3159") || !strings.Contains(r.Stderr, "requires TLS") {
			t.Errorf("want ERROR 3159 (TLS required): %s", r)
		}
	})
	t.Run("go driver wrong password", func(t *testing.T) {
		db := g.myOpen(t, "alice", "wrong", "my", "refusal")
		err := db.Ping()
		var me *gomysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1045 {
			t.Errorf("ping with a wrong password: %v, want MySQL error 1045", err)
		}
	})
}

func TestMySQLGoDriver(t *testing.T) {
	direct := requireMySQL(t)
	g := startMySQLGateway(t, gwConfig{})
	tbl := fmt.Sprintf("airlock_my_%d", time.Now().UnixNano()%1e12)
	if _, err := direct.Exec(fmt.Sprintf(`create table test.%s (id int primary key, name varchar(40), born datetime(3),
		amount decimal(10,2), score double, big bigint unsigned, note text, flag tinyint)`, tbl)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Exec("drop table if exists test." + tbl) })
	m := uniq("mydrv")

	// A gateway token in the password field, prepared statements with parameters (the driver
	// prepares every query with arguments) and binary result rows.
	tok := g.token(t, "alice", alicePassword)
	db := g.myOpen(t, "alice", tok, "my", m)
	born := time.Date(2001, 2, 3, 4, 5, 6, 789000000, time.UTC)
	res, err := db.Exec("insert into "+tbl+" values (?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?)",
		1, "ada", born, "12.34", 1.5, uint64(18446744073709551615), nil, -3,
		2, m, born, "-0.50", -2.25, 7, "x", 1)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Errorf("insert affected %d rows, want 2", n)
	}
	stmt, err := db.Prepare("select id, name, born, amount, score, big, note, flag from " + tbl + " where id >= ? order by id")
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ { // the second execute reuses the bound types
		rows, err := stmt.Query(1)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id, flag int
			var name, amount string
			var b time.Time
			var score float64
			var big uint64
			var note sql.NullString
			if err := rows.Scan(&id, &name, &b, &amount, &score, &big, &note, &flag); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%d|%s|%s|%s|%g|%d|%v|%d", id, name, b.UTC().Format("2006-01-02 15:04:05.000"), amount, score, big, note.Valid, flag))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		want := []string{
			"1|ada|2001-02-03 04:05:06.789|12.34|1.5|18446744073709551615|false|-3",
			fmt.Sprintf("2|%s|2001-02-03 04:05:06.789|-0.50|-2.25|7|true|1", m),
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("round %d: rows\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	stmt.Close()
	// A statement error through the binary protocol.
	if _, err := db.Exec("insert into "+tbl+" (id) values (?)", 1); err == nil {
		t.Error("duplicate key insert succeeded")
	} else if me := (*gomysql.MySQLError)(nil); !errors.As(err, &me) || me.Number != 1062 {
		t.Errorf("duplicate key: %v, want 1062", err)
	}
	// The target re-sends a statement's column definitions with each execute, which the gateway
	// decodes once while they stay the same; after an ALTER TABLE they change (a column first:
	// the binary rows' layout shifts), and rows must be read and recorded with the new ones.
	star, err := db.Prepare("select * from " + tbl + " where id = ?")
	if err != nil {
		t.Fatal(err)
	}
	for round, alter := range []string{"", "alter table test." + tbl + " modify flag bigint", "alter table test." + tbl + " add column extra int not null default 5 first"} {
		if alter != "" {
			if _, err := direct.Exec(alter); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := star.Query(1)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		for i := range vals {
			vals[i] = new(sql.RawBytes)
		}
		var got []string
		for rows.Next() {
			if err := rows.Scan(vals...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				got = append(got, string(*v.(*sql.RawBytes)))
			}
		}
		rows.Close()
		want := "1,ada"
		if round == 2 {
			want = "5,1,ada"
		}
		if g := strings.Join(got, ","); !strings.HasPrefix(g, want+",") {
			t.Errorf("select * round %d: columns %v, row %s, want it to start with %s", round, cols, g, want)
		}
	}
	star.Close()
	db.Close()

	s, ev := g.mySession(t, tbl+" values")
	if ev[0].str("auth_method") != "token" || ev[0].str("application_name") != m {
		t.Errorf("session.start %v: want auth_method token, application_name %s", ev[0].Data, m)
	}
	if s.EndReason != "client_terminated" {
		t.Errorf("end reason %q", s.EndReason)
	}
	var binq []Event
	for _, e := range ofType(ev, "query") {
		if e.str("protocol") == "binary" {
			binq = append(binq, e)
		}
	}
	if len(binq) < 4 {
		t.Fatalf("%d binary-protocol query events, want 4 (insert, 2 selects, failed insert): %v", len(binq), queryTexts(ev))
	}
	params, _ := binq[0].Data["params"].([]any)
	if len(params) != 16 {
		t.Fatalf("insert recorded %d params, want 16: %v", len(params), binq[0].Data)
	}
	p := func(i int) string {
		m, _ := params[i].(map[string]any)
		if m["null"] == true {
			return "NULL"
		}
		s, _ := m["text"].(string)
		return s
	}
	if p(0) != "1" || p(1) != "ada" || p(2) != "2001-02-03 04:05:06.789" || p(3) != "12.34" || p(5) != "18446744073709551615" || p(6) != "NULL" || p(7) != "-3" || p(9) != m {
		t.Errorf("recorded params %v", params)
	}
	if sel := binq[1]; !strings.Contains(sel.str("text"), "where id >= ?") {
		t.Errorf("second binary query %v, want the select", sel.Data)
	}
	rows := rowsOf(ev)
	wantRow := "1,ada,2001-02-03 04:05:06.789000,12.34,1.5,18446744073709551615,NULL,-3"
	if len(rows) != 7 || strings.Join(rows[0], ",") != wantRow || strings.Join(rows[4], ",") != wantRow ||
		strings.Join(rows[5], ",") != wantRow || strings.Join(rows[6], ",") != "5,"+wantRow {
		t.Errorf("recorded rows %q, want 7: %q first, the 5th and 6th the same (flag a bigint in the 6th), the 7th with the added column", rows, wantRow)
	}
	var colEvents [][]string
	for _, e := range ofType(ev, "columns") {
		cs, _ := e.Data["columns"].([]any)
		var names []string
		for _, c := range cs {
			m, _ := c.(map[string]any)
			n, _ := m["name"].(string)
			names = append(names, n)
		}
		colEvents = append(colEvents, names)
	}
	if n := len(colEvents); n < 3 || len(colEvents[n-3]) != 8 || len(colEvents[n-2]) != 8 || len(colEvents[n-1]) != 9 || colEvents[n-1][0] != "extra" {
		t.Errorf("columns events %q: want the last with 9 columns, extra first, after two with 8", colEvents)
	}
	if errs := ofType(ev, "error"); len(errs) != 1 || errs[0].str("code") != "1062" {
		t.Errorf("error events %v, want one 1062", errs)
	}
}

// TestMySQLMultiStatements checks multi-statement strings and multiple result sets through
// go-sql-driver (which needs multiStatements=true to send them).
func TestMySQLMultiStatements(t *testing.T) {
	g := startMySQLGateway(t, gwConfig{})
	m := uniq("mymulti")
	db := g.myOpen(t, "alice", alicePassword, "my", m, "multiStatements=true")
	rows, err := db.Query(fmt.Sprintf("select '%s'; select 1, 2 union all select 3, 4; do 0; select 5", m))
	if err != nil {
		t.Fatal(err)
	}
	var sets [][]string
	for {
		var set []string
		cols, _ := rows.Columns()
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, v := range vals {
				parts = append(parts, string(v))
			}
			set = append(set, strings.Join(parts, ","))
		}
		sets = append(sets, set)
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	got := fmt.Sprint(sets)
	if want := fmt.Sprintf("[[%s] [1,2 3,4] [5]]", m); got != want {
		t.Errorf("result sets %s, want %s", got, want)
	}
	db.Close()
	_, ev := g.mySession(t, m)
	if q := ofType(ev, "query"); len(q) != 1 {
		t.Errorf("%d query events, want the one multi-statement string", len(q))
	}
	if n := len(ofType(ev, "result")); n != 4 {
		t.Errorf("%d result events, want 4 (three result sets and the DO's OK)", n)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func copyConn(dst, src net.Conn) { io.Copy(dst, src) }

// TestMySQLTargetLost checks a gateway whose target goes away in the middle of a session.
func TestMySQLTargetLost(t *testing.T) {
	requireMySQL(t)
	// A TCP proxy the test can cut.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", myAddr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			go func() { defer u.Close(); copyConn(u, c) }()
			go func() { defer c.Close(); copyConn(c, u) }()
		}
	}()
	g := startMySQLGateway(t, gwConfig{Targets: []targetCfg{{Name: "myproxy", Type: "mysql", Address: l.Addr().String(),
		Raw: "    database: test\n    username: root\n    password: \"\"\n"}}})
	m := uniq("mylost")
	db := g.myOpen(t, "alice", alicePassword, "myproxy", m)
	var s string
	if err := db.QueryRow("select '" + m + "'").Scan(&s); err != nil {
		t.Fatal(err)
	}
	l.Close()
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	err = db.QueryRow("select 1").Scan(&s)
	if err == nil {
		t.Fatal("query after the target went away succeeded")
	}
	db.Close()
	sess, _ := g.mySession(t, m)
	if sess.EndReason != "upstream_closed" {
		t.Errorf("end reason %q, want upstream_closed", sess.EndReason)
	}
}
