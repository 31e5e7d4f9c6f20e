package kubernetes

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	spdyframe "github.com/moby/spdystream/spdy"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/airlock-gw/airlock/internal/event"
)

// fakePortForward answers a port-forward like a kubelet, in the protocol the request asks
// for: SPDY, SPDY tunnelled in WebSocket, or the WebSocket channel protocol. Each forwarded
// connection's data is answered with "echo: " and the data once the client closed its side;
// port 9999 answers on the error stream instead, as a kubelet that cannot connect does.
func fakePortForward(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.Header.Get("Upgrade"), "SPDY/"):
		w.Header().Set("X-Stream-Protocol-Version", "portforward.k8s.io")
		conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, echoStreams)
		if conn == nil {
			return
		}
		<-conn.CloseChan()
	case r.Header.Get("Sec-WebSocket-Protocol") == "SPDY/3.1+portforward.k8s.io":
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n")
		brw.Flush()
		conn, err := spdy.NewServerConnection(&wsConn{Conn: c, r: brw.Reader}, echoStreams)
		if err != nil {
			return
		}
		<-conn.CloseChan()
	default: // v4.channel.k8s.io: one connection per port
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n")
		brw.Flush()
		port := binary.LittleEndian.AppendUint16(nil, 8080)
		c.Write(wsFrame(2, append([]byte{0}, port...), false))
		c.Write(wsFrame(2, append([]byte{1}, port...), false))
		for {
			op, msg, err := readFrame(brw.Reader)
			if err != nil || op == 8 {
				return
			}
			if op == 2 && len(msg) > 0 && msg[0] == 0 {
				c.Write(wsFrame(2, append([]byte{0}, "echo: "+string(msg[1:])...), false))
				c.Write(wsFrame(8, []byte{0x03, 0xe8}, false))
				return
			}
		}
	}
}

// echoStreams is a SPDY port-forward's stream handler: the echo of fakePortForward.
func echoStreams(st httpstream.Stream, replySent <-chan struct{}) error {
	go func() {
		<-replySent
		h := st.Headers()
		switch {
		case h.Get("streamType") == "error" && h.Get("port") == "9999":
			st.Write([]byte("error forwarding port 9999: connection refused"))
			st.Close()
		case h.Get("streamType") == "error":
			st.Close()
		case h.Get("streamType") == "data" && h.Get("port") != "9999":
			in, _ := io.ReadAll(st)
			st.Write(append([]byte("echo: "), in...))
			st.Close()
		case h.Get("streamType") == "data":
			io.Copy(io.Discard, st)
			st.Close()
		}
	}()
	return nil
}

