package mysql

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/policy"
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

type downConnector struct{}

func (downConnector) Dial(context.Context, target.Target) (net.Conn, error) {
	return nil, io.ErrClosedPipe
}

func (downConnector) Open(context.Context, target.Target, string, []byte) (*connector.Upstream, error) {
	return nil, io.ErrClosedPipe
}

// scriptConn is a client connection whose input is fixed and whose output is captured.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(b []byte) (int, error)  { return c.in.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error) { return c.out.Write(b) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 13306}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

func testEngine(t testing.TB) *Engine {
	cfg := &config.Config{}
	cfg.MySQL.AllowPlaintextLoopback = true
	cfg.SetDefaults()
	return New(engine.Deps{
		Config: cfg, Auth: fakeAuth{}, Connector: downConnector{},
		Targets: fakeTargets{"my": {Name: "my", Type: Name, Address: "127.0.0.1:1"}},
		Policy:  policy.New(nil),
		Log:     slog.New(slog.DiscardHandler),
	})
}

// handshakeResponse41 builds a client's HandshakeResponse41 payload.
func handshakeResponse41(caps uint32, user string, auth []byte, db, plugin string, attrs map[string]string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = binary.LittleEndian.AppendUint32(b, 1<<24)
	b = append(b, 45)
	b = append(b, make([]byte, 23)...)
	b = append(b, user...)
	b = append(b, 0)
	b = gomysql.AppendLengthEncodedInteger(b, uint64(len(auth)))
	b = append(b, auth...)
	b = append(b, db...)
	b = append(b, 0)
	b = append(b, plugin...)
	b = append(b, 0)
	var kv []byte
	for k, v := range attrs {
		kv = append(kv, gomysql.PutLengthEncodedString([]byte(k))...)
		kv = append(kv, gomysql.PutLengthEncodedString([]byte(v))...)
	}
	b = gomysql.AppendLengthEncodedInteger(b, uint64(len(kv)))
	return append(b, kv...)
}

const clientCaps = gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH |
	gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | gomysql.CLIENT_CONNECT_WITH_DB | gomysql.CLIENT_CONNECT_ATTRS

func frames(seq byte, payloads ...[]byte) []byte {
	var out []byte
	for _, p := range payloads {
		out = appendPacket(out, &seq, p)
	}
	return out
}

// FuzzServe feeds arbitrary bytes to the connection phase as a client would send them: the
// engine must answer or hang up, never panic or wait for ever.
func FuzzServe(f *testing.F) {
	f.Add(frames(1, handshakeResponse41(clientCaps, "alice", nil, "my", "mysql_native_password", nil), []byte("pw\x00")))
	f.Add(frames(1, handshakeResponse41(clientCaps, "alice", []byte("pw"), "my/test", "mysql_clear_password", map[string]string{"program_name": "x"})))
	f.Add(frames(1, []byte{0x0d, 0xa2, 0x00, 0x00}))
	f.Add([]byte{1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		e := testEngine(t)
		c := &scriptConn{in: bytes.NewReader(in)}
		e.Serve(context.Background(), c)
	})
}

func FuzzHandshakeResponse(f *testing.F) {
	f.Add(handshakeResponse41(clientCaps, "alice", []byte{1, 2, 3}, "my", "caching_sha2_password", map[string]string{"a": "b"}))
	f.Add(handshakeResponse41(gomysql.CLIENT_PROTOCOL_41, "bob", nil, "", "", nil))
	f.Fuzz(func(t *testing.T, p []byte) {
		parseHandshakeResponse(p)
	})
}

// FuzzParseField checks that a malformed column definition from a target is an error, not a
// crash.
func FuzzParseField(f *testing.F) {
	f.Add(fieldDef("t", "name", gomysql.MYSQL_TYPE_VAR_STRING, 45, 0))
	f.Add([]byte{3, 'd', 'e', 'f'})
	f.Fuzz(func(t *testing.T, p []byte) {
		parseField(p)
	})
}

func fieldDef(table, name string, typ byte, charset uint16, flag uint16) []byte {
	var b []byte
	for _, s := range []string{"def", "test", table, table, name, name} {
		b = append(b, gomysql.PutLengthEncodedString([]byte(s))...)
	}
	b = append(b, 0x0c)
	b = binary.LittleEndian.AppendUint16(b, charset)
	b = binary.LittleEndian.AppendUint32(b, 255)
	b = append(b, typ)
	b = binary.LittleEndian.AppendUint16(b, flag)
	return append(b, 0, 0, 0)
}

