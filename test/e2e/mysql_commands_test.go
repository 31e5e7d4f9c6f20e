package e2e

import (
	"crypto/tls"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	myclient "github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	gomysql "github.com/go-sql-driver/mysql"
)

// TestMySQLCommands drives the MySQL commands and policy paths that the stock client and
// go-sql-driver's usual calls do not: a policy that denies the target (ERR 1142), a guardrail
// that waits for an approver, a client that drops the connection in the middle of a large
// result, COM_CHANGE_USER (refused, 1047), COM_STMT_SEND_LONG_DATA, COM_RESET_CONNECTION, and
// COM_PROCESS_KILL / COM_REFRESH (recorded and guarded as the SQL they stand for).
func TestMySQLCommands(t *testing.T) {
	direct := requireMySQL(t)
	tbl := fmt.Sprintf("airlock_mycmd_%d", time.Now().UnixNano()%1e12)
	policies := `policies:
  - name: open
    subjects: ["*"]
    targets: ["my"]
    access: allow
  - name: approve
    subjects: ["*"]
    targets: ["my_approve"]
    access: allow
    guardrails: ["approve:destructive"]
  - name: nokill
    subjects: ["*"]
    targets: ["my_nokill"]
    access: allow
    guardrail_rules:
      - {name: no-kill, kinds: [kill], action: deny}
  - name: denied
    subjects: ["*"]
    targets: ["my_denied"]
    access: deny
`
	g := startMySQLGateway(t, gwConfig{Targets: []targetCfg{myTarget("my"), myTarget("my_approve"),
		myTarget("my_nokill"), myTarget("my_denied")}, Extra: policies})
	mustMy(t, direct, fmt.Sprintf("create table test.%s (id int primary key, b longblob)", tbl))
	t.Cleanup(func() { direct.Exec("drop table if exists test." + tbl) })

	// raw connects with go-mysql's client, which can write any command as a packet.
	raw := func(t *testing.T, db string) *myclient.Conn {
		t.Helper()
		c, err := myclient.Connect(fmt.Sprintf("127.0.0.1:%d", g.Port("mysql")), "alice", alicePassword, db,
			func(c *myclient.Conn) error { c.SetTLSConfig(&tls.Config{InsecureSkipVerify: true}); return nil })
		if err != nil {
			t.Fatalf("connect through the gateway: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// command writes one command packet and returns the first packet of the answer.
	command := func(t *testing.T, c *myclient.Conn, payload ...byte) []byte {
		t.Helper()
		c.ResetSequence()
		if err := c.WritePacket(append([]byte{0, 0, 0, 0}, payload...)); err != nil {
			t.Fatal(err)
		}
		p, err := c.ReadPacket()
		if err != nil {
			t.Fatalf("answer to command %#x: %v", payload[0], err)
		}
		return p
	}
	errCode := func(p []byte) uint16 {
		if len(p) < 3 || p[0] != mysql.ERR_HEADER {
			return 0
		}
		return binary.LittleEndian.Uint16(p[1:])
	}
	// victim is a direct connection to MariaDB and its connection id.
	victim := func(t *testing.T) (*sql.Conn, int64) {
		t.Helper()
		conn, err := direct.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		var id int64
		if err := conn.QueryRowContext(t.Context(), "select connection_id()").Scan(&id); err != nil {
			t.Fatal(err)
		}
		return conn, id
	}
	alive := func(id int64) bool {
		var n int
		direct.QueryRow("select count(*) from information_schema.processlist where id = ?", id).Scan(&n)
		return n == 1
	}

	t.Run("PolicyDenied", func(t *testing.T) {
		r := g.mariadb(t, "alice", alicePassword, "my_denied", "-e", "select 1")
		if r.Code == 0 || !strings.Contains(r.Stderr, "ERROR 1142") || !strings.Contains(r.Stderr, "access to target my_denied denied") {
			t.Errorf("want ERROR 1142 (access to target my_denied denied): %s", r)
		}
		err := g.myOpen(t, "alice", alicePassword, "my_denied", "denied").Ping()
		var me *gomysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1142 || me.SQLState != [5]byte{'4', '2', '0', '0', '0'} {
			t.Errorf("go driver: %v, want MySQL error 1142 (42000)", err)
		}
		for _, s := range g.sessions(t, g.adminToken(t), sessionFilter{}) {
			if s.Target == "my_denied" {
				t.Errorf("a session was recorded for the denied target: %+v", s)
			}
		}
	})

	// A destructive statement on a target whose guardrail asks for approval waits until an
	// administrator approves it (then runs) or denies it (ERR 1142 with the reason), as
	// TestPolicySettings/Approval does for PostgreSQL.
	t.Run("Approval", func(t *testing.T) {
		admin := g.adminToken(t)
		for _, tc := range []struct {
			decision, stmt string
			ok             bool
		}{{"approve", "DELETE FROM " + tbl, true}, {"deny", "TRUNCATE " + tbl, false}} {
			mustMy(t, direct, fmt.Sprintf("delete from test.%[1]s; insert into test.%[1]s (id) values (1), (2)", tbl))
			m := uniq("myapprove")
			stmt := tc.stmt + " /* " + m + " */"
			done := make(chan cmdResult, 1)
			// The marker selected first finds the session; --comments keeps it in the statement,
			// which the client would strip.
			go func() {
				done <- g.mariadb(t, "alice", alicePassword, "my_approve", "--comments", "-e", "select '"+m+"'; "+stmt)
			}()
			id := g.waitApprovalRequest(t, admin, stmt, func(r approvalRequest) bool {
				return strings.Contains(r.Statement, m) && r.User == "alice" && r.Target == "my_approve"
			}).ID
			select {
			case r := <-done:
				t.Fatalf("%q ran without waiting for the approval: %s", stmt, r)
			default:
			}
			if code, body := g.api(t, admin, "POST", "/api/v1/requests/"+id+"/"+tc.decision, map[string]string{"reason": tc.decision + " in the test"}); code != 200 {
				t.Fatalf("%s: %d %s", tc.decision, code, body)
			}
			r := <-done
			var n int
			if err := direct.QueryRow("select count(*) from test." + tbl).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if tc.ok && (r.Code != 0 || n != 0) {
				t.Errorf("approved %q: %s; %d rows left", stmt, r, n)
			}
			if !tc.ok && (r.Code == 0 || !strings.Contains(r.Stderr, "ERROR 1142") || !strings.Contains(r.Stderr, "deny in the test") || n != 2) {
				t.Errorf("refused %q: %s; %d rows left", stmt, r, n)
			}
			_, ev := g.mySessions(t, m)
			var decided []string
			for _, e := range ofType(ev[0], "guardrail") {
				if e.Data["approved"] != nil {
					decided = append(decided, fmt.Sprintf("%v by %s", e.Data["approved"], e.str("by")))
				}
			}
			if want := fmt.Sprintf("%v by admin", tc.ok); strings.Join(decided, ",") != want {
				t.Errorf("%q: recorded decisions %v, want %s", stmt, decided, want)
			}
			if queried := strings.Join(queryTexts(ev[0]), "\n"); tc.ok != strings.Contains(queried, stmt) {
				t.Errorf("%q: query events %q (an approved statement is recorded as sent, a denied one is not)", stmt, queried)
			}
		}
	})

	// The client drops its socket (no COM_QUIT) while a large result streams: the session ends
	// client_disconnected with its chain intact, and the next session works.
	t.Run("ClientDisconnectMidResult", func(t *testing.T) {
		c := raw(t, "my")
		m := uniq("mydisc")
		q := "select seq, repeat('x', 200) from seq_1_to_20000000 /* " + m + " */"
		p := command(t, c, append([]byte{mysql.COM_QUERY}, q...)...)
		if p[0] == mysql.ERR_HEADER {
			t.Fatalf("large select: %q", p)
		}
		for i := 0; i < 5000; i++ {
			if _, err := c.ReadPacket(); err != nil {
				t.Fatalf("packet %d of the result: %v", i, err)
			}
		}
		c.Close()
		s, ev := g.mySession(t, m) // chain checked
		if r := endReason(ev); r != "client_disconnected" {
			t.Errorf("end reason %q (listed %q), want client_disconnected", r, s.EndReason)
		}
		if len(rowsOf(ev)) == 0 {
			t.Error("no rows recorded before the disconnect")
		}
		// The target's query does not run on: the gateway closes its connection.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			direct.QueryRow("select count(*) from information_schema.processlist where info like ?", "%"+m+"%").Scan(&n)
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the target still runs the query of the disconnected session")
			}
			time.Sleep(200 * time.Millisecond)
		}
		m2 := uniq("mydisc_next")
		if r := g.mariadb(t, "alice", alicePassword, "my", "-e", "select '"+m2+"'"); r.Code != 0 || !strings.Contains(r.Stdout, m2) {
			t.Fatalf("the next session: %s", r)
		}
		g.mySession(t, m2)
	})

	// COM_CHANGE_USER would log the target session in as someone else; neither go-sql-driver nor
	// go-mysql's client sends it, so it is written as a packet.
	t.Run("ChangeUserRefused", func(t *testing.T) {
		c := raw(t, "my")
		m := uniq("mychuser")
		payload := append([]byte{mysql.COM_CHANGE_USER}, "root\x00"...)
		payload = append(payload, 0)             // auth response length: none
		payload = append(payload, "test\x00"...) // database
		p := command(t, c, payload...)
		if code := errCode(p); code != 1047 || !strings.Contains(string(p), "COM_CHANGE_USER is not supported") {
			t.Fatalf("COM_CHANGE_USER answered %q, want ERR 1047", p)
		}
		r, err := c.Execute("select current_user(), '" + m + "'")
		if err != nil {
			t.Fatalf("the session after the refusal: %v", err)
		}
		if user, _ := r.GetString(0, 0); !strings.HasPrefix(user, "root@") {
			t.Errorf("current_user() = %q, want the target's user root", user)
		}
		c.Close()
		_, ev := g.mySession(t, m)
		var refused bool
		for _, e := range ofType(ev, "error") {
			refused = refused || (e.str("code") == "1047" && e.str("source") == "gateway")
		}
		if !refused {
			t.Errorf("no gateway error 1047 recorded: %v", ofType(ev, "error"))
		}
	})

	// go-sql-driver sends a string parameter longer than maxAllowedPacket/(params+1) with
	// COM_STMT_SEND_LONG_DATA, in pieces: the recording has the whole value as the parameter.
	t.Run("SendLongData", func(t *testing.T) {
		m := uniq("mylong")
		db := g.myOpen(t, "alice", alicePassword, "my", m, "maxAllowedPacket=2048")
		long := strings.Repeat("0123456789abcdef", 400) // 6400 bytes: several long-data packets
		if _, err := db.Exec("insert into "+tbl+" (id, b) values (?, ?) /* "+m+" */", 10, long); err != nil {
			t.Fatalf("insert with long data: %v", err)
		}
		db.Close()
		var got string
		if err := direct.QueryRow("select b from test." + tbl + " where id = 10").Scan(&got); err != nil || got != long {
			t.Fatalf("the target has %d bytes (%v), want the %d sent", len(got), err, len(long))
		}
		_, ev := g.mySession(t, m)
		var exec *Event
		for _, e := range ofType(ev, "query") {
			if e.str("protocol") == "binary" && strings.Contains(e.str("text"), m) {
				exec = &e
			}
		}
		if exec == nil {
			t.Fatalf("no binary-protocol query event: %v", queryTexts(ev))
		}
		params, _ := exec.Data["params"].([]any)
		if len(params) != 2 {
			t.Fatalf("params %v, want 2", exec.Data["params"])
		}
		if p, _ := params[1].(map[string]any); p == nil || p["text"] != long {
			t.Errorf("long-data parameter recorded as %.100v, want the %d bytes sent", params[1], len(long))
		}
	})

	t.Run("ResetConnection", func(t *testing.T) {
		c := raw(t, "my")
		m := uniq("myreset")
		if _, err := c.Execute("set @airlock_v = '" + m + "'"); err != nil {
			t.Fatal(err)
		}
		if p := command(t, c, mysql.COM_RESET_CONNECTION); p[0] != mysql.OK_HEADER {
			t.Fatalf("COM_RESET_CONNECTION answered %q, want OK", p)
		}
		r, err := c.Execute("select @airlock_v is null")
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := r.GetInt(0, 0); v != 1 {
			t.Error("the user variable survived COM_RESET_CONNECTION: the target was not reset")
		}
		c.Close()
		_, ev := g.mySession(t, m)
		q := mustQuery(t, ev, "COM_RESET_CONNECTION")
		if q.str("protocol") != "command" {
			t.Errorf("reset recorded as %v", q.Data)
		}
	})

	// COM_PROCESS_KILL is how old clients (and mysqladmin kill) send KILL: it is recorded as
	// "KILL <id>" and a guardrail over kind kill refuses it like the statement.
	t.Run("ProcessKill", func(t *testing.T) {
		vc, vid := victim(t)
		c := raw(t, "my_nokill")
		m := uniq("mynokill")
		if _, err := c.Execute("select '" + m + "'"); err != nil {
			t.Fatal(err)
		}
		p := command(t, c, binary.LittleEndian.AppendUint32([]byte{mysql.COM_PROCESS_KILL}, uint32(vid))...)
		if code := errCode(p); code != 1142 {
			t.Errorf("COM_PROCESS_KILL on a target that denies kill answered %q, want ERR 1142", p)
		}
		if _, err := c.Execute(fmt.Sprintf("KILL %d", vid)); err == nil || !strings.Contains(err.Error(), "1142") {
			t.Errorf("KILL as text: %v, want ERR 1142", err)
		}
		c.Close()
		if err := vc.PingContext(t.Context()); err != nil || !alive(vid) {
			t.Fatalf("the victim connection was killed through a guarded target: %v", err)
		}
		_, ev := g.mySession(t, m)
		var denies int
		for _, e := range ofType(ev, "guardrail") {
			if e.str("action") == "deny" && strings.HasPrefix(e.str("statement"), fmt.Sprintf("KILL %d", vid)) {
				denies++
			}
		}
		if denies != 2 {
			t.Errorf("%d guardrail denials of KILL %d recorded, want 2 (command and text): %v", denies, vid, ofType(ev, "guardrail"))
		}

		// Unguarded: the victim goes, and the recording says whom the client killed.
		c = raw(t, "my")
		m = uniq("mykill")
		if _, err := c.Execute("select '" + m + "'"); err != nil {
			t.Fatal(err)
		}
		if p := command(t, c, binary.LittleEndian.AppendUint32([]byte{mysql.COM_PROCESS_KILL}, uint32(vid))...); p[0] != mysql.OK_HEADER {
			t.Fatalf("COM_PROCESS_KILL answered %q, want OK", p)
		}
		if p := command(t, c, mysql.COM_REFRESH, 0x10); p[0] != mysql.OK_HEADER {
			t.Fatalf("COM_REFRESH (status) answered %q, want OK", p)
		}
		c.Close()
		deadline := time.Now().Add(30 * time.Second)
		for alive(vid) {
			if time.Now().After(deadline) {
				t.Fatal("the victim connection is still there after COM_PROCESS_KILL")
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, ev = g.mySession(t, m)
		for _, want := range []string{fmt.Sprintf("KILL %d", vid), "FLUSH STATUS"} {
			q := mustQuery(t, ev, want)
			if q.str("text") != want || q.str("protocol") != "command" {
				t.Errorf("recorded %v, want text %q, protocol command", q.Data, want)
			}
		}
	})
}
