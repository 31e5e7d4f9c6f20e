package mysql

import (
	"bufio"
	"fmt"
	"io"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// The MySQL packet layer: a 3-byte little-endian payload length and a 1-byte sequence id before
// each payload; a payload of maxFrame bytes or more continues in the next frame. This is the only
// framing the engine does by hand: go-mysql's packet.Conn writes each packet with its own
// syscall and copies through a pool, which a relay that forwards whole results in one write
// cannot afford. Everything inside the payloads is decoded with go-mysql's mysql package.
const (
	maxFrame  = 1<<24 - 1
	headerLen = 4
)

// errTooLarge is a packet over the engine's limit.
type errTooLarge struct{ n, limit int }

func (e errTooLarge) Error() string {
	return fmt.Sprintf("packet of %d bytes or more exceeds the gateway's limit of %d bytes (mysql.max_packet_size)", e.n, e.limit)
}

// readPacket reads one packet, joining continuation frames, and appends its payload to dst. It
// returns the extended dst, where the payload starts in it, the sequence id of the first frame
// and how many frames the payload took.
func readPacket(r *bufio.Reader, dst []byte, limit int) (out []byte, start int, seq byte, frames int, err error) {
	start = len(dst)
	var hdr [headerLen]byte
	for {
		if _, err = io.ReadFull(r, hdr[:]); err != nil {
			if frames > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst, start, seq, frames, err
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		if frames == 0 {
			seq = hdr[3]
		}
		frames++
		if len(dst)-start+n > limit {
			return dst, start, seq, frames, errTooLarge{n: len(dst) - start + n, limit: limit}
		}
		dst = grow(dst, n)
		if _, err = io.ReadFull(r, dst[len(dst):len(dst)+n]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst, start, seq, frames, err
		}
		dst = dst[:len(dst)+n]
		if n < maxFrame {
			return dst, start, seq, frames, nil
		}
	}
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), 2*cap(b)+n)
	copy(nb, b)
	return nb
}

// appendPacket frames payload as one packet (several frames when it is large), numbering the
// frames from *seq, which it advances.
func appendPacket(dst []byte, seq *byte, payload []byte) []byte {
	for {
		n := min(len(payload), maxFrame)
		dst = append(dst, byte(n), byte(n>>8), byte(n>>16), *seq)
		*seq++
		dst = append(dst, payload[:n]...)
		payload = payload[n:]
		if n < maxFrame {
			return dst
		}
	}
}

// framePayload turns the payload at dst[start:], read by readPacket after headerLen bytes
// reserved at dst[start-headerLen:], into framed packets numbered from *seq. A small payload
// (the usual case) is framed in place.
func framePayload(dst []byte, start int, seq *byte) []byte {
	n := len(dst) - start
	if n < maxFrame {
		h := dst[start-headerLen:]
		h[0], h[1], h[2], h[3] = byte(n), byte(n>>8), byte(n>>16), *seq
		*seq++
		return dst
	}
	payload := append([]byte(nil), dst[start:]...)
	return appendPacket(dst[:start-headerLen], seq, payload)
}

// lenencInt decodes a length-encoded integer like go-mysql's LengthEncodedInt, which indexes
// past the end of a short buffer: m is 0 when b does not hold a whole one.
func lenencInt(b []byte) (n uint64, isNull bool, m int) {
	if len(b) == 0 {
		return 0, false, 0
	}
	need := 1
	switch b[0] {
	case 0xfc:
		need = 3
	case 0xfd:
		need = 4
	case 0xfe:
		need = 9
	case 0xff:
		return 0, false, 0
	}
	if len(b) < need {
		return 0, false, 0
	}
	return gomysql.LengthEncodedInt(b)
}

// lenencString decodes a length-encoded string; ok is false when b does not hold a whole one.
func lenencString(b []byte) (s []byte, isNull bool, m int, ok bool) {
	n, isNull, k := lenencInt(b)
	if k == 0 {
		return nil, false, 0, false
	}
	if isNull {
		return nil, true, k, true
	}
	if n > uint64(len(b)-k) {
		return nil, false, 0, false
	}
	return b[k : k+int(n)], false, k + int(n), true
}
