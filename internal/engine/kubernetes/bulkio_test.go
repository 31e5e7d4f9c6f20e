package kubernetes

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tlsPair is a TLS connection over loopback TCP: the client reads through a readAheadConn,
// the server writes through slowConn (each write in two halves, a pause between them, so
// that the client sees records cut in the middle).
func tlsPair(t *testing.T) (client *tls.Conn, ra *readAheadConn, server *tls.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ra = &readAheadConn{Conn: raw}
	srvRaw := <-accepted
	server = tls.Server(&slowConn{Conn: srvRaw}, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	client = tls.Client(ra, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, ra, server
}

type slowConn struct {
	net.Conn
	slow bool
}

func (c *slowConn) Write(p []byte) (int, error) {
	if !c.slow || len(p) < 2 {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	time.Sleep(20 * time.Millisecond)
	m, err := c.Conn.Write(p[len(p)/2:])
	return n + m, err
}

// TestDrainReader: a drainReader returns, after one read that waits, what else has arrived
// without waiting for more; records cut in the middle by a read that would block are read
// whole at the next read; and nothing is lost or reordered.
func TestDrainReader(t *testing.T) {
	client, ra, server := tlsPair(t)
	d := &drainReader{r: client, ra: ra}

	// Three records sent at once arrive in one drained read (the first read waits for them).
	rec := func(b byte) []byte { return bytes.Repeat([]byte{b}, 10000) }
	if _, err := server.Write(append(append(rec('a'), rec('b')...), rec('c')...)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	p := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 30000 && time.Now().Before(deadline) {
		n, err := d.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if !bytes.Equal(got, append(append(rec('a'), rec('b')...), rec('c')...)) {
		t.Fatalf("got %d bytes, not the three records in order", len(got))
	}

	// A read does not wait for more than one read's worth: with nothing more sent, the next
	// read blocks (on the first read) and returns as soon as one small write arrives.
	go func() {
		time.Sleep(50 * time.Millisecond)
		server.Write([]byte("x"))
	}()
	n, err := d.Read(p)
	if err != nil || string(p[:n]) != "x" {
		t.Fatalf("read %q, %v; want \"x\"", p[:n], err)
	}

	// Records cut in two with a pause between the halves: the drain stops at the cut (the
	// read would block), and the connection goes on, every byte in order.
	server.NetConn().(*slowConn).slow = true
	var want bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20 {
			b := bytes.Repeat([]byte{byte('A' + i)}, 5000+i*300)
			want.Write(b)
			server.Write(b)
		}
		server.Close()
	}()
	got = got[:0]
	for {
		n, err := d.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
	}
	wg.Wait()
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes, want %d, in order", len(got), want.Len())
	}
	if ra.noWait {
		t.Error("the readAheadConn was left not waiting")
	}
}

// TestReadAheadGrows: the read-ahead buffer starts small and grows only while reads fill it.
func TestReadAheadGrows(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ra := &readAheadConn{Conn: a}
	go b.Write([]byte("hello"))
	p := make([]byte, 64)
	if n, err := ra.Read(p); err != nil || string(p[:n]) != "hello" {
		t.Fatalf("read %q, %v", p[:n], err)
	}
	if len(ra.buf) != minReadAhead {
		t.Errorf("buffer %d after a short read, want %d", len(ra.buf), minReadAhead)
	}
	ra.noWait = true
	if n, err := ra.Read(p); n != 0 || err != errWouldBlock {
		t.Errorf("noWait read of an empty buffer: %d, %v; want errWouldBlock", n, err)
	}
}

// recordingConn counts the writes that reach it.
type recordingConn struct {
	net.Conn
	writes [][]byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

// TestHeldWriter: a write of many TLS records through heldWriter reaches the connection in
// one write, and without the hold each record is a write of its own.
func TestHeldWriter(t *testing.T) {
	rc := &recordingConn{}
	hc := &holdConn{Conn: rc}
	data := bytes.Repeat([]byte("0123456789abcdef"), 8192) // 128 KiB: eight 16 KiB records at least
	records := func(w io.Writer) {
		// A stand-in for crypto/tls: one write per 16 KiB, into a buffer it reuses.
		buf := make([]byte, 16<<10)
		for p := data; len(p) > 0; {
			n := copy(buf, p)
			w.Write(buf[:n])
			p = p[n:]
		}
	}
	hw := heldWriter{w: writerFunc(func(p []byte) (int, error) { records(hc); return len(p), nil }), hc: hc}
	if _, err := hw.Write(data); err != nil {
		t.Fatal(err)
	}
	if len(rc.writes) != 1 || !bytes.Equal(rc.writes[0], data) {
		t.Fatalf("%d writes reached the connection, want 1 with all the data", len(rc.writes))
	}
	rc.writes = nil
	records(hc)
	if len(rc.writes) != 8 {
		t.Fatalf("without a hold: %d writes, want 8", len(rc.writes))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
