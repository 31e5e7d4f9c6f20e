package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/filestore"
	"github.com/airlock-gw/airlock/internal/target"
)

// fakeAuth accepts user "alice" with password "pw".
type fakeAuth struct{}

func (fakeAuth) Authenticate(_ context.Context, user, secret string) (*auth.Identity, error) {
	if user == "alice" && secret == "pw" {
		return &auth.Identity{User: user, Role: auth.RoleUser, Method: "password"}, nil
	}
	return nil, auth.ErrBadCredentials
}

type fakeTargets map[string]target.Target

func (f fakeTargets) Lookup(_ context.Context, name string) (target.Target, error) {
	if t, ok := f[name]; ok {
		return t, nil
	}
	return target.Target{}, target.ErrUnknown
}

// scriptConn is a client connection whose input is fixed and whose output is captured. Each
// Read returns at most one chunk, as a client waiting for answers between messages would send.
type scriptConn struct {
	chunks [][]byte
	out    bytes.Buffer
}

func script(chunks ...[]byte) *scriptConn { return &scriptConn{chunks: chunks} }

func (c *scriptConn) Read(b []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

func (c *scriptConn) Write(b []byte) (int, error) { return c.out.Write(b) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15432}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

func testEngine(t testing.TB, rules []config.Policy) *Engine {
	cfg := &config.Config{}
	cfg.Postgres.AllowPlaintextLoopback = true
	cfg.SetDefaults()
	return New(engine.Deps{
		Config:  cfg,
		Auth:    fakeAuth{},
		Targets: fakeTargets{"pg": {Name: "pg", Type: Name, Address: "127.0.0.1:1"}, "ssh1": {Name: "ssh1", Type: "ssh", Address: "127.0.0.1:1"}},
		Policy:  policy.New(rules),
	})
}

func startup(params map[string]string) []byte {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params}).Encode(nil)
	return b
}

func password(pw string) []byte {
	b, _ := (&pgproto3.PasswordMessage{Password: pw}).Encode(nil)
	return b
}

