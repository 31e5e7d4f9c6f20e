package kubernetes

import (
	"io"
	"net"
	"sync"
)

// Bulk output of an exec (a cat of a big file, a dump to stdout) crosses the gateway as TLS
// records of at most 16 KiB. Relayed one record at a time, each one costs a read from the API
// server, a commit of the recording and a write to the client: three system calls, each of
// which, on the virtual machines this runs on, costs more than the 16 KiB it moves. So the
// target-to-client copy of an upgraded stream takes, after each read that had to wait, what
// has already arrived (readAheadConn under the API server's TLS, drained without blocking),
// records it with one commit, and writes it to the client in one system call (holdConn under
// the client's TLS). A stream that trickles (an interactive shell) reads, commits and writes
// as before, one read at a time: nothing waits for more bytes to come.

// readAheadConn reads its connection through a buffer that grows to maxReadAhead while reads
// fill it, so that one read(2) takes in everything the peer has sent, and it can be read
// without blocking (noWait): a read that would wait returns errWouldBlock instead.
type readAheadConn struct {
	net.Conn
	buf    []byte
	r, w   int
	noWait bool // set and read only by the one goroutine that reads
}

const (
	minReadAhead = 16 << 10
	maxReadAhead = 256 << 10
)

// errWouldBlock is what a noWait read of an empty readAheadConn returns. crypto/tls keeps a
// connection usable after a read error that says it is temporary (as after a read deadline),
// with the part of a record it had read kept for the next read.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "no more bytes have arrived" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

func (c *readAheadConn) Read(p []byte) (int, error) {
	if c.r == c.w {
		if c.noWait {
			return 0, errWouldBlock
		}
		if c.buf == nil {
			c.buf = make([]byte, minReadAhead)
		} else {
			c.buf = grown(c.buf, c.w) // all of it was read: nothing to move
		}
		n, err := c.Conn.Read(c.buf)
		c.r, c.w = 0, n
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}

// grown is buf, or a buffer twice its size (up to maxReadAhead) when the last read, of n
// bytes, filled it.
func grown(buf []byte, n int) []byte {
	if n == len(buf) && len(buf) < maxReadAhead {
		return make([]byte, 2*len(buf))
	}
	return buf
}

// drainReader reads from r (the API server's stream over a readAheadConn): one read that may
// wait, then, without waiting, whatever else has arrived, until p is full.
type drainReader struct {
	r  io.Reader
	ra *readAheadConn
	// drained counts the reads that took more than their first read's bytes (for the log).
	drained int
}

func (d *drainReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil || d.ra == nil {
		return n, err
	}
	first := n
	d.ra.noWait = true
	for n < len(p) && err == nil {
		var m int
		m, err = d.r.Read(p[n:])
		n += m
	}
	d.ra.noWait = false
	if err == errWouldBlock {
		err = nil
	}
	if n > first {
		d.drained++
	}
	return n, err
}

// holdConn is a client connection whose writes can be held and sent together: between hold
// and release, what crypto/tls writes (one record per write) is gathered and goes out in one
// write(2) at release.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  []byte
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		c.buf = append(c.buf, p...) // crypto/tls reuses p for its next record
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *holdConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// release writes what was held, and ends the hold.
func (c *holdConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 2*maxReadAhead {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// heldWriter writes each p to w (the client's TLS connection over hc) as one write(2).
type heldWriter struct {
	w  io.Writer
	hc *holdConn
}

func (h heldWriter) Write(p []byte) (int, error) {
	if h.hc == nil {
		return h.w.Write(p)
	}
	h.hc.hold()
	n, err := h.w.Write(p)
	if rerr := h.hc.release(); err == nil && rerr != nil {
		return 0, rerr
	}
	return n, err
}

// copyBulk copies src to dst like io.Copy, through a buffer that starts at minReadAhead and
// grows to maxReadAhead while reads fill it (an idle interactive stream keeps a small one).
func copyBulk(dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, minReadAhead)
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
			buf = grown(buf, n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
