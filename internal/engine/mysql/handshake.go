package mysql

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
)

// The connection phase is the gateway's own: go-mysql's server package checks a password it
// must know in advance (it compares scrambles), while the gateway must see what the client typed
// to pass it to its authenticator (a password or an alt_ token). So the engine asks for the
// secret in clear, which clients only send inside TLS: it greets with caching_sha2_password and
// answers the client's first response with "perform full authentication", after which a client
// on TLS sends its password as is; a client that started with another plugin is switched to
// caching_sha2_password first. Without TLS (loopback only, when mysql.allow_plaintext_loopback
// is set) it switches the client to mysql_clear_password.

// serverCaps is what the gateway offers clients: what it can relay unchanged to a target
// session opened by go-mysql's client. Not offered: compression, CLIENT_DEPRECATE_EOF and
// CLIENT_SESSION_TRACK (go-mysql's client does not negotiate them upstream, and the formats must
// match end to end), CLIENT_QUERY_ATTRIBUTES (hidden from go-mysql upstream as well).
const serverCaps = gomysql.CLIENT_LONG_PASSWORD | gomysql.CLIENT_FOUND_ROWS | gomysql.CLIENT_LONG_FLAG |
	gomysql.CLIENT_CONNECT_WITH_DB | gomysql.CLIENT_LOCAL_FILES | gomysql.CLIENT_IGNORE_SPACE |
	gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_INTERACTIVE | gomysql.CLIENT_IGNORE_SIGPIPE |
	gomysql.CLIENT_TRANSACTIONS | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_MULTI_STATEMENTS |
	gomysql.CLIENT_MULTI_RESULTS | gomysql.CLIENT_PS_MULTI_RESULTS | gomysql.CLIENT_PLUGIN_AUTH |
	gomysql.CLIENT_CONNECT_ATTRS | gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA

// upstreamCaps are the client's capabilities the gateway asks the target for on its behalf.
const upstreamCaps = gomysql.CLIENT_FOUND_ROWS | gomysql.CLIENT_IGNORE_SPACE | gomysql.CLIENT_MULTI_STATEMENTS |
	gomysql.CLIENT_MULTI_RESULTS | gomysql.CLIENT_PS_MULTI_RESULTS | gomysql.CLIENT_LOCAL_FILES

// serverVersion is what the greeting announces. Clients read the target's real version with
// SELECT VERSION(); the greeting's only says which protocol dialect to speak (MySQL's, which
// MariaDB's clients speak too).
const serverVersion = "8.0.36-airlock"

// defaultCollation is utf8mb4_general_ci, which MySQL and MariaDB number alike.
const defaultCollation = 45

var connIDs atomic.Uint32

// client is what the connection phase learned about the client.
type client struct {
	conn      net.Conn // TLS-wrapped when negotiated
	r         *bufio.Reader
	tls       *tls.ConnectionState
	caps      uint32 // the client's capabilities, within serverCaps
	collation byte
	user      string
	target    string
	database  string
	attrs     map[string]string
	id        *auth.Identity
	seq       byte // sequence id of the next packet the gateway sends in the connection phase
	connID    uint32
}

// handshakeResponse is a decoded HandshakeResponse41.
type handshakeResponse struct {
	caps      uint32
	collation byte
	user      string
	authData  []byte
	database  string
	plugin    string
	attrs     map[string]string
}

var errMalformed = errors.New("malformed handshake response")

