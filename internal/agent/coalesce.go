package agent

import (
	"encoding/binary"
	"net"
)

// coalescer merges each yamux data frame's header with its body into one Write.
//
// As of yamux v0.1.2, the session's send loop writes a frame's 12-byte header and its body in
// two calls; over TLS that is two records and two syscalls for every message a session sends,
// which measurably slowed small request/response traffic (pgbench -S) through the tunnel.
// The header layout is yamux's wire format (version, type, flags, stream id, length), and
// only a data frame (type 0) with a non-zero length is followed by a body, so the merge never
// holds back anything else. Only yamux's single send loop writes, so no locking is needed.
type coalescer struct {
	net.Conn
	hdr []byte // a data frame's header waiting for its body
	buf []byte
}

const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

func (c *coalescer) Write(b []byte) (int, error) {
	if c.hdr == nil && len(b) == yamuxHeaderSize && b[1] == yamuxTypeData && binary.BigEndian.Uint32(b[8:12]) > 0 {
		c.hdr = append(c.buf[:0], b...)
		return len(b), nil
	}
	if c.hdr == nil {
		return c.Conn.Write(b)
	}
	out := append(c.hdr, b...)
	c.hdr = nil
	_, err := c.Conn.Write(out)
	c.buf = out[:0]
	if err != nil {
		return 0, err
	}
	return len(b), nil
}
