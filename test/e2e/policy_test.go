package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestPolicySettings drives the policy settings the PostgreSQL engine applies (issue 5):
// masking at the wire, destructive guardrails, recording off and max_duration, through psql
// and pgx against a table of its own.
func TestPolicySettings(t *testing.T) {
	psql := requireTool(t, "psql")
	requirePostgres(t)
	tbl := fmt.Sprintf("airlock_pol_%d", time.Now().UnixNano()%1e12)

	policies := fmt.Sprintf(`policies:
  - name: guarded
    subjects: ["*"]
    targets: ["pg"]
    access: allow
    masking: [credit_card, email, %s]
    guardrails: [destructive]
  - name: unrecorded
    subjects: ["*"]
    targets: ["pg_norec"]
    access: allow
    recording: "off"
  - name: approved
    subjects: ["*"]
    targets: ["pg_approve"]
    access: allow
    guardrails: ["approve:destructive"]
  - name: short
    subjects: ["*"]
    targets: ["pg_short"]
    access: allow
    max_duration: 2s
`, yq("column:"+tbl+".cvv"))
	g := startGateway(t, gwConfig{
		Targets: []targetCfg{
			{Name: "pg", Address: pgAddr, Database: "test"},
			{Name: "pg_norec", Address: pgAddr, Database: "test"},
			{Name: "pg_short", Address: pgAddr, Database: "test"},
			{Name: "pg_approve", Address: pgAddr, Database: "test"},
		},
		Extra: policies,
	})

	// The table is created and filled directly, so that no raw value ever passes the gateway
	// from the client side (query texts are recorded as the client sent them).
	direct := directConn(t, "test")
	ctx := context.Background()
	mustExecDirect(t, direct, fmt.Sprintf(`create table %s (
		id int primary key, card_sp text unique, card_dash text, card_num bigint unique,
		email text, cvv text)`, tbl))
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), directDSN("test"))
		if err == nil {
			c.Exec(context.Background(), "drop table if exists "+tbl)
			c.Close(context.Background())
		}
	})
	mustExecDirect(t, direct, fmt.Sprintf(`insert into %s values
		(1, '4111 1111 1111 1111', '5500-0000-0000-0004', 4111111111111111, 'jane.roe@example.com', '123'),
		(2, '4012 8888 8888 1881', '3782-822463-10005', 5555555555554444, 'john.smith@corp.example.org', '987'),
		(99, '6011 1111 1111 1117', '6011-0009-9013-9424', 4242424242424242, 'del.me@example.net', '555')`, tbl))
	raw := []string{
		"4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "5500000000000004",
		"4012 8888 8888 1881", "4012888888881881", "3782-822463-10005", "378282246310005",
		"5555555555554444", "6011 1111 1111 1117", "6011111111111117", "6011-0009-9013-9424",
		"6011000990139424", "4242424242424242",
		"jane.roe@example.com", "john.smith@corp.example.org", "del.me@example.net",
	}
	count := func(t *testing.T) int {
		t.Helper()
		var n int
		if err := direct.QueryRow(ctx, "select count(*) from "+tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("Masking", func(t *testing.T) {
		var seen strings.Builder // everything any client received
		pfx := uniq("polmask")

		// psql: simple protocol, text format.
		r := run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", pfx+"_psql"), nil, psql,
			"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "select * from "+tbl+" order by id")
		seen.WriteString(r.Stdout + r.Stderr)
		if r.Code != 0 {
			t.Fatalf("psql select: %s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		want1 := "1|**** **** **** 1111|****-****-****-0004|************1111|j****@****.com|***"
		if len(lines) != 3 || lines[0] != want1 {
			t.Errorf("psql select printed %q, want 3 rows, the first %q", lines, want1)
		}
		for _, l := range lines {
			if !strings.HasSuffix(l, "|***") {
				t.Errorf("psql row %q: cvv column not masked whole", l)
			}
		}

		// Cast to bytea, the values are still masked: bytea that is text is masked as text
		// (shown as psql shows bytea, in hex).
		r = run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", pfx+"_psqlbytea"), nil, psql,
			"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "select convert_to(email, 'UTF8'), card_sp::bytea, convert_from(convert_to(email, 'UTF8'), 'UTF8') from "+tbl+" where id = 1")
		seen.WriteString(r.Stdout + r.Stderr)
		for _, raw := range []string{"jane.roe@example.com", "4111 1111 1111 1111"} {
			if strings.Contains(r.Stdout, "\\x"+hex.EncodeToString([]byte(raw))) {
				t.Errorf("bytea of %q reached psql unmasked: %s", raw, r.Stdout)
			}
		}
		if r.Code != 0 || !strings.Contains(r.Stdout, "\\x"+hex.EncodeToString([]byte("j****@****.com"))) || !strings.HasSuffix(strings.TrimSpace(r.Stdout), "|j****@****.com") {
			t.Errorf("psql bytea casts: %s", r)
		}

		// psql: COPY TO STDOUT, and a unique violation whose DETAIL quotes a card.
		r = run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", pfx+"_psqlcopy"), nil, psql,
			"-X", "-v", "ON_ERROR_STOP=1", "-c", "copy "+tbl+" to stdout")
		seen.WriteString(r.Stdout + r.Stderr)
		if r.Code != 0 {
			t.Fatalf("psql copy to stdout: %s", r)
		}
		if !strings.Contains(r.Stdout, "1\t**** **** **** 1111\t****-****-****-0004\t") {
			t.Errorf("psql copy to stdout: first row not masked as expected:\n%s", r.Stdout)
		}
		r = run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", pfx+"_psqlerr"), nil, psql,
			"-X", "-v", "VERBOSITY=verbose", "-c",
			fmt.Sprintf("insert into %[1]s (id, card_sp) select 100, card_sp from %[1]s where id = 1", tbl))
		seen.WriteString(r.Stdout + r.Stderr)
		if r.Code == 0 || !strings.Contains(r.Stderr, "23505") || !strings.Contains(r.Stderr, "(**** **** **** 1111)") {
			t.Errorf("psql unique violation: want 23505 with DETAIL Key (card_sp)=(**** **** **** 1111): %s", r)
		}

		// pgx: default mode (extended protocol, binary for the types pgx knows, so the bigint).
		c := g.connect(t, "alice", alicePassword, "pg", pfx+"_pgx")
		rows, err := c.Query(ctx, "select id, card_sp, card_dash, card_num, email, cvv from "+tbl+" order by id")
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			ID               int32
			CardSp, CardDash string
			CardNum          int64
			Email, CVV       string
		}
		var got []row
		for rows.Next() {
			var x row
			if err := rows.Scan(&x.ID, &x.CardSp, &x.CardDash, &x.CardNum, &x.Email, &x.CVV); err != nil {
				t.Fatalf("scan: %v", err)
			}
			if fd := rows.FieldDescriptions(); fd[3].Format != pgx.BinaryFormatCode {
				t.Errorf("pgx received the bigint column in format %d, want binary", fd[3].Format)
			}
			got = append(got, x)
			fmt.Fprintf(&seen, "%+v\n", x)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		want := []row{
			{1, "**** **** **** 1111", "****-****-****-0004", 1111, "j****@****.com", "***"},
			{2, "**** **** **** 1881", "", 4444, "j****@****.org", "***"},
			{99, "**** **** **** 1117", "****-****-****-9424", 4242, "d****@****.net", "***"},
		}
		if len(got) != len(want) {
			t.Fatalf("pgx rows = %+v, want %d rows", got, len(want))
		}
		for i := range want {
			w := want[i]
			if w.CardDash == "" {
				w.CardDash = got[i].CardDash // the amex grouping: checked by the raw scan below
			}
			if got[i] != w {
				t.Errorf("pgx row %d = %+v, want %+v", i, got[i], w)
			}
		}

		// pgx: every column in binary format (text is sent as its bytes).
		rows, err = c.Query(ctx, "select card_sp, card_dash, email, cvv, card_num from "+tbl+" order by id",
			pgx.QueryResultFormats{pgx.BinaryFormatCode})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			for i, v := range rows.RawValues() {
				if rows.FieldDescriptions()[i].Format != pgx.BinaryFormatCode {
					t.Errorf("column %d not binary", i)
				}
				seen.Write(v)
				seen.WriteByte('\n')
			}
			var sp, dash, email, cvv string
			var num int64
			if err := rows.Scan(&sp, &dash, &email, &cvv, &num); err != nil {
				t.Fatal(err)
			}
			if n == 0 && (sp != "**** **** **** 1111" || email != "j****@****.com" || cvv != "***" || num != 1111) {
				t.Errorf("binary row 0 = %q %q %q %d", sp, email, cvv, num)
			}
			n++
		}
		if err := rows.Err(); err != nil || n != 3 {
			t.Fatalf("binary query: %d rows, err %v", n, err)
		}

		// pgx: binary numeric, arrays and records: containers are walked, elements masked.
		rows, err = c.Query(ctx, "select card_num::numeric(20,2), array[card_sp, email, null], row(id, card_sp, array[card_num::numeric]) from "+tbl+" where id = 1",
			pgx.QueryResultFormats{pgx.BinaryFormatCode})
		if err != nil {
			t.Fatal(err)
		}
		n = 0
		for rows.Next() {
			vals := rows.RawValues()
			for i, v := range vals {
				if rows.FieldDescriptions()[i].Format != pgx.BinaryFormatCode {
					t.Errorf("container column %d not binary", i)
				}
				seen.Write(v)
				seen.WriteByte('\n')
			}
			if bytes.Contains(vals[2], []byte("4111 1111 1111 1111")) || !bytes.Contains(vals[2], []byte("**** **** **** 1111")) {
				t.Errorf("record not masked: %q", vals[2])
			}
			var num pgtype.Numeric
			var arr []*string
			if err := rows.Scan(&num, &arr, nil); err != nil {
				t.Fatal(err)
			}
			if f, _ := num.Float64Value(); f.Float64 != 1111 {
				t.Errorf("binary numeric card = %+v, want 1111.00", num)
			}
			if len(arr) != 3 || arr[0] == nil || *arr[0] != "**** **** **** 1111" || arr[1] == nil || *arr[1] != "j****@****.com" || arr[2] != nil {
				t.Errorf("binary text[] = %v", arr)
			}
			n++
		}
		if err := rows.Err(); err != nil || n != 1 {
			t.Fatalf("container query: %d rows, err %v", n, err)
		}

		// pgx: simple protocol, every column in text format (the bigint becomes the star form).
		rows, err = c.Query(ctx, "select card_sp, card_dash, email, cvv, card_num from "+tbl+" order by id",
			pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		n = 0
		for rows.Next() {
			vals := rows.RawValues()
			for _, v := range vals {
				seen.Write(v)
				seen.WriteByte('\n')
			}
			if n == 0 && (string(vals[0]) != "**** **** **** 1111" || string(vals[2]) != "j****@****.com" ||
				string(vals[3]) != "***" || string(vals[4]) != "************1111") {
				t.Errorf("text row 0 = %q", vals)
			}
			n++
		}
		if err := rows.Err(); err != nil || n != 3 {
			t.Fatalf("simple protocol query: %d rows, err %v", n, err)
		}

		// pgx: unique violations (text and bigint card columns) and COPY TO STDOUT.
		for _, col := range []string{"card_sp", "card_num"} {
			_, err := c.Exec(ctx, fmt.Sprintf("insert into %[1]s (id, %[2]s) select 100, %[2]s from %[1]s where id = $1", tbl, col), 1)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "23505" {
				t.Fatalf("unique violation on %s: err %v, want 23505", col, err)
			}
			fmt.Fprintf(&seen, "%s\n%s\n%s\n", err.Error(), pe.Detail, pe.Message)
			if !strings.Contains(pe.Detail, "1111)") || !strings.Contains(pe.Detail, "*") {
				t.Errorf("unique violation on %s: DETAIL %q, want the card masked", col, pe.Detail)
			}
		}
		var cp bytes.Buffer
		if _, err := c.PgConn().CopyTo(ctx, &cp, "copy "+tbl+" (id, card_sp, card_dash, card_num, email) to stdout"); err != nil {
			t.Fatal(err)
		}
		seen.Write(cp.Bytes())
		if !strings.Contains(cp.String(), "\t************1111\tj****@****.com") {
			t.Errorf("pgx copy to stdout not masked as expected:\n%s", cp.String())
		}

		// NOTIFY: a listener through the gateway gets the payload masked.
		listener := g.connect(t, "alice", alicePassword, "pg", pfx+"_listen")
		ch := "ch_" + tbl
		if _, err := listener.Exec(ctx, "listen "+ch); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, fmt.Sprintf("select pg_notify($1, card_sp || ' / ' || email) from %s where id = 1", tbl), ch); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		nt, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		seen.WriteString(nt.Payload + "\n")
		if nt.Payload != "**** **** **** 1111 / j****@****.com" {
			t.Errorf("notification payload = %q, want it masked", nt.Payload)
		}
		listener.Close(ctx)
		c.Close(ctx)

		for _, s := range raw {
			if strings.Contains(seen.String(), s) {
				t.Errorf("a client received the raw value %q", s)
			}
		}

		// The recording: no raw value in any event of any session, and mask events with hits.
		tok := g.adminToken(t)
		ss := waitAllEnded(t, g, 5)
		maskHits, maskedSeen := 0, false
		for _, s := range ss {
			code, body := g.api(t, tok, "GET", "/api/v1/sessions/"+url.PathEscape(s.ID)+"/events", nil)
			if code != 200 {
				t.Fatalf("events of %s: HTTP %d", s.ID, code)
			}
			// A positive control: the recording holds the values readably, as the client saw them.
			maskedSeen = maskedSeen || bytes.Contains(body, []byte("j****@****.com"))
			for _, v := range raw {
				if bytes.Contains(body, []byte(v)) {
					t.Errorf("session %s's recording holds the raw value %q", s.ID, v)
				}
			}
			for _, e := range ofType(g.events(t, tok, s.ID), "mask") {
				if h, ok := e.Data["hits"].(map[string]any); ok && len(h) > 0 {
					maskHits++
				}
			}
		}
		if !maskedSeen {
			t.Errorf("no recording holds the masked value j****@****.com: the raw-value scan proves nothing")
		}
		if maskHits == 0 {
			t.Errorf("no mask event with hits in %d sessions", len(ss))
		}

		// An auditor's reveal gives back the originals of masked rows, COPY data, errors and
		// notifications: the recording kept them, sealed.
		aud := g.token(t, "audrey", audPassword)
		var revealed strings.Builder
		for _, s := range ss {
			code, body := g.api(t, aud, "GET", "/api/v1/sessions/"+url.PathEscape(s.ID)+"/events?reveal=true", nil)
			if code != 200 {
				t.Fatalf("reveal events of %s: HTTP %d %s", s.ID, code, body)
			}
			var a struct {
				Events []struct {
					Type         string          `json:"type"`
					RevealedRows json.RawMessage `json:"revealed_rows"`
					RevealedData json.RawMessage `json:"revealed_data"`
					RevealedText string          `json:"revealed_text"`
					RevealError  string          `json:"reveal_error"`
				} `json:"events"`
			}
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatal(err)
			}
			for _, e := range a.Events {
				if e.RevealError != "" {
					t.Errorf("session %s: %s event: reveal error %s", s.ID, e.Type, e.RevealError)
				}
				fmt.Fprintf(&revealed, "%s: %s %s %s\n", e.Type, e.RevealedRows, e.RevealedData, e.RevealedText)
			}
		}
		for _, want := range []string{
			`[["1","4111 1111 1111 1111"`,                   // a masked row
			"1\t4111 1111 1111 1111\t5500-0000-0000-0004\t", // psql's COPY TO STDOUT
			`"code":"23505"`,                                // the unique violation
			`4111 1111 1111 1111) already exists.`,
			`"payload":"4111 1111 1111 1111 / jane.roe@example.com"`, // NOTIFY's payload
		} {
			if !strings.Contains(revealed.String(), want) {
				t.Errorf("revealed originals lack %q:\n%s", want, revealed.String())
			}
		}
	})

	// column:TABLE.cvv covers that table's cvv under any alias, and not another table's cvv; a
	// computed column named cvv (no source table) is masked by its name.
	t.Run("ColumnRulesByTable", func(t *testing.T) {
		other := tbl + "_other"
		mustExecDirect(t, direct, fmt.Sprintf(`create table %s (id int, cvv text)`, other))
		t.Cleanup(func() {
			c, err := pgx.Connect(context.Background(), directDSN("test"))
			if err == nil {
				c.Exec(context.Background(), "drop table if exists "+other)
				c.Close(context.Background())
			}
		})
		mustExecDirect(t, direct, fmt.Sprintf(`insert into %s values (1, '246')`, other))
		for _, tc := range []struct{ sql, want string }{
			{"select cvv from " + tbl + " where id = 1", "***"},
			{"select cvv as code from " + tbl + " where id = 1", "***"},
			{"select t.cvv from " + tbl + " t join " + other + " o on o.id = t.id", "***"},
			{"select cvv from " + other, "246"},
			{"select o.cvv from " + tbl + " t join " + other + " o on o.id = t.id", "246"},
			{"select '13' || '5' as cvv", "***"},
		} {
			r := run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", uniq("polcol")), nil, psql,
				"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", tc.sql)
			if r.Code != 0 {
				t.Fatalf("%s: %s", tc.sql, r)
			}
			if got := strings.TrimSpace(r.Stdout); got != tc.want {
				t.Errorf("%s printed %q, want %q", tc.sql, got, tc.want)
			}
		}
		// The extended protocol: pgx describes the statement, then executes it.
		c := g.connect(t, "alice", alicePassword, "pg", uniq("polcolx"))
		var a, b string
		if err := c.QueryRow(ctx, "select t.cvv as a, o.cvv as b from "+tbl+" t join "+other+" o on o.id = t.id").Scan(&a, &b); err != nil {
			t.Fatal(err)
		}
		if a != "***" || b != "246" {
			t.Errorf("pgx: a=%q b=%q, want *** and 246", a, b)
		}
	})

	t.Run("Guardrails", func(t *testing.T) {
		before := count(t)
		stmts := []string{
			"DELETE FROM " + tbl,
			"delete from " + tbl + " where 1=1",
			"/* c */ DrOp TaBlE " + tbl,
			"TRUNCATE " + tbl,
			"WITH d AS (DELETE FROM " + tbl + " RETURNING *) SELECT 1",
			"select 1; delete from " + tbl,
		}
		for i, s := range stmts {
			app := uniq(fmt.Sprintf("polguard_psql%d", i))
			r := run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", app), nil, psql,
				"-X", "-v", "VERBOSITY=verbose", "-c", s)
			if r.Code == 0 || !strings.Contains(r.Stderr, "42501") {
				t.Errorf("psql -c %q: want refused with 42501: %s", s, r)
			}
			_, ev := g.waitSession(t, app)
			if !hasGuardDeny(ev) {
				t.Errorf("psql -c %q: no guardrail event with action deny: %v", s, ofType(ev, "guardrail"))
			}
		}
		if n := count(t); n != before {
			t.Fatalf("after psql refusals the table has %d rows, want %d", n, before)
		}

		app := uniq("polguard_pgx")
		c := g.connect(t, "alice", alicePassword, "pg", app, "default_query_exec_mode=simple_protocol")
		for _, s := range stmts {
			_, err := c.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol)
			if code := pgErrCode(err); code != "42501" {
				t.Errorf("pgx simple %q: err %v, want SQLSTATE 42501", s, err)
			}
		}
		if n := count(t); n != before {
			t.Fatalf("after pgx refusals the table has %d rows, want %d", n, before)
		}
		tag, err := c.Exec(ctx, "DELETE FROM "+tbl+" WHERE id = 99", pgx.QueryExecModeSimpleProtocol)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("DELETE ... WHERE id = 99: %v %v, want 1 row deleted", tag, err)
		}
		if n := count(t); n != before-1 {
			t.Errorf("after the allowed delete the table has %d rows, want %d", n, before-1)
		}
		c.Close(ctx)
		_, ev := g.waitSession(t, app)
		if deny := countGuard(ev, "deny"); deny < len(stmts) {
			t.Errorf("pgx session: %d guardrail deny events, want %d: %v", deny, len(stmts), ofType(ev, "guardrail"))
		}

		// Extended protocol: a destructive Execute is refused with 42501 and nothing reaches the
		// target. Before d4a67e6 the refusal was FATAL and ended the session; since then it is an
		// ERROR answered in order and the session goes on. Either way the outcome must be
		// consistent: FATAL ends the connection, ERROR leaves it usable.
		before = count(t)
		app = uniq("polguard_ext")
		c = g.connect(t, "alice", alicePassword, "pg", app)
		rows, _ := c.Query(ctx, "DELETE FROM "+tbl)
		rows.Close()
		err = rows.Err()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Fatalf("extended DELETE FROM: err %v, want SQLSTATE 42501", err)
		}
		wantEnd := "client_terminated"
		switch pe.Severity {
		case "FATAL":
			wantEnd = "guardrail_denied"
			if err := c.Ping(ctx); err == nil {
				t.Errorf("connection still usable after a FATAL guardrail refusal")
			}
		case "ERROR":
			var one int
			if err := c.QueryRow(ctx, "select $1::int", 1).Scan(&one); err != nil || one != 1 {
				t.Errorf("extended: after an ERROR refusal the session should go on: %v", err)
			}
			rows, _ := c.Query(ctx, "delete from "+tbl+" where $1::int = 1", 1) // no column: every row
			rows.Close()
			if code := pgErrCode(rows.Err()); code != "42501" {
				t.Errorf("extended, second destructive statement: err %v, want 42501", rows.Err())
			}
		default:
			t.Errorf("extended: severity %q, want FATAL or ERROR", pe.Severity)
		}
		if n := count(t); n != before {
			t.Errorf("after the extended refusal the table has %d rows, want %d", n, before)
		}
		c.Close(ctx)
		s, ev := g.waitSession(t, app)
		if !hasGuardDeny(ev) {
			t.Errorf("extended: no guardrail deny event: %v", ofType(ev, "guardrail"))
		}
		if r := endReason(ev); r != wantEnd {
			t.Errorf("extended: end reason %q (listed %q), want %s", r, s.EndReason, wantEnd)
		}
	})

	// A destructive statement on a target whose guardrail requires approval waits for an
	// approver (psql with it), then runs, or is refused with the approver's reason.
	t.Run("Approval", func(t *testing.T) {
		at := tbl + "_appr"
		mustExecDirect(t, direct, "create table "+at+" (id int)")
		t.Cleanup(func() { direct.Exec(context.Background(), "drop table if exists "+at) })
		admin := g.adminToken(t)
		for _, tc := range []struct {
			decision, stmt string
			ok             bool
		}{{"approve", "DELETE FROM " + at, true}, {"deny", "TRUNCATE " + at, false}} {
			mustExecDirect(t, direct, "insert into "+at+" values (1), (2)")
			app := uniq("polapprove")
			done := make(chan cmdResult, 1)
			go func() {
				done <- run(2*time.Minute, g.psqlEnv("alice", alicePassword, "pg_approve", app), nil, psql, "-X", "-v", "VERBOSITY=verbose", "-c", tc.stmt)
			}()
			id := g.waitApprovalRequest(t, admin, tc.stmt, func(r approvalRequest) bool {
				return r.Statement == tc.stmt && r.User == "alice" && r.Target == "pg_approve"
			}).ID
			select {
			case r := <-done:
				t.Fatalf("%q ran without waiting for the approval: %s", tc.stmt, r)
			default:
			}
			if code, body := g.api(t, admin, "POST", "/api/v1/requests/"+id+"/"+tc.decision, map[string]string{"reason": tc.decision + " in the test"}); code != 200 {
				t.Fatalf("%s: %d %s", tc.decision, code, body)
			}
			r := <-done
			var n int
			if err := direct.QueryRow(ctx, "select count(*) from "+at).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if tc.ok && (r.Code != 0 || n != 0) {
				t.Errorf("approved %q: %s; %d rows left", tc.stmt, r, n)
			}
			if !tc.ok && (r.Code == 0 || !strings.Contains(r.Stderr, "42501") || !strings.Contains(r.Stderr, "deny in the test") || n != 2) {
				t.Errorf("refused %q: %s; %d rows left", tc.stmt, r, n)
			}
			_, ev := g.waitSession(t, app)
			var decided []string
			for _, e := range ofType(ev, "guardrail") {
				if e.Data["approved"] != nil {
					decided = append(decided, fmt.Sprintf("%v by %s", e.Data["approved"], e.str("by")))
				}
			}
			if want := fmt.Sprintf("%v by admin", tc.ok); strings.Join(decided, ",") != want {
				t.Errorf("%q: recorded decisions %v, want %s", tc.stmt, decided, want)
			}
		}
		mustExecDirect(t, direct, "delete from "+at)
	})

	t.Run("RecordingOff", func(t *testing.T) {
		r := run(time.Minute, g.psqlEnv("alice", alicePassword, "pg_norec", uniq("polnorec")), nil, psql,
			"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "select 'unrecorded-'||'ok'")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "unrecorded-ok" {
			t.Fatalf("psql through pg_norec: %s", r)
		}
		// A recorded session started afterwards is listed once it ends; by then an unrecorded
		// one would have been too.
		app := uniq("polrec_after")
		r = run(time.Minute, g.psqlEnv("alice", alicePassword, "pg", app), nil, psql, "-X", "-c", "select 1")
		if r.Code != 0 {
			t.Fatalf("psql through pg: %s", r)
		}
		g.waitSession(t, app)
		if ss := g.sessions(t, g.adminToken(t), sessionFilter{Target: "pg_norec"}); len(ss) != 0 {
			t.Errorf("sessions listed for pg_norec (recording: off): %+v", ss)
		}
		for _, s := range g.sessions(t, g.adminToken(t), sessionFilter{}) {
			if s.Target == "pg_norec" {
				t.Errorf("session %s listed for pg_norec (recording: off)", s.ID)
			}
		}
	})

	t.Run("MaxDuration", func(t *testing.T) {
		app := uniq("polshort")
		c := g.connect(t, "alice", alicePassword, "pg_short", app)
		var one int
		if err := c.QueryRow(ctx, "select 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := c.PgConn().WaitForNotification(wctx) // idle: returns when the gateway ends it
		cancel()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Severity != "FATAL" {
			t.Fatalf("idle connection after %v: err %v, want a FATAL error from the gateway within 15s", time.Since(start), err)
		}
		s, ev := g.waitSession(t, app)
		if r := endReason(ev); r != "max_duration" || (s.EndReason != "" && s.EndReason != "max_duration") {
			t.Errorf("end reason %q (listed %q), want max_duration", r, s.EndReason)
		}
	})
}

func mustExecDirect(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// waitAllEnded waits until the gateway lists at least n client sessions and all have ended.
func waitAllEnded(t *testing.T, g *gateway, n int) []Session {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ss []Session
		for _, s := range g.sessions(t, g.adminToken(t), sessionFilter{}) {
			if s.Type != "audit" { // the gateway's own audit log never ends
				ss = append(ss, s)
			}
		}
		ok := len(ss) >= n
		for _, s := range ss {
			ok = ok && s.ended()
		}
		if ok {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: want >= %d sessions, all ended; have %+v", n, ss)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countGuard(ev []Event, action string) int {
	n := 0
	for _, e := range ofType(ev, "guardrail") {
		if e.str("action") == action {
			n++
		}
	}
	return n
}

func hasGuardDeny(ev []Event) bool { return countGuard(ev, "deny") > 0 }
