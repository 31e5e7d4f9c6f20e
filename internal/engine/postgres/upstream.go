package postgres

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

func init() { connector.RegisterHandshake(Name, handshakeUpstream) }

// upstream is an authenticated connection to the target, taken over from pgconn.
type upstream struct {
	conn     net.Conn
	via      string // the agent that carries it; "" when direct
	database string // the database it is connected to
	upstreamState
}

// openRequest is what the gateway asks of the handshake (connector.Open's req): the database
// and the client's startup parameters. It never carries a credential.
type openRequest struct {
	Database string            `json:"database,omitempty"` // "" means the target's default
	Params   map[string]string `json:"params,omitempty"`
}

// upstreamState is what the handshake hands back (connector.Upstream.State), from the gateway
// itself or from an agent: what the relay needs of the authenticated session.
type upstreamState struct {
	Database string            `json:"database"`
	TLS      bool              `json:"tls"`
	PID      uint32            `json:"pid"`
	Secret   []byte            `json:"secret"`
	Params   map[string]string `json:"params"`
	TxStatus byte              `json:"tx_status"`
}

// Startup parameters never passed on to the target: identity and routing are the gateway's.
var dropParams = map[string]bool{"user": true, "database": true, "replication": true}

// dialUpstream connects to database on t as the target's own user, through the connector: the
// handshake runs where t's credentials are (here, or on t's agent).
func (e *Engine) dialUpstream(ctx context.Context, t target.Target, database string, params map[string]string) (*upstream, error) {
	req, err := json.Marshal(openRequest{Database: database, Params: params})
	if err != nil {
		return nil, err
	}
	u, err := e.d.Connector.Open(ctx, t, Name, req)
	if err != nil {
		return nil, err
	}
	up := &upstream{conn: u.Conn, via: u.Via}
	if err := json.Unmarshal(u.State, &up.upstreamState); err != nil {
		u.Conn.Close()
		return nil, fmt.Errorf("target %q: undecodable session state from the handshake: %w", t.Name, err)
	}
	up.database = up.Database
	return up, nil
}

// handshakeUpstream is the PostgreSQL connector.Handshake: pgconn does the authentication
// (SCRAM, MD5, trust) and TLS over streams from dial; the connection is then hijacked.
func handshakeUpstream(ctx context.Context, t target.Target, dial connector.DialFunc, reqb []byte) (net.Conn, []byte, error) {
	var req openRequest
	if err := json.Unmarshal(reqb, &req); err != nil {
		return nil, nil, fmt.Errorf("postgres handshake request: %w", err)
	}
	cfg, err := upstreamConfig(t, req.Database, req.Params, dial)
	if err != nil {
		return nil, nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, nil, err
	}
	if n := hc.Frontend.ReadBufferLen(); n != 0 {
		hc.Conn.Close()
		return nil, nil, fmt.Errorf("target sent %d unexpected bytes after ReadyForQuery", n)
	}
	_, isTLS := hc.Conn.(*tls.Conn)
	if tc, ok := hc.Conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	state, err := json.Marshal(upstreamState{Database: cfg.Database, TLS: isTLS, PID: hc.PID, Secret: hc.SecretKey,
		Params: hc.ParameterStatuses, TxStatus: hc.TxStatus})
	if err != nil {
		hc.Conn.Close()
		return nil, nil, err
	}
	return hc.Conn, state, nil
}

// upstreamConfig is how to connect to database on t: the target's address, TLS mode and
// credentials, and the client's startup parameters but those in dropParams. An empty database
// is the target's default database, else its username.
func upstreamConfig(t target.Target, database string, params map[string]string, dial connector.DialFunc) (*pgconn.Config, error) {
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("target address %q: %w", t.Address, err)
	}
	mode := t.UpstreamTLS()
	connStr := fmt.Sprintf("host=%s port=%s sslmode=%s", quote(host), quote(port), mode)
	if t.CAFile != "" {
		connStr += " sslrootcert=" + quote(t.CAFile)
	}
	cfg, err := pgconn.ParseConfig(connStr)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", t.Name, err)
	}
	if database == "" {
		database = t.Database
	}
	if database == "" {
		database = t.Username
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
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
	return cfg, nil
}

// sideConn opens a short-lived connection of the gateway's own to database on t (catalog
// lookups), through the connector like a session's.
func (e *Engine) sideConn(ctx context.Context, t target.Target, database, app string) (*pgconn.PgConn, error) {
	up, err := e.dialUpstream(ctx, t, database, map[string]string{"application_name": app})
	if err != nil {
		return nil, err
	}
	// Construct needs a config only for its frontend and context-cancellation handlers; a
	// cancelled context sets a deadline on the connection rather than sending a cancel request.
	cfg, err := pgconn.ParseConfig("host=unused")
	if err != nil {
		up.conn.Close()
		return nil, err
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	pc, err := pgconn.Construct(&pgconn.HijackedConn{Conn: up.conn, PID: up.PID, SecretKey: up.Secret,
		ParameterStatuses: up.Params, TxStatus: up.TxStatus, Config: cfg})
	if err != nil {
		up.conn.Close()
		return nil, err
	}
	return pc, nil
}

// viaAgent reports whether err came from an agent's side of the tunnel.
func viaAgent(err error) (*connector.AgentError, bool) {
	var ae *connector.AgentError
	return ae, errors.As(err, &ae)
}

// quote quotes a libpq connection-string value.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
