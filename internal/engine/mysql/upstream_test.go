package mysql

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
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