// parseHandshakeResponse decodes a HandshakeResponse41 payload (the SSLRequest is its first 32
// bytes). It never panics on arbitrary input.
func parseHandshakeResponse(p []byte) (*handshakeResponse, error) {
	if len(p) < 32 {
		return nil, errMalformed
	}
	h := &handshakeResponse{caps: binary.LittleEndian.Uint32(p), collation: p[8]}
	if h.caps&gomysql.CLIENT_PROTOCOL_41 == 0 {
		return nil, errors.New("client does not speak protocol 4.1")
	}
	rest := p[32:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return nil, errMalformed
	}
	h.user, rest = string(rest[:i]), rest[i+1:]
	switch {
	case h.caps&gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		n, isNull, m := lenencInt(rest)
		if isNull || m == 0 || uint64(len(rest)-m) < n {
			return nil, errMalformed
		}
		h.authData, rest = rest[m:m+int(n)], rest[m+int(n):]
	case h.caps&gomysql.CLIENT_SECURE_CONNECTION != 0:
		if len(rest) < 1 || len(rest)-1 < int(rest[0]) {
			return nil, errMalformed
		}
		n := int(rest[0])
		h.authData, rest = rest[1:1+n], rest[1+n:]
	default:
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return nil, errMalformed
		}
		h.authData, rest = rest[:i], rest[i+1:]
	}
	if h.caps&gomysql.CLIENT_CONNECT_WITH_DB != 0 && len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			h.database, rest = string(rest), nil
		} else {
			h.database, rest = string(rest[:i]), rest[i+1:]
		}
	}
	if h.caps&gomysql.CLIENT_PLUGIN_AUTH != 0 && len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			h.plugin, rest = string(rest), nil
		} else {
			h.plugin, rest = string(rest[:i]), rest[i+1:]
		}
	}
	if h.caps&gomysql.CLIENT_CONNECT_ATTRS != 0 && len(rest) > 0 {
		n, isNull, m := lenencInt(rest)
		if isNull || m == 0 || uint64(len(rest)-m) < n {
			return nil, errMalformed
		}
		kv := rest[m : m+int(n)]
		h.attrs = map[string]string{}
		for len(kv) > 0 && len(h.attrs) < 64 {
			k, _, n1, ok := lenencString(kv)
			if !ok {
				return nil, errMalformed
			}
			kv = kv[n1:]
			v, _, n2, ok := lenencString(kv)
			if !ok {
				return nil, errMalformed
			}
			kv = kv[n2:]
			h.attrs[string(k)] = string(v)
		}
	}
	return h, nil
}

// greeting is the Protocol::HandshakeV10 payload.
func greeting(connID uint32, scramble []byte, caps uint32) []byte {
	b := make([]byte, 0, 96)
	b = append(b, gomysql.ClassicProtocolVersion)
	b = append(b, serverVersion...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint32(b, connID)
	b = append(b, scramble[:8]...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps))
	b = append(b, defaultCollation)
	b = binary.LittleEndian.AppendUint16(b, gomysql.SERVER_STATUS_AUTOCOMMIT)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps>>16))
	b = append(b, byte(len(scramble)+1))
	b = append(b, make([]byte, 10)...)
	b = append(b, scramble[8:]...)
	b = append(b, 0)
	b = append(b, gomysql.AUTH_CACHING_SHA2_PASSWORD...)
	return append(b, 0)
}

// write sends one connection-phase packet.
func (c *client) write(payload []byte) error {
	_, err := c.conn.Write(appendPacket(nil, &c.seq, payload))
	return err
}

// read reads one connection-phase packet and checks its sequence id.
func (c *client) read() ([]byte, error) {
	p, start, seq, _, err := readPacket(c.r, nil, 1<<16)
	if err != nil {
		return nil, err
	}
	if seq != c.seq {
		return nil, fmt.Errorf("%w: packet out of order (sequence %d, want %d)", errMalformed, seq, c.seq)
	}
	c.seq++
	return p[start:], nil
}

