// Package engine declares the interface every protocol engine implements and the registry that
// the gateway builds its listeners from. Each engine lives in its own subpackage and registers
// itself by name in an init function.
package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"

	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/metrics"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/target"
)

// Engine serves one protocol.
type Engine interface {
	// Name is the protocol's registry name: postgres, mysql, ssh, kubernetes, http.
	Name() string
	// Serve handles one accepted client connection until the session ends. The caller closes
	// conn afterwards. ctx is cancelled, with ErrShutdown or ErrTerminated as its cause, when
	// the gateway ends the session; the engine then tells the client why, in its protocol, and
	// closes the recording.
	Serve(ctx context.Context, conn net.Conn) error
	// Refuse tells a client that the gateway cannot serve it at all (for example while it is
	// shutting down), in the protocol's own words, before the caller closes conn.
	Refuse(conn net.Conn, reason error)
}

// Causes given to a session's context when the gateway ends it.
var (
	ErrShutdown   = errors.New("the gateway is shutting down")
	ErrTerminated = errors.New("the session was terminated by an administrator")
	// ErrMaxDuration ends a session that reached its policy's max_duration.
	ErrMaxDuration = errors.New("the session reached its maximum duration")
)

// session.end reasons of a session the gateway ended.
const (
	EndShutdown    = "gateway_shutdown"
	EndTerminated  = "terminated"
	EndMaxDuration = "max_duration"
)

// EndReason is the session.end reason of a session whose context the gateway cancelled with
// cause (ErrShutdown, ErrTerminated, ErrMaxDuration, or anything else: a shutdown).
func EndReason(cause error) string {
	switch {
	case errors.Is(cause, ErrTerminated):
		return EndTerminated
	case errors.Is(cause, ErrMaxDuration):
		return EndMaxDuration
	}
	return EndShutdown
}

// Authenticator checks what a client put in its password field: a password or a gateway token.
type Authenticator interface {
	Authenticate(ctx context.Context, user, secret string) (*auth.Identity, error)
}

// Targets resolves target names.
type Targets interface {
	Lookup(ctx context.Context, name string) (target.Target, error)
}

// Authorizer decides whether an identity may reach a target.
type Authorizer interface {
	Decide(id *auth.Identity, t target.Target) policy.Decision
}

// Approver holds a statement that a guardrail sends for approval until an approver allows or
// denies it, or it times out (internal/approval.Broker). A non-nil error (the session's context
// ended, the request could not be audited) refuses the statement like a denial.
type Approver interface {
	Request(ctx context.Context, r approval.Request) (approval.Outcome, error)
}

// Auditor takes entries for the gateway's audit log (internal/audit.Log).
type Auditor interface {
	Record(ctx context.Context, e audit.Entry) error
}

// Deps is what the gateway gives every engine.
type Deps struct {
	Config    *config.Config
	TLS       *tls.Config // the gateway's server certificate, for protocols that negotiate TLS
	Auth      Authenticator
	Targets   Targets
	Policy    Authorizer
	Connector connector.Connector
	Recorder  *recorder.Recorder
	Log       *slog.Logger
	Metrics   *metrics.Metrics
	Approvals Approver // nil: no approver, so a guardrail's approve action denies
	Audit     Auditor  // nil: protocol logins are not audited (tests)
	// Sealer encrypts the originals of masked rows for the recording (a *sealbox.Keyring).
	// nil: originals are not kept.
	Sealer Sealer
}

// Sealer encrypts with the gateway's recording key; aad is authenticated with it.
type Sealer interface {
	Seal(plain, aad []byte) (keyID string, nonce, ct []byte)
}

// Factory builds an engine.
type Factory func(Deps) (Engine, error)

var (
	mu        sync.Mutex
	factories = map[string]Factory{}
)

// Register makes an engine available by name. It panics on a duplicate, which is a build error.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		panic("engine: duplicate registration of " + name)
	}
	factories[name] = f
}

// New builds the named engine.
func New(name string, d Deps) (Engine, error) {
	mu.Lock()
	f, ok := factories[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("engine: unknown protocol %q", name)
	}
	return f(d)
}

// Names lists registered engines.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range factories {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
