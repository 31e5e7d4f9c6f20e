package mysql

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	myclient "github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/pingcap/tidb/pkg/parser/charset"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

// upstream is an authenticated connection to the target, taken over from go-mysql's client.
type upstream struct {
	conn    net.Conn
	tls     bool
	version string
	via     string // the agent that carries it; "" when direct
	status  uint16 // the target's server status at the end of the handshake
}

func init() { connector.RegisterHandshake(Name, handshakeUpstream) }

// openRequest is what the gateway asks of the handshake (connector.Open's req). It never
// carries a credential.
type openRequest struct {
	Database  string `json:"database,omitempty"`
	Caps      uint32 `json:"caps"`      // the client's capabilities to ask the target for
	Collation byte   `json:"collation"` // the client's connection collation
	User      string `json:"user"`      // the Airlock user, for the target's connection attributes
}

// upstreamState is what the handshake hands back (connector.Upstream.State).
type upstreamState struct {
	TLS      bool   `json:"tls"`
	Version  string `json:"version"`
	Database string `json:"database,omitempty"` // the database connected to
	// Status is the server status of the handshake's last OK (SERVER_STATUS_AUTOCOMMIT,
	// SERVER_STATUS_NO_BACKSLASH_ESCAPED, ...); nil from an agent that does not send it.
	Status *uint16 `json:"status,omitempty"`
}

// dialUpstream connects to t as the target's own user, through the connector: the handshake
// runs where t's credentials are (here, or on t's agent).
func (e *Engine) dialUpstream(ctx context.Context, t target.Target, c *client) (*upstream, error) {
	req, err := json.Marshal(openRequest{Database: c.database, Caps: c.caps & upstreamCaps, Collation: c.collation, User: c.id.User})
	if err != nil {
		return nil, err
	}
	u, err := e.d.Connector.Open(ctx, t, Name, req)
	if err != nil {
		return nil, err
	}
	var st upstreamState
	if err := json.Unmarshal(u.State, &st); err != nil {
		u.Conn.Close()
		return nil, fmt.Errorf("target %q: handshake state: %w", t.Name, err)
	}
	if st.Database != "" {
		c.database = st.Database
	}
	up := &upstream{conn: u.Conn, tls: st.TLS, version: st.Version, via: u.Via, status: gomysql.SERVER_STATUS_AUTOCOMMIT}
	if st.Status != nil {
		up.status = *st.Status
	}
	return up, nil
}