// handshake runs the connection phase up to the point where the client is authenticated. It
// returns a *myError for anything the client should be told; c is non-nil once the client's
// first packet was read (its seq says where to answer).
func (e *Engine) handshake(ctx context.Context, raw net.Conn) (*client, error) {
	c := &client{conn: raw, r: bufio.NewReaderSize(raw, 1024), connID: connIDs.Add(1)}
	scramble := gomysql.RandomBuf(20)
	caps := uint32(serverCaps)
	if e.d.TLS != nil {
		caps |= gomysql.CLIENT_SSL
	}
	if err := c.write(greeting(c.connID, scramble, caps)); err != nil {
		return nil, err
	}
	p, err := c.read()
	if err != nil {
		return nil, err
	}
	if len(p) == 32 && e.d.TLS != nil && binary.LittleEndian.Uint32(p)&gomysql.CLIENT_SSL != 0 {
		// SSLRequest: the rest of the response comes inside TLS. The client does not wait for
		// an answer, so its ClientHello may already be in the buffer.
		var under net.Conn = raw
		if c.r.Buffered() > 0 {
			under = &prefixConn{Conn: raw, r: c.r}
		}
		tc := tls.Server(under, e.d.TLS.Clone())
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		st := tc.ConnectionState()
		c.conn, c.r, c.tls = tc, bufio.NewReaderSize(tc, 1024), &st
		if p, err = c.read(); err != nil {
			return nil, err
		}
	}
	h, err := parseHandshakeResponse(p)
	if err != nil {
		return c, newError(codeHandshake, "bad handshake: "+err.Error())
	}
	c.caps = h.caps & caps
	c.collation = h.collation
	c.user = h.user
	c.attrs = h.attrs
	if u, tgt, ok := strings.Cut(h.user, "/"); ok {
		// user/target: for clients that connect before naming a database (mysqldump); the
		// database field is then a database of that target.
		c.user, c.target, c.database = u, tgt, h.database
	} else {
		c.target, c.database, _ = strings.Cut(h.database, "/")
	}
	if c.user == "" {
		return c, newError(codeAccessDenied, "no user name: connect with --user=<your airlock user name>")
	}
	plaintextOK := e.d.Config.MySQL.AllowPlaintextLoopback && isLoopback(raw.RemoteAddr())
	if c.tls == nil && !plaintextOK {
		return c, newError(codeSecureTransport, "the gateway requires TLS: your password or token would otherwise cross the network in clear. "+
			"Connect with --ssl (mariadb) or --ssl-mode=REQUIRED (mysql), or tls=true / tls=skip-verify (Go)")
	}
	secret, err := c.secret(h, scramble)
	if err != nil {
		return c, err
	}
	id, err := e.d.Auth.Authenticate(ctx, c.user, secret)
	if err != nil {
		e.d.Metrics.AuthFailuresInc(Name)
		e.d.Log.Info("authentication failed", "protocol", Name, "user", c.user, "client", raw.RemoteAddr().String(), "err", err)
		if e.d.Audit != nil {
			if aerr := e.d.Audit.Record(ctx, audit.Entry{Action: audit.ActionLogin, Actor: c.user, Outcome: audit.Denied,
				Client: raw.RemoteAddr().String(), Detail: map[string]string{"protocol": Name, "target": c.target, "reason": auth.Reason(err)}}); aerr != nil {
				e.d.Log.Error("audit log: failed login not recorded", "err", aerr)
			}
		}
		using := "YES"
		if secret == "" {
			using = "NO"
		}
		return c, newError(codeAccessDenied, fmt.Sprintf("Access denied for user '%s' (using password: %s): use your Airlock password or a token from `airlock login`", c.user, using))
	}
	c.id = id
	return c, nil
}

// secret obtains the client's password in clear (see the comment at the top of the file).
func (c *client) secret(h *handshakeResponse, scramble []byte) (string, error) {
	plugin := h.plugin
	data := h.authData
	if c.tls == nil {
		if plugin != gomysql.AUTH_CLEAR_PASSWORD {
			sw := append([]byte{gomysql.EOF_HEADER}, gomysql.AUTH_CLEAR_PASSWORD...)
			if err := c.write(append(sw, 0)); err != nil {
				return "", err
			}
			var err error
			if data, err = c.read(); err != nil {
				return "", clientGone(err)
			}
		}
		return string(bytes.TrimSuffix(data, []byte{0})), nil
	}
	switch plugin {
	case gomysql.AUTH_CLEAR_PASSWORD:
		return string(bytes.TrimSuffix(data, []byte{0})), nil
	case gomysql.AUTH_CACHING_SHA2_PASSWORD:
	default:
		// Switch to caching_sha2_password with a fresh scramble; the client answers with its
		// scramble of the password, which the gateway cannot check.
		copy(scramble, gomysql.RandomBuf(20))
		sw := append([]byte{gomysql.EOF_HEADER}, gomysql.AUTH_CACHING_SHA2_PASSWORD...)
		sw = append(sw, 0)
		sw = append(sw, scramble...)
		if err := c.write(append(sw, 0)); err != nil {
			return "", err
		}
		var err error
		if data, err = c.read(); err != nil {
			return "", clientGone(err)
		}
	}
	if len(data) == 0 {
		return "", nil // an empty password: the client sends nothing more
	}
	// "Perform full authentication": a client on TLS now sends the password as is.
	if err := c.write([]byte{gomysql.MORE_DATE_HEADER, 4}); err != nil {
		return "", err
	}
	p, err := c.read()
	if err != nil {
		return "", clientGone(err)
	}
	return string(bytes.TrimSuffix(p, []byte{0})), nil
}

// clientGone maps the end of the client's input during authentication to io.EOF: a client that
// will not send its password in clear hangs up.
func clientGone(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return io.EOF
	}
	return err
}

func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	_, isUnix := a.(*net.UnixAddr)
	return isUnix
}

// prefixConn reads first from a bufio.Reader that holds bytes already taken off the socket.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }
