package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestPostgresProtocolState drives the extended protocol message by message through the
// gateway to a real PostgreSQL, in the ways a client can make the gateway's idea of a statement
// or a portal differ from the server's: the guardrail must decide, and masking must mask, what
// the server runs.
func TestPostgresProtocolState(t *testing.T) {
	requirePostgres(t)
	g := startGateway(t, gwConfig{
		Targets: []targetCfg{{Name: "pg", Address: pgAddr, Database: "test"}},
		Extra: `policies:
  - name: guarded
    subjects: ["*"]
    targets: ["pg"]
    access: allow
    masking: [email]
    guardrails: [destructive]
`,
	})
	direct := directConn(t, "test")
	// table makes a table of its own for a subtest: an old gateway drops it.
	table := func(t *testing.T) string {
		tbl := fmt.Sprintf("airlock_proto_%d", time.Now().UnixNano()%1e12)
		mustExecDirect(t, direct, "create table "+tbl+" (id int, email text)")
		mustExecDirect(t, direct, "insert into "+tbl+" values (1, 'jane.roe@example.com')")
		t.Cleanup(func() {
			c, err := pgx.Connect(context.Background(), directDSN("test"))
			if err == nil {
				c.Exec(context.Background(), "drop table if exists "+tbl)
				c.Close(context.Background())
			}
		})
		return tbl
	}
	exists := func(t *testing.T, tbl string) {
		t.Helper()
		var n int
		if err := direct.QueryRow(context.Background(), "select count(*) from pg_class where relname = $1", tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("table %s was dropped through the guarded gateway", tbl)
		}
	}

	// roundTrip sends msgs and reads the answers up to ReadyForQuery.
	roundTrip := func(t *testing.T, fe *pgproto3.Frontend, msgs ...pgproto3.FrontendMessage) []pgproto3.BackendMessage {
		t.Helper()
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var out []pgproto3.BackendMessage
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("receive: %v (so far %v)", err, out)
			}
			switch m := m.(type) {
			case *pgproto3.ReadyForQuery:
				return out
			case *pgproto3.DataRow:
				// Receive reuses its buffers: keep a copy.
				vals := make([][]byte, len(m.Values))
				for i, v := range m.Values {
					vals[i] = append([]byte(nil), v...)
				}
				out = append(out, &pgproto3.DataRow{Values: vals})
			case *pgproto3.ErrorResponse:
				e := *m
				out = append(out, &e)
			case *pgproto3.ParameterStatus:
				out = append(out, &pgproto3.ParameterStatus{Name: m.Name, Value: m.Value})
			default:
				out = append(out, m)
			}
		}
	}
	errCode := func(msgs []pgproto3.BackendMessage) string {
		for _, m := range msgs {
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				return e.Code
			}
		}
		return ""
	}
	conn := func(t *testing.T) *pgproto3.Frontend {
		c := g.connect(t, "alice", alicePassword, "pg", uniq("proto"))
		return c.PgConn().Frontend()
	}

	t.Run("ReParseUnderNameInUse", func(t *testing.T) {
		fe, tbl := conn(t), table(t)
		roundTrip(t, fe, &pgproto3.Parse{Name: "s", Query: "drop table " + tbl}, &pgproto3.Sync{})
		if got := errCode(roundTrip(t, fe, &pgproto3.Parse{Name: "s", Query: "select 1"}, &pgproto3.Sync{})); got != "42P05" {
			t.Fatalf("second Parse of s: SQLSTATE %q, want 42P05", got)
		}
		got := roundTrip(t, fe, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		exists(t, tbl)
		if errCode(got) != "42501" {
			t.Errorf("Execute of s: %v, want the refusal 42501", got)
		}
	})

	t.Run("ParseSkippedAfterError", func(t *testing.T) {
		fe, tbl := conn(t), table(t)
		roundTrip(t, fe, &pgproto3.Parse{Query: "drop table " + tbl}, &pgproto3.Sync{})
		roundTrip(t, fe, &pgproto3.Parse{Name: "x", Query: "selec"}, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Sync{})
		got := roundTrip(t, fe, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		exists(t, tbl)
		if errCode(got) != "42501" {
			t.Errorf("Execute of the unnamed statement: %v, want the refusal 42501", got)
		}
	})

	t.Run("PreparedInSQLUnderNameInUse", func(t *testing.T) {
		fe, tbl := conn(t), table(t)
		roundTrip(t, fe, &pgproto3.Parse{Name: "p", Query: "drop table " + tbl}, &pgproto3.Sync{})
		if got := errCode(roundTrip(t, fe, &pgproto3.Query{String: "prepare p as select 1"})); got != "42P05" {
			t.Fatalf("PREPARE p: SQLSTATE %q, want 42P05", got)
		}
		got := roundTrip(t, fe, &pgproto3.Query{String: "execute p"})
		exists(t, tbl)
		if errCode(got) != "42501" {
			t.Errorf("EXECUTE p: %v, want the refusal 42501", got)
		}
	})

	t.Run("MaskUndescribedExecute", func(t *testing.T) {
		fe, tbl := conn(t), table(t)
		got := roundTrip(t, fe, &pgproto3.Parse{Query: "select email from " + tbl}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		var rows []string
		for _, m := range got {
			if d, ok := m.(*pgproto3.DataRow); ok {
				rows = append(rows, string(d.Values[0]))
			}
			if _, ok := m.(*pgproto3.RowDescription); ok {
				t.Errorf("the client got a RowDescription it did not ask for")
			}
		}
		if len(rows) != 1 || strings.Contains(rows[0], "jane.roe") {
			t.Errorf("rows %q, want one masked email", rows)
		}
	})

	t.Run("BinaryRowType", func(t *testing.T) {
		fe, tbl := conn(t), table(t)
		got := roundTrip(t, fe, &pgproto3.Parse{Query: "select u from " + tbl + " u"}, &pgproto3.Bind{ResultFormatCodes: []int16{1}},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
		n := 0
		for _, m := range got {
			if d, ok := m.(*pgproto3.DataRow); ok {
				n++
				if strings.Contains(string(d.Values[0]), "jane.roe") {
					t.Errorf("the row type in binary holds the email unmasked: %q", d.Values[0])
				}
			}
		}
		if n != 1 {
			t.Errorf("got %v, want one row", got)
		}
	})

	t.Run("FunctionCallRefused", func(t *testing.T) {
		fe := conn(t)
		// lower(text), OID 870: harmless, but a function call cannot be classified.
		got := roundTrip(t, fe, &pgproto3.FunctionCall{Function: 870, Arguments: [][]byte{[]byte("X")}})
		if errCode(got) != "42501" {
			t.Errorf("function call: %v, want the refusal 42501", got)
		}
	})

	t.Run("ParameterStatus", func(t *testing.T) {
		fe, tbl := conn(t), table(t)
		got := roundTrip(t, fe, &pgproto3.Query{String: "select set_config('application_name', (select email from " + tbl + " limit 1), false)"})
		seen := false
		for _, m := range got {
			if ps, ok := m.(*pgproto3.ParameterStatus); ok && ps.Name == "application_name" {
				seen = true
				if strings.Contains(ps.Value, "jane.roe") {
					t.Errorf("ParameterStatus application_name = %q, unmasked", ps.Value)
				}
			}
		}
		if !seen {
			t.Errorf("no ParameterStatus for application_name in %v", got)
		}
	})

	t.Run("NonStandardStrings", func(t *testing.T) {
		fe, tbl := conn(t), table(t)
		roundTrip(t, fe, &pgproto3.Query{String: "set standard_conforming_strings = off"})
		// One string to a parser with standard_conforming_strings on; a DROP to the server.
		got := roundTrip(t, fe, &pgproto3.Query{String: `select 'x\'' ; drop table ` + tbl + ` ; -- '`})
		exists(t, tbl)
		if errCode(got) != "42501" {
			t.Errorf("got %v, want the refusal 42501", got)
		}
	})
}
