package ssh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strings"
	"time"
)

// The key exchange lets the client choose the cipher: it takes the first of its own list that
// the server also offers. OpenSSH lists aes128-ctr before aes128-gcm, so a server that offers
// both gets CTR with an HMAC-SHA-256 over every packet, a second pass over the data that GCM
// does not need: 15-20% more of the gateway's CPU per GiB of ssh cat, on the development
// machine (docs/benchmarks.md). Offering GCM alone would shut out the clients without it.
//
// So the listener reads the client's first key-exchange message before it makes its offer,
// and offers only the AES-GCM ciphers when the client has them in both directions, its full
// list otherwise: every client still finds a cipher it announced. RFC 4253 has both sides send
// their KEXINIT without waiting for the other's; for a client that waits anyway, the listener
// gives up after kexPeekWait and makes its usual offer.

// gcmCiphers are the ciphers offered to a client that has them.
var gcmCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}

// kexPeekWait is how long the listener waits for the client's version line and KEXINIT.
var kexPeekWait = 2 * time.Second // a variable for the tests

// maxPeek bounds what the listener reads before the handshake proper: a version line (at most
// 255 bytes) and a KEXINIT (OpenSSH's is under 2 KiB; a bigger one is not looked at).
const maxPeek = 16 << 10

const msgKexInit = 20

// peekCiphers sends the server's version line, reads the client's version line and KEXINIT,
// and returns the ciphers to offer (nil: the usual list) and a connection that gives
// x/crypto/ssh back what was read and drops the version line it sends again. deadline is the
// handshake's, restored afterwards.
func peekCiphers(raw net.Conn, version string, deadline time.Time) (net.Conn, []string, error) {
	line := []byte(version + "\r\n")
	if _, err := raw.Write(line); err != nil {
		return nil, nil, err
	}
	wait := time.Now().Add(kexPeekWait)
	if wait.After(deadline) {
		wait = deadline
	}
	raw.SetReadDeadline(wait)
	got := make([]byte, 0, 2048) // OpenSSH's version line and KEXINIT take about 1.6 KB
	var offer []string
	for len(got) < maxPeek {
		if len(got) == cap(got) {
			got = slices.Grow(got, cap(got))
		}
		n, err := raw.Read(got[len(got):cap(got)])
		got = got[:len(got)+n]
		if enc, done := clientKexInit(got); done {
			offer = gcmOffer(enc)
			break
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break // the client waits for our KEXINIT: the usual offer
			}
			return nil, nil, err
		}
	}
	raw.SetReadDeadline(deadline)
	return &replayConn{Conn: raw, pre: got, skip: line}, offer, nil
}

// gcmOffer is the GCM ciphers the client announced for both directions, or nil.
func gcmOffer(enc [2][]string) []string {
	var offer []string
	for _, c := range gcmCiphers {
		if slices.Contains(enc[0], c) && slices.Contains(enc[1], c) {
			offer = append(offer, c)
		}
	}
	return offer
}

// clientKexInit reads the ciphers (client to server, server to client) from the start of what
// a client sent: lines up to its "SSH-" version line, then its first binary packet, which must
// be a KEXINIT. done is false while more bytes are needed; it is true with nil lists when what
// was sent is not that (then the usual offer is made and x/crypto/ssh judges the bytes).
func clientKexInit(b []byte) (enc [2][]string, done bool) {
	// The version line; RFC 4253 lets only servers send other lines before it, x/crypto/ssh
	// skips them from either side, and so does this.
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return enc, len(b) > 8<<10
		}
		line := b[:i]
		b = b[i+1:]
		if bytes.HasPrefix(line, []byte("SSH-")) {
			break
		}
	}
	if len(b) < 5 {
		return enc, false
	}
	plen := binary.BigEndian.Uint32(b)
	if plen < 2 || plen > maxPeek {
		return enc, true
	}
	if uint32(len(b)-4) < plen {
		return enc, false
	}
	pad := uint32(b[4])
	if pad+1 > plen {
		return enc, true
	}
	p := b[5 : 4+plen-pad]
	if len(p) < 17 || p[0] != msgKexInit {
		return enc, true
	}
	p = p[17:] // message type and cookie
	var lists [4][]string
	for i := range lists {
		if len(p) < 4 {
			return enc, true
		}
		n := binary.BigEndian.Uint32(p)
		if uint32(len(p)-4) < n {
			return enc, true
		}
		if n > 0 {
			lists[i] = strings.Split(string(p[4:4+n]), ",")
		}
		p = p[4+n:]
	}
	// kex, host key, then the ciphers client to server and server to client.
	return [2][]string{lists[2], lists[3]}, true
}

// replayConn gives x/crypto/ssh the bytes peekCiphers read before the connection's own, and
// drops the version line it writes (peekCiphers sent the same one already).
type replayConn struct {
	net.Conn
	pre  []byte
	skip []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *replayConn) Write(p []byte) (int, error) {
	if len(c.skip) == 0 {
		return c.Conn.Write(p)
	}
	n := min(len(p), len(c.skip))
	if !bytes.Equal(p[:n], c.skip[:n]) {
		return 0, errors.New("ssh: the listener's version line changed after it was sent")
	}
	c.skip = c.skip[n:]
	if n == len(p) {
		return n, nil
	}
	m, err := c.Conn.Write(p[n:])
	return n + m, err
}
