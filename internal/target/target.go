// Package target describes the destinations users reach through the gateway and where they are
// defined: the config file (read-only) and the API (stored).
package target

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"sort"
	"time"
)

// Target is a destination. Password is the gateway's credential for it, resolved from
// password/password_env/password_file; it never leaves the gateway through the API.
type Target struct {
	Name    string `json:"name"`
	Type    string `json:"type"` // engine name: postgres, ...
	Address string `json:"address"`
	// Agent names the agent that reaches the target, or a glob over agent names ("dc1-*") for
	// several (any of them that announces the target serves it); "" is a target the gateway
	// dials itself. An agent-served target has no address or credentials at the gateway: the
	// agent holds them (docs/agent.md).
	Agent    string `json:"agent,omitempty"`
	Database string `json:"database,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	TLS      string `json:"tls,omitempty"` // upstream TLS: disable | prefer (default) | require | verify-full
	CAFile   string `json:"ca_file,omitempty"`
	// PrivateKeyFile is the gateway's SSH key for an ssh target; HostKey pins the target's
	// public host key (authorized_keys form).
	PrivateKeyFile string            `json:"private_key_file,omitempty"`
	HostKey        string            `json:"host_key,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	// Token (resolved from token) or TokenFile (read when used) is the gateway's bearer token
	// for a kubernetes target; ClientCertFile and ClientKeyFile its client certificate.
	// Impersonate forwards requests as the gateway user (Impersonate-User/-Group headers).
	Token          string `json:"token,omitempty"`
	TokenFile      string `json:"token_file,omitempty"`
	ClientCertFile string `json:"client_cert_file,omitempty"`
	ClientKeyFile  string `json:"client_key_file,omitempty"`
	Impersonate    bool   `json:"impersonate,omitempty"`
	// RecordingMode is what happens when the recording store stalls or fails: strict (default,
	// fail closed) or best-effort (fail open, counting every dropped event). See
	// docs/recording.md.
	RecordingMode string `json:"recording_mode,omitempty"`
	// RetentionDays is how long recordings of this target are kept after their session ended;
	// 0 keeps them forever. See docs/configuration.md.
	RetentionDays int       `json:"retention_days,omitempty"`
	Source        string    `json:"source"` // config | api
	CreatedAt     time.Time `json:"created_at,omitzero"`
	CreatedBy     string    `json:"created_by,omitempty"`
}

// Recording modes (RecordingMode). "" means strict.
const (
	RecordingStrict     = "strict"
	RecordingBestEffort = "best-effort"
)

// ErrUnknown is returned (wrapped) for a target name that is not defined.
var ErrUnknown = errors.New("unknown target")

// Validate checks the fields every target needs.
func (t *Target) Validate() error {
	switch {
	case t.Name == "":
		return errors.New("target: name is required")
	case t.Type == "":
		return fmt.Errorf("target %q: type is required", t.Name)
	case t.Address == "" && t.Agent == "":
		return fmt.Errorf("target %q: address (or agent, for a target reached through an agent) is required", t.Name)
	case t.Agent != "" && (t.Address != "" || t.Username != "" || t.Password != "" || t.CAFile != "" || t.PrivateKeyFile != "" || t.HostKey != "" ||
		t.Token != "" || t.TokenFile != "" || t.ClientCertFile != ""):
		return fmt.Errorf("target %q: a target served by an agent has no address or credentials at the gateway: the agent's own config holds them (docs/agent.md)", t.Name)
	}
	if t.Agent != "" {
		if _, err := path.Match(t.Agent, ""); err != nil {
			return fmt.Errorf("target %q: agent %q is not a valid name or glob: %w", t.Name, t.Agent, err)
		}
	}
	switch t.TLS {
	case "", "disable", "prefer", "require", "verify-ca", "verify-full":
	default:
		return fmt.Errorf("target %q: tls must be disable, prefer, require, verify-ca or verify-full, not %q", t.Name, t.TLS)
	}
	switch t.RecordingMode {
	case "", RecordingStrict, RecordingBestEffort:
	default:
		return fmt.Errorf("target %q: recording mode must be strict or best-effort, not %q", t.Name, t.RecordingMode)
	}
	if t.RetentionDays < 0 {
		return fmt.Errorf("target %q: retention_days must not be negative, got %d", t.Name, t.RetentionDays)
	}
	return nil
}

// UpstreamTLS is the TLS mode towards the target: TLS, "prefer" when empty, except that
// "prefer" is "disable" for a target on a loopback address. prefer is opportunistic TLS that
// checks no certificate, so all it guards against is a passive listener on the path; to a
// loopback address the only path is the host's own kernel, whose root can read the process's
// memory as easily, so there it would cost both ends a cipher for nothing. require and verify-*
// keep TLS on loopback too.
func (t Target) UpstreamTLS() string {
	mode := t.TLS
	if mode == "" {
		mode = "prefer"
	}
	if mode == "prefer" && loopback(t.Address) {
		return "disable"
	}
	return mode
}

// loopback tells whether address (host:port or host) names this host: localhost, 127.0.0.0/8 or
// ::1. Other names are not resolved.
func loopback(address string) bool {
	host := address
	if h, _, err := net.SplitHostPort(address); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Redacted returns a copy without secrets, for API answers and logs.
func (t Target) Redacted() Target {
	t.Password = ""
	t.Token = ""
	return t
}

// Stored is what the catalog needs from the store.
type Stored interface {
	GetTarget(ctx context.Context, name string) (Target, error)
	ListTargets(ctx context.Context) ([]Target, error)
}

// Announcer lists the targets that connected agents announce (internal/agent.Hub): name, type
// and what is not secret; Agent is "*" (any agent that announces the name).
type Announcer interface {
	Announced(name string) (Target, bool)
	AnnouncedList() []Target
}

// Catalog resolves target names: config-file targets first (they cannot be overridden through
// the API), then stored ones, then those that connected agents announce.
type Catalog struct {
	Static    map[string]Target
	Store     Stored
	Announced Announcer // nil: no agents
}

// Lookup returns the named target or an error wrapping ErrUnknown.
func (c *Catalog) Lookup(ctx context.Context, name string) (Target, error) {
	if t, ok := c.Static[name]; ok {
		return t, nil
	}
	if c.Store != nil {
		t, err := c.Store.GetTarget(ctx, name)
		if err == nil {
			t.Source = "api"
			return t, nil
		}
		if !errors.Is(err, ErrUnknown) {
			return Target{}, err
		}
	}
	if c.Announced != nil {
		if t, ok := c.Announced.Announced(name); ok {
			return t, nil
		}
	}
	return Target{}, fmt.Errorf("%w %q", ErrUnknown, name)
}

// List returns every target, sorted by name.
func (c *Catalog) List(ctx context.Context) ([]Target, error) {
	var out []Target
	for _, t := range c.Static {
		out = append(out, t)
	}
	seen := map[string]bool{}
	for n := range c.Static {
		seen[n] = true
	}
	if c.Store != nil {
		stored, err := c.Store.ListTargets(ctx)
		if err != nil {
			return nil, err
		}
		for _, t := range stored {
			if !seen[t.Name] {
				seen[t.Name] = true
				t.Source = "api"
				out = append(out, t)
			}
		}
	}
	if c.Announced != nil {
		for _, t := range c.Announced.AnnouncedList() {
			if !seen[t.Name] {
				seen[t.Name] = true
				out = append(out, t)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