// errorCode returns the SQLSTATE of the first ErrorResponse in a server byte stream.
func errorCode(t *testing.T, out []byte) string {
	t.Helper()
	f := pgproto3.NewFrontend(bytes.NewReader(out), io.Discard)
	for {
		msg, err := f.Receive()
		if err != nil {
			t.Fatalf("no ErrorResponse in server output %q: %v", out, err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			return e.Code
		}
	}
}

func TestServeRefusals(t *testing.T) {
	denyAll := []config.Policy{{Name: "only-bob", Subjects: []string{"user:bob"}, Targets: []string{"*"}, Access: "allow"}}
	tests := []struct {
		name  string
		rules []config.Policy
		input [][]byte
		code  string
	}{
		{"wrong password", nil, [][]byte{startup(map[string]string{"user": "alice", "database": "pg"}), password("nope")}, codeInvalidPassword},
		{"unknown user", nil, [][]byte{startup(map[string]string{"user": "mallory", "database": "pg"}), password("pw")}, codeInvalidPassword},
		{"no user", nil, [][]byte{startup(map[string]string{"database": "pg"})}, codeInvalidAuthSpec},
		{"unknown target", nil, [][]byte{startup(map[string]string{"user": "alice", "database": "nope"}), password("pw")}, codeInvalidCatalog},
		{"target of another type", nil, [][]byte{startup(map[string]string{"user": "alice", "database": "ssh1"}), password("pw")}, codeInvalidCatalog},
		{"policy denies", denyAll, [][]byte{startup(map[string]string{"user": "alice", "database": "pg/test"}), password("pw")}, codeInsufficientPriv},
		{"target down", nil, [][]byte{startup(map[string]string{"user": "alice", "database": "pg"}), password("pw")}, codeCannotConnect},
		{"replication", nil, [][]byte{startup(map[string]string{"user": "alice", "database": "pg", "replication": "true"})}, codeFeatureNotSupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testEngine(t, tt.rules)
			e.d.Connector = downConnector{}
			c := script(tt.input...)
			if err := e.Serve(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			if got := errorCode(t, c.out.Bytes()); got != tt.code {
				t.Fatalf("SQLSTATE %s, want %s; output %q", got, tt.code, c.out.Bytes())
			}
		})
	}
}

type downConnector struct{}

func (downConnector) Dial(context.Context, target.Target) (net.Conn, error) {
	return nil, errors.New("connection refused")
}

func (d downConnector) Open(ctx context.Context, t target.Target, proto string, req []byte) (*connector.Upstream, error) {
	return connector.OpenWith(ctx, t, proto, req, func(ctx context.Context) (net.Conn, error) { return d.Dial(ctx, t) })
}

func TestPlaintextRefusedOffLoopbackSetting(t *testing.T) {
	e := testEngine(t, nil)
	e.d.Config.Postgres.AllowPlaintextLoopback = false
	c := script(startup(map[string]string{"user": "alice", "database": "pg"}))
	e.Serve(context.Background(), c)
	if got := errorCode(t, c.out.Bytes()); got != codeInvalidAuthSpec {
		t.Fatalf("SQLSTATE %s, want %s", got, codeInvalidAuthSpec)
	}
}

func TestSSLAndGSSRequestsAnsweredNoWithoutTLS(t *testing.T) {
	ssl := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}
	gss := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}
	e := testEngine(t, nil)
	e.d.Connector = downConnector{}
	c := script(gss, ssl, startup(map[string]string{"user": "alice", "database": "pg"}), password("nope"))
	e.Serve(context.Background(), c)
	out := c.out.Bytes()
	if !bytes.HasPrefix(out, []byte("NN")) {
		t.Fatalf("want N for GSSENCRequest and SSLRequest, got %q", out)
	}
	if got := errorCode(t, out[2:]); got != codeInvalidPassword {
		t.Fatalf("SQLSTATE %s, want %s", got, codeInvalidPassword)
	}
}

func TestNegotiatesProtocol30(t *testing.T) {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "alice", "database": "pg", "_pq_.test": "1"}}).Encode(nil)
	e := testEngine(t, nil)
	c := script(b, password("nope"))
	e.Serve(context.Background(), c)
	f := pgproto3.NewFrontend(bytes.NewReader(c.out.Bytes()), io.Discard)
	msg, err := f.Receive()
	if err != nil {
		t.Fatal(err)
	}
	npv, ok := msg.(*pgproto3.NegotiateProtocolVersion)
	if !ok || npv.NewestMinorProtocol != 0 || len(npv.UnrecognizedOptions) != 1 {
		t.Fatalf("want NegotiateProtocolVersion 3.0 with one option, got %#v", msg)
	}
}

func TestRowsFromTag(t *testing.T) {
	for tag, want := range map[string]int64{"SELECT 5": 5, "INSERT 0 3": 3, "UPDATE 7": 7, "CREATE TABLE": 9, "": 9} {
		if got := rowsFromTag(tag, 9); got != want {
			t.Errorf("rowsFromTag(%q) = %d, want %d", tag, got, want)
		}
	}
}

