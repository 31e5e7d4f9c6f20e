package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
)

// TestMySQLPolicySettings drives the policy settings through the MySQL engine, mirroring
// TestPolicySettings: masking of text and binary rows and of error messages, destructive
// guardrails against obfuscation and indirection, and LOAD DATA LOCAL INFILE.
func TestMySQLPolicySettings(t *testing.T) {
	direct := requireMySQL(t)
	tbl := fmt.Sprintf("airlock_mypol_%d", time.Now().UnixNano()%1e12)
	policies := fmt.Sprintf(`policies:
  - name: guarded
    subjects: ["*"]
    targets: ["my"]
    access: allow
    masking: [credit_card, email, %s]
    guardrails: [destructive]
  - name: infile
    subjects: ["*"]
    targets: ["my_infile"]
    access: allow
    local_infile: true
`, yq("column:"+tbl+".cvv"))
	g := startMySQLGateway(t, gwConfig{Targets: []targetCfg{myTarget("my"), myTarget("my_infile")}, Extra: policies})

	// Created and filled directly, so that no raw value passes the gateway from the client.
	mustMy(t, direct, fmt.Sprintf(`create table test.%s (id int primary key, card_sp varchar(40) unique,
		card_dash varchar(40), card_num bigint unique, email varchar(80), cvv varchar(8))`, tbl))
	t.Cleanup(func() { direct.Exec("drop table if exists test." + tbl) })
	mustMy(t, direct, fmt.Sprintf(`insert into test.%s values
		(1, '4111 1111 1111 1111', '5500-0000-0000-0004', 4111111111111111, 'jane.roe@example.com', '123'),
		(2, '4012 8888 8888 1881', '3782-822463-10005', 5555555555554444, 'john.smith@corp.example.org', '987'),
		(99, '6011 1111 1111 1117', '6011-0009-9013-9424', 4242424242424242, 'del.me@example.net', '555')`, tbl))
	raw := []string{
		"4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "4012 8888 8888 1881",
		"3782-822463-10005", "5555555555554444", "6011 1111 1111 1117", "6011-0009-9013-9424", "4242424242424242",
		"jane.roe@example.com", "john.smith@corp.example.org", "del.me@example.net",
	}
	count := func(t *testing.T) int {
		t.Helper()
		var n int
		if err := direct.QueryRow("select count(*) from test." + tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("Masking", func(t *testing.T) {
		var seen strings.Builder
		m := uniq("mymask")
		r := g.mariadb(t, "alice", alicePassword, "my", "-e", fmt.Sprintf("select '%s'; select * from %s order by id", m, tbl))
		seen.WriteString(r.Stdout + r.Stderr)
		if r.Code != 0 {
			t.Fatalf("mariadb select: %s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		want1 := "1\t**** **** **** 1111\t****-****-****-0004\t************1111\tj****@****.com\t***"
		if len(lines) != 4 || lines[1] != want1 {
			t.Errorf("mariadb select printed %q, want 3 rows after the marker, the first %q", lines, want1)
		}
		for _, l := range lines[1:] {
			if !strings.HasSuffix(l, "\t***") {
				t.Errorf("row %q: cvv column not masked whole", l)
			}
		}
		// Cast to a binary string, the values are still masked (a binary string that is text
		// is masked as text).
		r = g.mariadb(t, "alice", alicePassword, "my", "-e", fmt.Sprintf("select cast(email as binary), convert(card_sp using binary) from %s where id = 1", tbl))
		seen.WriteString(r.Stdout + r.Stderr)
		if r.Code != 0 || !strings.Contains(r.Stdout, "j****@****.com\t**** **** **** 1111") {
			t.Errorf("binary casts: %s", r)
		}
		// A duplicate key error quotes the value.
		r = g.mariadb(t, "alice", alicePassword, "my", "-e", fmt.Sprintf("insert into %[1]s (id, card_sp) select 100, card_sp from %[1]s where id = 1", tbl))
		seen.WriteString(r.Stdout + r.Stderr)
		if r.Code == 0 || !strings.Contains(r.Stderr, "ERROR 1062") || !strings.Contains(r.Stderr, "**** **** **** 1111") {
			t.Errorf("duplicate key: want ERROR 1062 quoting the masked card: %s", r)
		}

		// go-sql-driver: prepared statement, binary rows (the bigint stays a number).
		db := g.myOpen(t, "alice", alicePassword, "my", m+"_drv")
		rows, err := db.Query("select id, card_sp, card_dash, card_num, email, cvv from "+tbl+" where id > ? order by id", 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id int
			var num int64
			var sp, dash, email, cvv string
			if err := rows.Scan(&id, &sp, &dash, &num, &email, &cvv); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%d|%s|%s|%d|%s|%s", id, sp, dash, num, email, cvv))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		seen.WriteString(strings.Join(got, "\n"))
		if len(got) != 3 || got[0] != "1|**** **** **** 1111|****-****-****-0004|1111|j****@****.com|***" {
			t.Errorf("binary rows %q", got)
		}
		_, err = db.Exec("insert into "+tbl+" (id, card_num) select 100, card_num from "+tbl+" where id = ?", 1)
		var me *gomysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1062 {
			t.Fatalf("duplicate bigint card: %v, want 1062", err)
		}
		seen.WriteString(me.Message)
		if strings.Contains(me.Message, "4111111111111111") {
			t.Errorf("duplicate key message not masked: %q", me.Message)
		}
		db.Close()

		for _, s := range raw {
			if strings.Contains(seen.String(), s) {
				t.Errorf("a client saw the raw value %q", s)
			}
		}
		// The recordings hold what the clients saw, and sealed originals.
		for _, mk := range []string{m, tbl + " where id > ?"} {
			_, ev := g.mySession(t, mk)
			var rec strings.Builder
			for _, r := range rowsOf(ev) {
				rec.WriteString(strings.Join(r, "|") + "\n")
			}
			for _, e := range ofType(ev, "error") {
				rec.WriteString(e.str("message"))
			}
			for _, s := range raw {
				if strings.Contains(rec.String(), s) {
					t.Errorf("recording of %s holds the raw value %q", mk, s)
				}
			}
			if len(ofType(ev, "rows.original")) == 0 || len(ofType(ev, "mask")) == 0 {
				t.Errorf("recording of %s: no rows.original or mask event", mk)
			}
		}
		if files := filesContaining(t, g.DataDir, raw...); len(files) > 0 {
			t.Errorf("raw values found in clear in the data directory: %v", files)
		}

		// A target's error message that masking changed keeps its original, sealed: an
		// auditor's reveal gives it back.
		dup, ev := g.mySession(t, "(id, card_sp) select 100, card_sp")
		if len(ofType(ev, "original")) != 1 {
			t.Errorf("the masked duplicate key error has %d original events, want 1", len(ofType(ev, "original")))
		}
		code, body := g.api(t, g.token(t, "audrey", audPassword), "GET", "/api/v1/sessions/"+url.PathEscape(dup.ID)+"/events?reveal=true", nil)
		if code != 200 {
			t.Fatalf("reveal events of %s: HTTP %d %s", dup.ID, code, body)
		}
		var a struct {
			Events []struct {
				Type         string          `json:"type"`
				RevealedData json.RawMessage `json:"revealed_data"`
				RevealError  string          `json:"reveal_error"`
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		var revealed strings.Builder
		for _, e := range a.Events {
			if e.RevealError != "" {
				t.Errorf("%s event: reveal error %s", e.Type, e.RevealError)
			}
			revealed.Write(e.RevealedData)
		}
		if r := revealed.String(); !strings.Contains(r, `"code":"1062"`) || !strings.Contains(r, "4111 1111 1111 1111") {
			t.Errorf("revealed originals %q lack the duplicate key error as the target sent it", r)
		}
	})

	// A column rule survives aliases, joins, derived tables, CTEs and views: MariaDB reports the
	// derived table, CTE or view as the column's original table, and the rule then matches the
	// column by name.
	t.Run("ColumnRuleIndirection", func(t *testing.T) {
		view := tbl + "_v"
		mustMy(t, direct, fmt.Sprintf("create view test.%s as select id, cvv from test.%s", view, tbl))
		t.Cleanup(func() { direct.Exec("drop view if exists test." + view) })
		for _, tt := range []struct{ name, sql, want string }{
			{"column alias", "select cvv as c2 from %s where id = 1", "***"},
			{"table alias", "select t.cvv from %s t where t.id = 1", "***"},
			{"join", "select b.cvv from %[1]s a join %[1]s b on a.id = b.id where a.id = 1", "***"},
			{"derived table", "select cvv from (select id, cvv from %s) q where id = 1", "***"},
			{"cte", "with c as (select id, cvv from %s) select cvv from c where id = 1", "***"},
			{"derived table renamed", "select c from (select id, cvv as c from %s) q where id = 1", "***"},
			{"cte renamed", "with w as (select id, cvv as c from %s) select c from w where id = 1", "***"},
			{"cte column list", "with w(i, c) as (select id, cvv from %s) select c from w where i = 1", "***"},
			{"view", "select cvv from " + view + " where id = 1 /* %s */", "***"},
			{"another column named cvv", "select id as cvv from %s where id = 1", "1"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := g.mariadb(t, "alice", alicePassword, "my", "-e", fmt.Sprintf(tt.sql, tbl))
				if r.Code != 0 || strings.TrimSpace(r.Stdout) != tt.want {
					t.Errorf("%s: printed %q, want %q: %s", tt.sql, r.Stdout, tt.want, r)
				}
			})
		}
	})

	t.Run("Guardrails", func(t *testing.T) {
		before := count(t)
		refused := []struct{ name, sql string }{
			{"drop", "DROP TABLE " + tbl},
			{"versioned comment", "/*!50000 DROP TABLE " + tbl + " */"},
			{"mariadb comment", "/*M!100100 TRUNCATE " + tbl + " */"},
			{"comment inside", "DELETE /* x */ FROM " + tbl + " WHERE id = 99 /*!50000 OR 1 = 1 */"},
			{"multi statement", "select 1; delete from " + tbl},
			{"delete true", "DELETE FROM " + tbl + " WHERE 'a' = 'a'"},
			{"delete collation true", "DELETE FROM " + tbl + " WHERE id = 99 OR 'a' = 'A '"},
			{"prepare literal", "PREPARE s FROM 'DELETE FROM " + tbl + "'; EXECUTE s"},
			{"prepare variable", "SET @q = 'DELETE FROM " + tbl + "'; PREPARE s FROM @q; EXECUTE s"},
			{"procedure", "CREATE PROCEDURE airlock_wipe() BEGIN DELETE FROM " + tbl + "; END"},
			{"garbage", "SELEC 1"},
			{"alter engine blackhole", "ALTER TABLE " + tbl + " ENGINE=BLACKHOLE"},
			{"alter discard tablespace", "ALTER TABLE " + tbl + " DISCARD TABLESPACE"},
		}
		for _, tt := range refused {
			t.Run(tt.name, func(t *testing.T) {
				r := g.mariadb(t, "alice", alicePassword, "my", "-e", tt.sql)
				if r.Code == 0 || !strings.Contains(r.Stderr, "ERROR 1142") || !strings.Contains(r.Stderr, "statement refused by guardrail") {
					t.Errorf("%q: want ERROR 1142 from the guardrail: %s", tt.sql, r)
				}
			})
		}
		if n := count(t); n != before {
			t.Fatalf("table has %d rows after refused statements, had %d", n, before)
		}
		// The stored procedure was never created.
		var n int
		direct.QueryRow("select count(*) from information_schema.routines where routine_name = 'airlock_wipe'").Scan(&n)
		if n != 0 {
			t.Error("the refused CREATE PROCEDURE created the procedure")
		}

		// Binary protocol: a destructive statement prepares (nothing runs) and is refused at
		// execute; a harmless one runs.
		m := uniq("myguard")
		db := g.myOpen(t, "alice", alicePassword, "my", m)
		_, err := db.Exec("DELETE FROM "+tbl+" WHERE ? = ?", 1, 1)
		var me *gomysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1142 {
			t.Errorf("prepared DELETE ... WHERE ? = ?: %v, want 1142", err)
		}
		res, err := db.Exec("DELETE FROM "+tbl+" WHERE id = ? /* "+m+" */", 99)
		if err != nil {
			t.Fatalf("harmless delete: %v", err)
		}
		if k, _ := res.RowsAffected(); k != 1 {
			t.Errorf("harmless delete affected %d rows", k)
		}
		// The session goes on after a refusal.
		var one int
		if err := db.QueryRow("select 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("select after a refusal: %v", err)
		}
		db.Close()
		if n := count(t); n != before-1 {
			t.Errorf("table has %d rows, want %d", n, before-1)
		}
		_, ev := g.mySession(t, m)
		var denies int
		for _, e := range ofType(ev, "guardrail") {
			if e.str("action") == "deny" {
				denies++
			}
		}
		if denies != 1 {
			t.Errorf("%d deny guardrail events in the driver session, want 1", denies)
		}
	})

	t.Run("LocalInfile", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "rows.tsv")
		if err := os.WriteFile(file, []byte("500\tloaded-a\n501\tloaded-b\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		load := fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' INTO TABLE %s (id, email)", file, tbl)
		before := count(t)
		// Refused where the policy does not allow it.
		r := g.mariadb(t, "alice", alicePassword, "my", "--local-infile=1", "-e", load)
		if r.Code == 0 || !strings.Contains(r.Stderr, "ERROR 1148") {
			t.Errorf("LOAD DATA LOCAL without local_infile: want ERROR 1148: %s", r)
		}
		if n := count(t); n != before {
			t.Fatalf("rows went from %d to %d after a refused LOAD DATA LOCAL", before, n)
		}
		// Allowed, and recorded, where it does.
		r = g.mariadb(t, "alice", alicePassword, "my_infile", "--local-infile=1", "-e", load+"; select 'infile-done'")
		if r.Code != 0 || !strings.Contains(r.Stdout, "infile-done") {
			t.Fatalf("LOAD DATA LOCAL with local_infile: %s", r)
		}
		if n := count(t); n != before+2 {
			t.Errorf("rows went from %d to %d, want +2", before, n)
		}
		_, ev := g.mySession(t, "infile-done")
		cp := ofType(ev, "copy.in")
		if len(cp) == 0 || cp[len(cp)-1].Data["done"] != true || sumNum(ev, "copy.in", "bytes") != 26 {
			t.Errorf("copy.in events %v, want 26 bytes, done", cp)
		}
	})
}

func mustMy(t testing.TB, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestMySQLSessionLimits: max_duration ends a MySQL session with ERR 1053 and the end reason
// max_duration; recording off leaves no recording.
func TestMySQLSessionLimits(t *testing.T) {
	g := startMySQLGateway(t, gwConfig{Targets: []targetCfg{myTarget("my_short"), myTarget("my_norec")}, Extra: `policies:
  - name: short
    subjects: ["*"]
    targets: ["my_short"]
    access: allow
    max_duration: 2s
  - name: unrecorded
    subjects: ["*"]
    targets: ["my_norec"]
    access: allow
    recording: "off"
`})
	m := uniq("myshort")
	db := g.myOpen(t, "alice", alicePassword, "my_short", m)
	conn, err := db.Conn(context.Background()) // one connection: database/sql must not reconnect
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := conn.QueryRowContext(context.Background(), "select '"+m+"'").Scan(&s); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := conn.QueryRowContext(context.Background(), "select 1").Scan(&s); err == nil {
		t.Error("a query ran on the session after max_duration")
	}
	conn.Close()
	db.Close()
	sess, ev := g.mySession(t, m)
	if sess.EndReason != "max_duration" {
		t.Errorf("end reason %q, want max_duration", sess.EndReason)
	}
	if end := endEvent(ev); end == nil || !strings.Contains(end.str("error"), "maximum duration") {
		t.Errorf("session.end %v", end)
	}

	m2 := uniq("mynorec")
	if r := g.mariadb(t, "alice", alicePassword, "my_norec", "-e", "select '"+m2+"'"); r.Code != 0 || !strings.Contains(r.Stdout, m2) {
		t.Fatalf("unrecorded session: %s", r)
	}
	time.Sleep(500 * time.Millisecond)
	for _, s := range g.sessions(t, g.adminToken(t), sessionFilter{Target: "my_norec"}) {
		t.Errorf("a session on my_norec was recorded: %+v", s)
	}
}