// FuzzResponse feeds arbitrary target responses to the relay, with masking on: whatever the
// target sends must be forwarded or refused, never crash the gateway.
func FuzzResponse(f *testing.F) {
	cols := frames(1, []byte{2}, fieldDef("t", "card", gomysql.MYSQL_TYPE_VAR_STRING, 45, 0),
		fieldDef("t", "n", gomysql.MYSQL_TYPE_LONGLONG, 63, 0), []byte{0xfe, 0, 0, 2, 0})
	textRows := frames(byte(5), appendTextRow(nil, [][]byte{[]byte("4111 1111 1111 1111"), []byte("4111111111111111")}), []byte{0xfe, 0, 0, 2, 0})
	binRow := appendBinaryRow(nil, [][]byte{gomysql.PutLengthEncodedString([]byte("a@example.com")), binary.LittleEndian.AppendUint64(nil, 4111111111111111)})
	f.Add(byte(respQuery), append(append([]byte{}, cols...), textRows...))
	f.Add(byte(respExecute), append(append([]byte{}, cols...), frames(5, binRow, []byte{0xfe, 0, 0, 2, 0})...))
	f.Add(byte(respQuery), frames(1, []byte{0, 1, 0, 8, 0, 0, 0}, []byte{0, 0, 0, 2, 0, 0, 0}))
	f.Add(byte(respPrepare), frames(1, []byte{0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0}, fieldDef("", "?", 253, 45, 0), []byte{0xfe, 0, 0, 2, 0},
		fieldDef("t", "a", 3, 63, 0), []byte{0xfe, 0, 0, 2, 0}))
	f.Add(byte(respQuery), frames(1, (&myError{code: 1062, state: "23000", msg: "Duplicate entry 'a@example.com'"}).payload()))
	f.Add(byte(respQuery), frames(1, append([]byte{0xfb}, "/etc/passwd"...)))
	mk, err := masking.New([]string{"credit_card", "email", "column:t.n"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		e := testEngine(t)
		cl := &scriptConn{in: bytes.NewReader(nil)}
		c := &client{conn: cl, r: bufio.NewReader(cl), target: "my", id: &auth.Identity{User: "alice"}}
		up := &upstream{conn: &scriptConn{in: bytes.NewReader(data)}}
		r := newRelay(e, e.d.Log, c, up, nil, newMasker(mk), nil, false)
		r.ur = bufio.NewReader(bytes.NewReader(data))
		r.stmts[1] = &stmtInfo{sql: "select ?", params: 1}
		r.response(respKind(kind%8) + respOK)
	})
}

func FuzzBinaryRow(f *testing.F) {
	f.Add([]byte{gomysql.MYSQL_TYPE_LONGLONG, gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_VAR_STRING},
		appendBinaryRow(nil, [][]byte{make([]byte, 8), {7, 0xd1, 7, 2, 3, 4, 5, 6}, nil}))
	f.Add([]byte{gomysql.MYSQL_TYPE_TIME}, appendBinaryRow(nil, [][]byte{{8, 1, 0, 0, 0, 1, 2, 3, 4}}))
	f.Fuzz(func(t *testing.T, types, p []byte) {
		if len(types) > 64 {
			return
		}
		fields := make([]*gomysql.Field, len(types))
		for i, ty := range types {
			fields[i] = &gomysql.Field{Type: ty}
		}
		vals, err := splitBinaryRow(p, fields, nil)
		if err != nil {
			return
		}
		for i, v := range vals {
			if v != nil {
				binaryText(types[i], i%2 == 0, v)
			}
		}
		again, err := splitBinaryRow(appendBinaryRow(nil, vals), fields, nil)
		if err != nil || !sameValues(vals, again) {
			t.Errorf("round trip of %x: %q, then %q (%v)", p, vals, again, err)
		}
	})
}

func FuzzTextRow(f *testing.F) {
	f.Add(2, appendTextRow(nil, [][]byte{[]byte("a"), nil}))
	f.Fuzz(func(t *testing.T, n int, p []byte) {
		if n < 0 || n > 1000 {
			return
		}
		vals, err := splitTextRow(p, n, nil)
		if err != nil {
			return
		}
		again, err := splitTextRow(appendTextRow(nil, vals), n, nil)
		if err != nil || !sameValues(vals, again) {
			t.Errorf("round trip of %x: %q, then %q (%v)", p, vals, again, err)
		}
	})
}

func sameValues(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
