package mysql

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/airlock-gw/airlock/internal/target"
)

// serverGreeting is a HandshakeV10 as a MySQL 8 server sends it, with caps.
func serverGreeting(caps uint32) []byte {
	var seq byte
	return appendPacket(nil, &seq, greeting(7, bytes.Repeat([]byte{'s'}, 20), caps))
}

type readOnlyConn struct {
	net.Conn
	r io.Reader
}

func (c readOnlyConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func TestGreetingFilterHidesQueryAttributes(t *testing.T) {
	caps := uint32(serverCaps | gomysql.CLIENT_SSL | gomysql.CLIENT_QUERY_ATTRIBUTES)
	in := append(serverGreeting(caps), "after"...)
	var seen uint32
	g := &greetingFilter{Conn: readOnlyConn{r: bytes.NewReader(in)}, onGreeting: func(c uint32) { seen = c }}
	out, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) || !bytes.HasSuffix(out, []byte("after")) {
		t.Fatalf("filtered stream %q, want the greeting then %q", out, "after")
	}
	if seen&gomysql.CLIENT_QUERY_ATTRIBUTES != 0 || seen&gomysql.CLIENT_SSL == 0 {
		t.Errorf("onGreeting saw caps %#x", seen)
	}
	// The rewritten greeting's upper capability bytes no longer carry the flag; go-mysql reads them.
	body := out[headerLen:]
	i := bytes.IndexByte(body[1:], 0)
	upper := 1 + i + 1 + 4 + 8 + 1 + 2 + 1 + 2
	got := uint32(binary.LittleEndian.Uint16(body[upper:])) << 16
	if got&gomysql.CLIENT_QUERY_ATTRIBUTES != 0 {
		t.Errorf("upper caps %#x still offer CLIENT_QUERY_ATTRIBUTES", got)
	}
}

func TestGreetingFilterRefusesMalformed(t *testing.T) {
	for name, in := range map[string][]byte{
		"short":      {5, 0, 0, 0, 10, 'x', 0, 1, 2},
		"not v10":    {3, 0, 0, 0, 9, 'x', 0},
		"truncated":  {50, 0, 0, 0, 10},
		"err packet": appendPacket(nil, new(byte), newError(1040, "Too many connections").payload()),
	} {
		t.Run(name, func(t *testing.T) {
			g := &greetingFilter{Conn: readOnlyConn{r: bytes.NewReader(in)}}
			if _, err := io.ReadAll(g); err == nil {
				t.Errorf("greeting %x accepted", in)
			}
		})
	}
}

// TestHandshakeKeepsServerStatus: the server status of the handshake's last OK reaches the
// gateway (for the relay and the client's OK): a target whose sql_mode has NO_BACKSLASH_ESCAPES
// says so there, before any statement.
func TestHandshakeKeepsServerStatus(t *testing.T) {
	const want = gomysql.SERVER_STATUS_AUTOCOMMIT | gomysql.SERVER_STATUS_NO_BACKSLASH_ESCAPED
	gw, srv := net.Pipe()
	defer gw.Close()
	go func() {
		defer srv.Close()
		srv.Write(serverGreeting(serverCaps))
		if _, _, _, _, err := readPacket(bufio.NewReader(srv), nil, 1<<16); err != nil {
			return
		}
		seq := byte(2)
		srv.Write(appendPacket(nil, &seq, okPacket(want)))
	}()
	tgt := target.Target{Name: "my", Type: Name, Address: "127.0.0.1:3306", Username: "u", Password: "p", TLS: "disable"}
	dial := func(context.Context) (net.Conn, error) { return gw, nil }
	req, _ := json.Marshal(openRequest{Caps: upstreamCaps, User: "alice"})
	_, state, err := handshakeUpstream(context.Background(), tgt, dial, req)
	if err != nil {
		t.Fatal(err)
	}
	var st upstreamState
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status == nil || *st.Status != want {
		t.Fatalf("handshake state %s: want status %#x", state, want)
	}
}

func TestParseStatus(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want uint16
	}{
		{"", 0},
		{"SERVER_STATUS_AUTOCOMMIT", gomysql.SERVER_STATUS_AUTOCOMMIT},
		{"SERVER_STATUS_AUTOCOMMIT|SERVER_STATUS_NO_BACKSLASH_ESCAPED", gomysql.SERVER_STATUS_AUTOCOMMIT | gomysql.SERVER_STATUS_NO_BACKSLASH_ESCAPED},
		{"SERVER_STATUS_IN_TRANS|(8192)", gomysql.SERVER_STATUS_IN_TRANS | 0x2000},
	} {
		if got := parseStatus(tt.s); got != tt.want {
			t.Errorf("parseStatus(%q) = %#x, want %#x", tt.s, got, tt.want)
		}
	}
}