// handshakeUpstream is the MySQL connector.Handshake: go-mysql's client does the
// authentication (mysql_native_password, caching_sha2_password) and TLS, then the relay takes
// over its socket.
func handshakeUpstream(ctx context.Context, t target.Target, dialTarget connector.DialFunc, reqBytes []byte) (net.Conn, []byte, error) {
	var req openRequest
	if err := json.Unmarshal(reqBytes, &req); err != nil {
		return nil, nil, fmt.Errorf("mysql handshake request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var tlsCfg *tls.Config
	mode := t.UpstreamTLS()
	switch mode {
	case "disable":
	case "prefer", "require":
		tlsCfg = &tls.Config{InsecureSkipVerify: true}
	case "verify-ca", "verify-full":
		host, _, _ := net.SplitHostPort(t.Address)
		tlsCfg = &tls.Config{ServerName: host}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("target %q: ca_file: %w", t.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("target %q: ca_file %s holds no PEM certificate", t.Name, t.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
		if mode == "verify-ca" {
			// Check the chain but not the name, like libpq's verify-ca.
			tlsCfg.InsecureSkipVerify = true
			tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
				opts := x509.VerifyOptions{Roots: tlsCfg.RootCAs, Intermediates: x509.NewCertPool()}
				for _, ic := range cs.PeerCertificates[1:] {
					opts.Intermediates.AddCert(ic)
				}
				_, err := cs.PeerCertificates[0].Verify(opts)
				return err
			}
		}
	default:
		return nil, nil, fmt.Errorf("target %q: tls %q is not disable, prefer, require, verify-ca or verify-full", t.Name, mode)
	}

	var gc *myclient.Conn
	var raw *greetingFilter
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		nc, err := dialTarget(ctx)
		if err != nil {
			return nil, err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		if dl, ok := ctx.Deadline(); ok {
			nc.SetDeadline(dl)
		}
		raw = &greetingFilter{Conn: nc, onGreeting: func(caps uint32) {
			// sslmode prefer: a target without TLS is spoken to in plain.
			if caps&gomysql.CLIENT_SSL == 0 && mode == "prefer" && gc != nil {
				gc.SetTLSConfig(nil)
			}
		}}
		return raw, nil
	}
	opts := []myclient.Option{func(cc *myclient.Conn) error {
		gc = cc
		if tlsCfg != nil {
			cc.SetTLSConfig(tlsCfg)
		}
		cc.SetCapability(req.Caps & upstreamCaps)
		if col, err := charset.GetCollationByID(int(req.Collation)); err == nil {
			cc.SetCollation(col.Name)
		}
		cc.SetAttributes(map[string]string{"_client_name": "airlock", "program_name": "airlock-gateway", "airlock_user": req.User})
		return nil
	}}
	if req.Database == "" {
		// The target's default, where the target is defined: for an agent's target only the
		// agent knows it.
		req.Database = t.Database
	}
	gcc, err := myclient.ConnectWithDialer(ctx, "tcp", t.Address, t.Username, t.Password, req.Database, dial, opts...)
	if err != nil {
		var me *gomysqlError
		if errors.As(err, &me) {
			// The target's ERR, with its code for the gateway when this runs on an agent.
			err = &connector.CodedError{Code: fmt.Sprintf("%d %s", me.Code, me.State), Err: err}
		}
		return nil, nil, err
	}
	nc := gcc.Conn.Conn
	if raw == nil || raw.err != nil {
		nc.Close()
		return nil, nil, errors.New("target connection lost during the handshake")
	}
	nc.SetDeadline(time.Time{})
	_, isTLS := nc.(*tls.Conn)
	status := parseStatus(gcc.StatusString())
	st, _ := json.Marshal(upstreamState{TLS: isTLS, Version: gcc.GetServerVersion(), Database: req.Database, Status: &status})
	return nc, st, nil
}

// statusNames are the flags as go-mysql's Conn.StatusString names them.
var statusNames = map[string]uint16{
	"SERVER_STATUS_IN_TRANS":             gomysql.SERVER_STATUS_IN_TRANS,
	"SERVER_STATUS_AUTOCOMMIT":           gomysql.SERVER_STATUS_AUTOCOMMIT,
	"SERVER_MORE_RESULTS_EXISTS":         gomysql.SERVER_MORE_RESULTS_EXISTS,
	"SERVER_STATUS_NO_GOOD_INDEX_USED":   gomysql.SERVER_STATUS_NO_GOOD_INDEX_USED,
	"SERVER_STATUS_NO_INDEX_USED":        gomysql.SERVER_STATUS_NO_INDEX_USED,
	"SERVER_STATUS_CURSOR_EXISTS":        gomysql.SERVER_STATUS_CURSOR_EXISTS,
	"SERVER_STATUS_LAST_ROW_SEND":        gomysql.SERVER_STATUS_LAST_ROW_SEND,
	"SERVER_STATUS_DB_DROPPED":           gomysql.SERVER_STATUS_DB_DROPPED,
	"SERVER_STATUS_NO_BACKSLASH_ESCAPED": gomysql.SERVER_STATUS_NO_BACKSLASH_ESCAPED,
	"SERVER_STATUS_METADATA_CHANGED":     gomysql.SERVER_STATUS_METADATA_CHANGED,
	"SERVER_QUERY_WAS_SLOW":              gomysql.SERVER_QUERY_WAS_SLOW,
	"SERVER_PS_OUT_PARAMS":               gomysql.SERVER_PS_OUT_PARAMS,
}

// parseStatus turns go-mysql's Conn.StatusString back into the status flags: the client keeps
// the status of the handshake's last OK, and that string is the only way it shows all of it.
// Flags it has no name for it writes as "(N)".
func parseStatus(s string) uint16 {
	var st uint16
	for _, name := range strings.Split(s, "|") {
		if f, ok := statusNames[name]; ok {
			st |= f
		} else if n, err := strconv.ParseUint(strings.Trim(name, "()"), 10, 16); err == nil && strings.HasPrefix(name, "(") {
			st |= uint16(n)
		}
	}
	return st
}

// greetingFilter hands go-mysql's client the target's greeting with CLIENT_QUERY_ATTRIBUTES
// cleared, so that the upstream session speaks the COM_QUERY and COM_STMT_EXECUTE formats of a
// client that did not negotiate it (the gateway never offers it). It also refuses a greeting too
// short to decode, which go-mysql would index out of range.
type greetingFilter struct {
	net.Conn
	done       bool
	pending    []byte
	err        error
	onGreeting func(caps uint32)
}

func (g *greetingFilter) Read(b []byte) (int, error) {
	if !g.done {
		g.done = true
		if err := g.readGreeting(); err != nil {
			g.err = err
			return 0, err
		}
	}
	if len(g.pending) > 0 {
		n := copy(b, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(b)
}

func (g *greetingFilter) readGreeting() error {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(g.Conn, hdr[:]); err != nil {
		return err
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if n > 1<<16 {
		return fmt.Errorf("target greeting of %d bytes", n)
	}
	p := make([]byte, headerLen+n)
	copy(p, hdr[:])
	if _, err := io.ReadFull(g.Conn, p[headerLen:]); err != nil {
		return err
	}
	g.pending = p
	body := p[headerLen:]
	if len(body) > 0 && body[0] == gomysql.ERR_HEADER {
		if _, _, msg, ok := decodeErr(body); ok {
			return &targetRefused{msg: msg}
		}
		return nil
	}
	// protocol version, version NUL, connection id, 8 bytes of scramble, filler, lower caps,
	// collation, status, upper caps, scramble length, 10 reserved, rest of scramble.
	i := bytes.IndexByte(body[min(1, len(body)):], 0)
	if len(body) < 1 || body[0] != gomysql.ClassicProtocolVersion || i < 0 {
		return errors.New("target sent a malformed greeting")
	}
	pos := 1 + i + 1 + 4 + 8 + 1
	if len(body) < pos+2+1+2+2+1+10+13 {
		return errors.New("target sent a malformed greeting")
	}
	upper := pos + 2 + 1 + 2
	caps := uint32(binary.LittleEndian.Uint16(body[pos:])) | uint32(binary.LittleEndian.Uint16(body[upper:]))<<16
	caps &^= gomysql.CLIENT_QUERY_ATTRIBUTES
	binary.LittleEndian.PutUint16(body[upper:], uint16(caps>>16))
	if g.onGreeting != nil {
		g.onGreeting(caps)
	}
	return nil
}

// targetRefused is an ERR packet the target sent instead of a greeting (too many connections,
// host blocked).
type targetRefused struct{ msg string }

func (t *targetRefused) Error() string { return "target refused the connection: " + t.msg }
