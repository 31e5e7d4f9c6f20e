package postgres

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// errTooLarge is a protocol violation: a message longer than the configured limit.
type errTooLarge struct{ size, limit int }

func (e errTooLarge) Error() string {
	return fmt.Sprintf("message of %d bytes exceeds the limit of %d bytes", e.size, e.limit)
}

// readMessage reads one typed message (type byte, 4-byte length, body) from r and appends its
// raw bytes to *buf. It returns the type and the body's offset in *buf, so that the caller can
// decode the body and forward the whole message without another copy.
func readMessage(r *bufio.Reader, buf *[]byte, limit int) (typ byte, body int, err error) {
	hdr, err := r.Peek(5)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	typ = hdr[0]
	n := int(binary.BigEndian.Uint32(hdr[1:5]))
	if n < 4 {
		return 0, 0, fmt.Errorf("invalid message length %d", n)
	}
	if n-4 > limit {
		return 0, 0, errTooLarge{n - 4, limit}
	}
	start := len(*buf)
	*buf = grow(*buf, 1+n)
	if _, err := io.ReadFull(r, (*buf)[start:start+1+n]); err != nil {
		*buf = (*buf)[:start]
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	return typ, start + 5, nil
}

// readStartup reads an untyped startup-phase packet (length, then body) of at most limit bytes.
func readStartup(r io.Reader, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > limit {
		return nil, fmt.Errorf("invalid startup packet length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// grow extends b by n bytes, reallocating when needed.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}
