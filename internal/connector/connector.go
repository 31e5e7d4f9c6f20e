// Package connector reaches targets: directly from the gateway, or through an agent's tunnel
// (internal/agent). Engines dial through a Connector and never open sockets to targets themselves.
//
// Two ways in:
//   - Dial is a plain byte stream to the target's address, for what needs no credential (a
//     PostgreSQL cancel request, a protocol whose authentication the gateway runs itself).
//   - Open is a connection on which the protocol's handshake with the target has already run,
//     with the target's credentials, wherever those live: at the gateway for a direct target, on
//     the agent for an agent-served one. Each protocol registers its Handshake by name; the
//     handshake's request and the state it returns are bytes the protocol encodes, opaque to the
//     connector and to the tunnel. This is how credentials defined on an agent never reach the
//     gateway: only the authenticated stream and the protocol's session state do.
package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock-gw/airlock/internal/target"
)

// Connector reaches targets.
type Connector interface {
	// Dial opens a byte stream to t's address.
	Dial(ctx context.Context, t target.Target) (net.Conn, error)
	// Open opens a connection to t and runs on it the Handshake registered for proto, with
	// req (the protocol's own encoding of what the gateway asks for: a database, the client's
	// startup parameters). It never sends t's credentials anywhere but to t.
	Open(ctx context.Context, t target.Target, proto string, req []byte) (*Upstream, error)
}

// Upstream is an authenticated connection to a target: bytes written to it go to the target's
// session as they are.
type Upstream struct {
	net.Conn
	// State is what the handshake learned, in the protocol's encoding (for PostgreSQL: the
	// backend key, parameter statuses, transaction status, whether TLS is on).
	State []byte
	// Via is the name of the agent that carries the connection; "" for a direct one.
	Via string
}

// DialFunc opens a fresh byte stream to the target a Handshake authenticates to. A handshake
// may call it more than once (PostgreSQL's sslmode=prefer retries without TLS).
type DialFunc func(ctx context.Context) (net.Conn, error)

// Handshake is a protocol's client side of the authentication to a target t, run where t's
// credentials are. It returns the authenticated connection, with nothing buffered that the
// target sent after the handshake, and the state the gateway's engine needs, encoded by the
// protocol.
type Handshake func(ctx context.Context, t target.Target, dial DialFunc, req []byte) (conn net.Conn, state []byte, err error)

var (
	hsMu       sync.RWMutex
	handshakes = map[string]Handshake{}
)

// RegisterHandshake makes proto's handshake available to Open, in the gateway and in the agent
// (the same binary). It panics on a duplicate, which is a build error.
func RegisterHandshake(proto string, h Handshake) {
	hsMu.Lock()
	defer hsMu.Unlock()
	if _, dup := handshakes[proto]; dup {
		panic("connector: duplicate handshake for " + proto)
	}
	handshakes[proto] = h
}

// HandshakeFor returns proto's registered handshake.
func HandshakeFor(proto string) (Handshake, error) {
	hsMu.RLock()
	h, ok := handshakes[proto]
	hsMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("connector: no handshake registered for protocol %q", proto)
	}
	return h, nil
}

// Direct dials targets over TCP from the gateway.
type Direct struct {
	Timeout time.Duration // default 10s
}

// Dial implements Connector.
func (d Direct) Dial(ctx context.Context, t target.Target) (net.Conn, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	nd := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	c, err := nd.DialContext(ctx, "tcp", t.Address)
	if err != nil {
		return nil, fmt.Errorf("dial target %q at %s: %w", t.Name, t.Address, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return c, nil
}

// Open implements Connector: the handshake runs here, with the credentials the gateway holds.
func (d Direct) Open(ctx context.Context, t target.Target, proto string, req []byte) (*Upstream, error) {
	if t.Agent != "" {
		return nil, fmt.Errorf("target %q is served by an agent (%s), and this gateway has no agent listener", t.Name, t.Agent)
	}
	return OpenWith(ctx, t, proto, req, func(ctx context.Context) (net.Conn, error) { return d.Dial(ctx, t) })
}

// OpenWith runs proto's handshake for t over streams from dial: what Direct.Open does at the
// gateway and the agent does on its side of the tunnel.
func OpenWith(ctx context.Context, t target.Target, proto string, req []byte, dial DialFunc) (*Upstream, error) {
	h, err := HandshakeFor(proto)
	if err != nil {
		return nil, err
	}
	conn, state, err := h(ctx, t, dial, req)
	if err != nil {
		return nil, err
	}
	return &Upstream{Conn: conn, State: state}, nil
}

// CodedError is a handshake error that carries the protocol's own error code, for an agent to
// send to the gateway with the message (AgentError.Code), so that the engine answers the
// client with the target's code rather than a generic one. pgconn's *PgError needs no wrapping
// (its SQLState is taken as the code); MySQL's ERR is wrapped with "ERRNO SQLSTATE".
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string        { return e.Err.Error() }
func (e *CodedError) Unwrap() error        { return e.Err }
func (e *CodedError) ProtocolCode() string { return e.Code }

// ErrNoAgent is returned (wrapped) by Open and Dial when no connected agent serves the target.
var ErrNoAgent = errors.New("no connected agent serves the target")

// AgentError is an error that happened on an agent's side of the tunnel (the agent could not
// reach or authenticate to the target) or to the tunnel itself. Engines tell their clients that
// the target is reached through an agent.
type AgentError struct {
	Agent string // the agent's name; "" when none could be chosen
	// Code is the protocol's own error code when the agent's handshake failed with one (a
	// SQLSTATE for PostgreSQL), so that an engine can answer with it.
	Code string
	Err  error
}

func (e *AgentError) Error() string {
	if e.Agent == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("via agent %s: %v", e.Agent, e.Err)
}

func (e *AgentError) Unwrap() error { return e.Err }

// LostError is what reading or writing an agent-carried connection returns once the agent's
// tunnel is gone (the agent stopped, crashed or was revoked), so that an engine can tell its
// client, and record, that the session ended with its agent rather than with its target.
type LostError struct {
	Agent  string
	Reason string // "disconnected", "revoked", ...
}

func (e *LostError) Error() string {
	return fmt.Sprintf("the tunnel to agent %s was lost (%s)", e.Agent, e.Reason)
}

// LostConn remembers the first *LostError its connection returned, for an engine whose protocol
// library reads the connection itself and tells only that it closed (x/crypto/ssh closes a
// failed connection's channels before saying why; SPDY's does not say at all).
type LostConn struct {
	net.Conn
	lost atomic.Pointer[LostError]
}

// Lost returns the loss the connection saw, nil when none.
func (c *LostConn) Lost() *LostError { return c.lost.Load() }

func (c *LostConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.note(err)
	return n, err
}

func (c *LostConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.note(err)
	return n, err
}

func (c *LostConn) note(err error) {
	var lost *LostError
	if err != nil && errors.As(err, &lost) {
		c.lost.CompareAndSwap(nil, lost)
	}
}