// wsConn carries a byte stream in WebSocket binary messages (as SPDY is tunnelled for
// port-forward): each Write is one or more messages, masked when the client writes.
type wsConn struct {
	net.Conn
	r    *bufio.Reader
	mask bool
	buf  []byte
	wmu  sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		op, payload, err := readFrame(c.r)
		if err != nil {
			return 0, err
		}
		if op == 8 {
			return 0, io.EOF
		}
		c.buf = payload
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		k := min(len(p), 60000)
		if _, err := c.Conn.Write(wsFrame(2, p[:k], c.mask)); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// forwardThrough runs three connections over conn: a short one, one longer than the harness's
// forward limit, and one to port 9999, which the kubelet cannot reach.
func forwardThrough(t *testing.T, conn httpstream.Connection) (long []byte) {
	t.Helper()
	long = bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	for i, tc := range []struct {
		port string
		data []byte
	}{{"8080", []byte("ping through the gateway\n")}, {"8080", long}, {"9999", []byte("lost")}} {
		mk := func(typ string) httpstream.Stream {
			hdr := http.Header{}
			hdr.Set("streamType", typ)
			hdr.Set("port", tc.port)
			hdr.Set("requestID", fmt.Sprint(i))
			st, err := conn.CreateStream(hdr)
			if err != nil {
				t.Fatalf("create %s stream: %v", typ, err)
			}
			return st
		}
		errS := mk("error")
		errS.Close()
		data := mk("data")
		data.Write(tc.data)
		data.Close()
		got, _ := io.ReadAll(data)
		msg, _ := io.ReadAll(errS)
		if tc.port == "9999" {
			if !strings.Contains(string(msg), "connection refused") {
				t.Errorf("error stream of port 9999: %q", msg)
			}
			continue
		}
		if want := "echo: " + string(tc.data); string(got) != want {
			t.Errorf("connection %d got %q, want %q", i, clip(string(got), 80), clip(want, 80))
		}
	}
	return long
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// checkForwards checks the recording of forwardThrough's connections.
func checkForwards(t *testing.T, ev []*event.Event, long []byte) {
	t.Helper()
	type conn struct {
		open, closed *event.ForwardData
		from, to     []byte
		truncated    bool
	}
	conns := map[uint32]*conn{}
	var order []uint32
	get := func(ch uint32) *conn {
		if conns[ch] == nil {
			conns[ch] = &conn{}
			order = append(order, ch)
		}
		return conns[ch]
	}
	for _, e := range ev {
		switch e.Type {
		case event.Forward:
			var d event.ForwardData
			json.Unmarshal(e.Data, &d)
			c := get(d.Channel)
			if d.Closed {
				c.closed = &d
			} else {
				c.open = &d
			}
		case event.ForwardBytes:
			var d event.ForwardBytesData
			json.Unmarshal(e.Data, &d)
			c := get(d.Channel)
			if c.open == nil || c.closed != nil {
				t.Errorf("forward.data outside its connection: %s", e.Data)
			}
			if d.From == "client" {
				c.from = append(c.from, e.Raw...)
			} else {
				c.to = append(c.to, e.Raw...)
			}
			c.truncated = c.truncated || d.Truncated
		}
	}
	if len(order) != 3 {
		t.Fatalf("%d forwarded connections recorded, want 3", len(order))
	}
	hexSum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	for i, ch := range order {
		c := conns[ch]
		if c.open == nil || c.closed == nil {
			t.Fatalf("connection %d: open %v closed %v", i, c.open, c.closed)
		}
		if c.open.Kind != "portforward" || !strings.HasPrefix(c.open.Destination, "a/p:") || c.open.Request == 0 {
			t.Errorf("connection %d opened as %+v", i, c.open)
		}
	}
	short := conns[order[0]]
	if string(short.from) != "ping through the gateway\n" || string(short.to) != "echo: ping through the gateway\n" {
		t.Errorf("recorded %q and %q", short.from, short.to)
	}
	if d := short.closed; d.BytesFromClient != 25 || d.BytesToClient != 31 || d.SHA256FromClient != hexSum(short.from) || d.Truncated || d.Destination != "a/p:8080" {
		t.Errorf("short connection closed as %+v", d)
	}
	lc := conns[order[1]]
	if len(lc.from) != 4096 || !bytes.Equal(lc.from, long[:4096]) || !lc.truncated {
		t.Errorf("the long connection's content: %d bytes kept from the client (want the first 4096), truncated %v", len(lc.from), lc.truncated)
	}
	if d := lc.closed; d.BytesFromClient != int64(len(long)) || d.SHA256FromClient != hexSum(long) ||
		d.SHA256ToClient != hexSum(append([]byte("echo: "), long...)) || !d.Truncated {
		t.Errorf("long connection closed as %+v", d)
	}
	if d := conns[order[2]].closed; !strings.Contains(d.Error, "connection refused") || d.Destination != "a/p:9999" {
		t.Errorf("refused connection closed as %+v", d)
	}
}

func TestPortForwardOverSPDYRecorded(t *testing.T) {
	h := newHarness(t, nil)
	conn := h.spdy(t, "portforward", "portforward.k8s.io")
	long := forwardThrough(t, conn)
	conn.Close()
	checkForwards(t, h.events(t), long)
}

func TestPortForwardTunnelledInWebSocketRecorded(t *testing.T) {
	h := newHarness(t, nil)
	c, br := h.websocket(t, "portforward", "SPDY/3.1+portforward.k8s.io")
	conn, err := spdy.NewClientConnection(&wsConn{Conn: c, r: br, mask: true})
	if err != nil {
		t.Fatal(err)
	}
	long := forwardThrough(t, conn)
	conn.Close()
	c.Close()
	checkForwards(t, h.events(t), long)
}

func TestPortForwardOverWebSocketChannelsRecorded(t *testing.T) {
	h := newHarness(t, nil)
	c, br := h.websocket(t, "portforward?ports=8080", "v4.channel.k8s.io")
	for range 2 { // the port on the data and the error channel
		if op, msg, err := readFrame(br); err != nil || op != 2 || len(msg) != 3 || binary.LittleEndian.Uint16(msg[1:]) != 8080 {
			t.Fatalf("port prefix: %d %x %v", op, msg, err)
		}
	}
	c.Write(wsFrame(2, append([]byte{0}, "ping over channels\n"...), true))
	op, msg, err := readFrame(br)
	if err != nil || op != 2 || string(msg) != "\x00echo: ping over channels\n" {
		t.Fatalf("echo: %d %q %v", op, msg, err)
	}
	readFrame(br) // close
	c.Write(wsFrame(8, []byte{0x03, 0xe8}, true))
	c.Close()

	var open, closed *event.ForwardData
	var from, to string
	for _, e := range h.events(t) {
		switch e.Type {
		case event.Forward:
			var d event.ForwardData
			json.Unmarshal(e.Data, &d)
			if d.Closed {
				closed = &d
			} else {
				open = &d
			}
		case event.ForwardBytes:
			var d event.ForwardBytesData
			json.Unmarshal(e.Data, &d)
			if d.From == "client" {
				from += string(e.Raw)
			} else {
				to += string(e.Raw)
			}
		}
	}
	if open == nil || open.Destination != "a/p:8080" || closed == nil || closed.BytesFromClient != 19 || closed.BytesToClient != 25 {
		t.Errorf("forward events: open %+v closed %+v", open, closed)
	}
	if from != "ping over channels\n" || to != "echo: ping over channels\n" {
		t.Errorf("recorded %q and %q (the port prefixes are not content)", from, to)
	}
}

// FuzzSPDYTap feeds arbitrary bytes, in small pieces, to the SPDY tap of a port-forward: it must
// never panic, and the bytes pass unchanged (where the tap cannot follow them, errUnrecordable,
// the first of them only).
func FuzzSPDYTap(f *testing.F) {
	// A real SPDY stream: a client's streams and data, as k8s.io/streaming writes them.
	var buf bytes.Buffer
	fr, _ := spdyframe.NewFramer(&buf, nil)
	hdr := http.Header{"streamType": {"data"}, "port": {"8080"}, "requestID": {"0"}}
	fr.WriteFrame(&spdyframe.SynStreamFrame{StreamId: 1, Headers: hdr})
	fr.WriteFrame(&spdyframe.DataFrame{StreamId: 1, Data: []byte("ping"), Flags: spdyframe.DataFlagFin})
	fr.WriteFrame(&spdyframe.RstStreamFrame{StreamId: 1, Status: spdyframe.Cancel})
	f.Add(buf.Bytes(), true)
	f.Add([]byte{0x80, 3, 0, 1, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, false)
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 3, 'a', 'b', 'c'}, false)
	f.Fuzz(func(t *testing.T, in []byte, fromClient bool) {
		s := &session{eng: &Engine{forwardLimit: 64}}
		fw := newForwards(s, 1, "a", "p", nil)
		r := &streamRecorder{s: s, id: 1, fwd: fw, spdy: true}
		dir := "target"
		if fromClient {
			dir = "client"
		}
		out, err := io.ReadAll(iotest.HalfReader(r.tap(bytes.NewReader(in), dir)))
		if err != nil && !errors.Is(err, errUnrecordable) {
			t.Fatal(err)
		}
		if err != nil && !bytes.HasPrefix(in, out) || err == nil && !bytes.Equal(out, in) {
			t.Fatalf("the tap changed the bytes it passed on")
		}
		r.end()
	})
}

// A port-forward's SPDY that the tap cannot follow (here a control frame over 1 MiB) ends the
// stream, both sides, instead of passing on what is not recorded.
func TestSPDYTapEndsStreamItCannotFollow(t *testing.T) {
	s := &session{eng: &Engine{forwardLimit: 64}}
	stopped := false
	r := &streamRecorder{s: s, id: 1, fwd: newForwards(s, 1, "a", "p", nil), spdy: true, stop: func() { stopped = true }}
	in := append([]byte{0x80, 3, 0, 1, 0, 0x20, 0, 0}, make([]byte, 4096)...) // SYN_STREAM of 2 MiB
	out, err := io.ReadAll(r.fromClient(bytes.NewReader(in)))
	if !errors.Is(err, errUnrecordable) || len(out) != 0 || !stopped || !errors.Is(r.err(), errUnrecordable) {
		t.Errorf("passed %d bytes, err %v, stream ended %v, recorded reason %v", len(out), err, stopped, r.err())
	}
}