// newRecordedRelay returns a relay with a real recording session and no connections, for
// feeding messages to its handlers.
func newRecordedRelay(t testing.TB) (*relay, store.Store, *recorder.Session) {
	st, err := filestore.Open(t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec := &recorder.Recorder{Store: st}
	s, err := rec.Start(context.Background(), recorder.Info{Protocol: Name, Target: "pg", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	e := testEngine(t, nil)
	r := &relay{e: e, log: e.d.Log, c: &client{target: "pg"}, rec: s, limit: 1 << 20,
		stmts: map[string]*stmtInfo{}, portals: map[string]*portalInfo{}, types: newValueRenderer()}
	return r, st, s
}

func encode(t testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// feed frames stream into messages and passes them to handle.
func feed(stream []byte, handle func(typ byte, body []byte)) error {
	r := bufioReader(stream)
	for {
		var buf []byte
		typ, body, err := readMessage(r, &buf, 1<<20)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		handle(typ, buf[body:])
	}
}

func TestRelayRecordsExtendedProtocolPipeline(t *testing.T) {
	r, st, s := newRecordedRelay(t)
	client := encode(t,
		&pgproto3.Parse{Name: "s1", Query: "select $1::int + 1"},
		&pgproto3.Describe{ObjectType: 'S', Name: "s1"},
		&pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 41}}, ResultFormatCodes: []int16{1}},
		&pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{0}, Parameters: [][]byte{[]byte("x")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	// The target answers the describe before the client binds, as pgx does.
	describe := encode(t, &pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{23}},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("?column?"), DataTypeOID: 23, Format: 0}}},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	results := encode(t, &pgproto3.BindComplete{}, &pgproto3.DataRow{Values: [][]byte{{0, 0, 0, 42}}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "22P02", Message: `invalid input syntax for type integer: "x"`},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})

	split := len(encode(t, &pgproto3.Parse{Name: "s1", Query: "select $1::int + 1"}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}))
	must(t, feed(client[:split], r.onClientMessage))
	must(t, feed(describe, targetHandler(r)))
	must(t, feed(client[split:], r.onClientMessage))
	must(t, feed(results, targetHandler(r)))
	r.flushRows()
	must(t, s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}))

	var types []event.Type
	var queries []string
	err := st.Events(context.Background(), s.ID(), 0, func(e *event.Event) error {
		types = append(types, e.Type)
		if e.Type == event.Query {
			queries = append(queries, string(e.Data))
		}
		if e.Type == event.Columns && !bytes.Contains(e.Data, []byte(`"format":1`)) {
			t.Errorf("columns event does not carry the bound binary format: %s", e.Data)
		}
		return nil
	})
	must(t, err)
	// Both Executes were pipelined before any result came back, so both queries are recorded
	// (and forwarded) before the first result.
	// The statement's description is not a result: its columns are recorded with the first
	// rows, with the formats the client bound.
	want := []event.Type{event.SessionStart, event.Query, event.Query, event.Columns, event.Rows, event.Result, event.Error, event.SessionEnd}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
	if !bytes.Contains([]byte(queries[0]), []byte(`"text":"41"`)) {
		t.Errorf("binary int4 parameter not rendered as text: %s", queries[0])
	}
	if !bytes.Contains([]byte(queries[1]), []byte(`"text":"x"`)) {
		t.Errorf("text parameter not recorded: %s", queries[1])
	}
	if len(r.queue) != 0 {
		t.Errorf("pending requests left after ReadyForQuery: %+v", r.queue)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type fakeAudit struct{ entries []audit.Entry }

func (f *fakeAudit) Record(_ context.Context, e audit.Entry) error {
	f.entries = append(f.entries, e)
	return nil
}

func TestFailedLoginIsAudited(t *testing.T) {
	e := testEngine(t, nil)
	fa := &fakeAudit{}
	e.d.Audit = fa
	c := script(startup(map[string]string{"user": "alice", "database": "pg"}), password("guess"))
	e.Serve(context.Background(), c)
	if len(fa.entries) != 1 {
		t.Fatalf("audit entries %+v, want one failed login", fa.entries)
	}
	got := fa.entries[0]
	if got.Action != audit.ActionLogin || got.Outcome != audit.Denied || got.Actor != "alice" || got.Detail["protocol"] != Name {
		t.Errorf("entry %+v", got)
	}
	for k, v := range got.Detail {
		if strings.Contains(v, "guess") || strings.Contains(k, "guess") {
			t.Errorf("the password reached the audit entry: %+v", got)
		}
	}
}

func targetHandler(r *relay) func(byte, []byte) {
	return func(typ byte, body []byte) { r.onTargetMessage(typ, body) }
}
