package postgres

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-gw/airlock/internal/target"
)

// upstream is an authenticated connection to the target, taken over from pgconn.
type upstream struct {
	conn     net.Conn
	tls      bool
	pid      uint32
	secret   []byte
	params   map[string]string
	txStatus byte
}

// Startup parameters never passed on to the target: identity and routing are the gateway's.
var dropParams = map[string]bool{"user": true, "database": true, "replication": true}

// dialUpstream connects to t as the target's own user. pgconn does the authentication (SCRAM,
// MD5, trust) and TLS; the connection is then hijacked for the relay.
func (e *Engine) dialUpstream(ctx context.Context, t target.Target, c *client) (*upstream, error) {
	cfg, err := e.upstreamConfig(t, c.database, c.params)
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	if n := hc.Frontend.ReadBufferLen(); n != 0 {
		hc.Conn.Close()
		return nil, fmt.Errorf("target sent %d unexpected bytes after ReadyForQuery", n)
	}
	_, isTLS := hc.Conn.(*tls.Conn)
	if tc, ok := hc.Conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return &upstream{conn: hc.Conn, tls: isTLS, pid: hc.PID, secret: hc.SecretKey, params: hc.ParameterStatuses, txStatus: hc.TxStatus}, nil
}

// upstreamConfig is how the gateway connects to database on t: the target's address, TLS mode
// and credentials, and the client's startup parameters but those in dropParams.
func (e *Engine) upstreamConfig(t target.Target, database string, params map[string]string) (*pgconn.Config, error) {
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("target address %q: %w", t.Address, err)
	}
	mode := t.TLS
	if mode == "" {
		mode = "prefer"
	}
	connStr := fmt.Sprintf("host=%s port=%s sslmode=%s", quote(host), quote(port), mode)
	if t.CAFile != "" {
		connStr += " sslrootcert=" + quote(t.CAFile)
	}
	cfg, err := pgconn.ParseConfig(connStr)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", t.Name, err)
	}
	// Set explicitly what ParseConfig may have taken from PG* variables or a .pgpass file.
	cfg.User = t.Username
	cfg.Password = t.Password
	cfg.Database = database
	cfg.ConnectTimeout = 10 * time.Second
	cfg.RuntimeParams = map[string]string{}
	for k, v := range params {
		if !dropParams[k] {
			cfg.RuntimeParams[k] = v
		}
	}
	// Every attempt (sslmode=prefer falls back to plain) dials through the connector.
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) { return e.d.Connector.Dial(ctx, t) }
	return cfg, nil
}

// quote quotes a libpq connection-string value.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
