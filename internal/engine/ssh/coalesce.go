package ssh

import (
	"net"
	"sync"
	"time"
)

// bufioSize is the size of the bufio.Writer x/crypto/ssh's transport writes through.
const bufioSize = 4096

// holdFor bounds how long a held write waits for the rest of its packet (a variable for the
// tests).
var holdFor = 200 * time.Microsecond

// coalesceConn halves the system calls x/crypto/ssh makes to send bulk data. Its transport
// writes a packet's 4-byte length and then its body into a 4 KiB bufio.Writer: the first 4 KiB
// go out when the buffer fills and the rest of a 32 KiB packet in a second write(2), two
// segments for the peer to take in. A write of exactly 4 KiB is that first part (nearly
// always: the rest follows at once, from the same call), so coalesceConn holds it and sends it
// with the next write in one writev(2). A packet that happened to end exactly at the buffer's
// end has no next write; a timer sends it after holdFor.
type coalesceConn struct {
	net.Conn
	mu    sync.Mutex
	held  []byte
	timer *time.Timer
	err   error // a held write that failed after its Write had returned
}

func newCoalesceConn(c net.Conn) *coalesceConn { return &coalesceConn{Conn: c} }

func (c *coalesceConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.held) > 0 {
		c.timer.Stop()
		bufs := net.Buffers{c.held, p}
		_, err := bufs.WriteTo(c.Conn)
		c.held = c.held[:0]
		if err != nil {
			c.err = err
			return 0, err
		}
		return len(p), nil
	}
	if len(p) != bufioSize {
		return c.Conn.Write(p)
	}
	c.held = append(c.held[:0], p...)
	if c.timer == nil {
		c.timer = time.AfterFunc(holdFor, c.flushHeld)
	} else {
		c.timer.Reset(holdFor)
	}
	return len(p), nil
}

// flushHeld sends a held write whose packet ended with it.
func (c *coalesceConn) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 || c.err != nil {
		return
	}
	if _, err := c.Conn.Write(c.held); err != nil {
		c.err = err
	}
	c.held = c.held[:0]
}

// Close sends a held write first: it is the end of a packet.
func (c *coalesceConn) Close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if len(c.held) > 0 && c.err == nil {
		c.Conn.Write(c.held)
		c.held = c.held[:0]
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
