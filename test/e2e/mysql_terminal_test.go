package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestMySQLClientTerminal drives the stock mariadb client on a terminal (tmux), where it runs
// interactively with auto-rehash: at connect it lists the tables and asks for each one's columns
// with COM_FIELD_LIST (mysql_list_fields), which a client reading a pipe never sends. The typed
// statements and each field list are in the recording, the field lists as SHOW COLUMNS with
// the column names the client got.
func TestMySQLClientTerminal(t *testing.T) {
	direct := requireMySQL(t)
	bin := requireTool(t, "mariadb")
	tbl := uniq("airlock_myterm")
	mustMy(t, direct, fmt.Sprintf("create table test.%s (id int primary key, rehash_col_a varchar(8), rehash_col_b int)", tbl))
	t.Cleanup(func() { direct.Exec("drop table if exists test." + tbl) })
	g := startMySQLGateway(t, gwConfig{})

	defer func() {
		if !t.Failed() {
			return
		}
		tok := g.adminToken(t)
		for _, s := range g.sessions(t, tok, sessionFilter{}) {
			for _, e := range g.events(t, tok, s.ID) {
				t.Logf("%s %d %s %q %v", s.ID, e.Seq, e.Type, clip(e.Text, 300), e.Data)
			}
		}
	}()
	dir := t.TempDir()
	tm := newTmux(t, dir, append(cleanEnv(), "HOME="+dir, "MYSQL_HISTFILE=/dev/null"))
	cmd := strings.Join([]string{bin, "--no-defaults", "-h", "127.0.0.1", "-P", fmt.Sprint(g.Port("mysql")), "--ssl",
		"-u", "alice", "-p" + alicePassword, "-D", "my", "--auto-rehash"}, " ")
	tm.run("new-session", "-d", "-s", "main", "-x", "160", "-y", "40", cmd+"; echo MARIADB-EXITED-$?; sleep 60")
	tm.waitFor("[my]>") // the prompt: "MySQL [my]>", the greeting announces MySQL 8.0.36
	m := uniq("myterm")
	// A trailing ";" would end tmux's command: escaped as "\\;".
	tm.send(fmt.Sprintf("select '%s' as marker\\;", m), "Enter")
	tm.waitFor("| " + m)
	tm.send(fmt.Sprintf("select id, rehash_col_a from %s where id = 42\\;", tbl), "Enter")
	tm.waitFor("Empty set")
	tm.send("quit", "Enter")
	tm.waitFor("MARIADB-EXITED-0")

	s, ev := g.mySession(t, m)
	if s.EndReason != "client_terminated" {
		t.Errorf("session ended %q, want client_terminated", s.EndReason)
	}
	if q := mustQuery(t, ev, m); q.str("protocol") != "text" {
		t.Errorf("typed statement recorded as %v", q.Data)
	}
	mustQuery(t, ev, "where id = 42")

	// The field list of the test's own table: the query, the column names, the count.
	var fl *Event
	for i, e := range ev {
		if e.Type == "query" && e.str("protocol") == "field_list" && e.str("text") == "SHOW COLUMNS FROM `"+tbl+"`" {
			fl = &ev[i]
			if i+2 >= len(ev) || ev[i+1].Type != "columns" || ev[i+2].Type != "result" {
				t.Fatalf("field list of %s not followed by columns and result: %v", tbl, ev[i:min(i+3, len(ev))])
			}
			var names []string
			cols, _ := ev[i+1].Data["columns"].([]any)
			for _, c := range cols {
				if c, ok := c.(map[string]any); ok {
					names = append(names, fmt.Sprint(c["name"]))
				}
			}
			if got := strings.Join(names, ","); got != "id,rehash_col_a,rehash_col_b" {
				t.Errorf("field list columns %q", got)
			}
			if r := ev[i+2]; r.str("tag") != "FIELD_LIST" || r.num("rows") != 3 {
				t.Errorf("field list result %v, want tag FIELD_LIST, 3", r.Data)
			}
		}
	}
	if fl == nil {
		var fls []string
		for _, e := range ofType(ev, "query") {
			if e.str("protocol") == "field_list" {
				fls = append(fls, e.str("text"))
			}
		}
		t.Fatalf("no field_list query for %s; field lists recorded: %q; queries: %v", tbl, fls, queryTexts(ev))
	}
}
