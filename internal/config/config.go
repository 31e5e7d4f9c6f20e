// Package config loads the gateway's YAML configuration, applies AIRLOCK_* environment
// overrides and fills in defaults. The zero Config, after SetDefaults, is the embedded default.
package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the gateway's configuration. Every field's default is stated beside it and
// documented in docs/configuration.md.
type Config struct {
	DataDir string `yaml:"data_dir"` // default ./airlock-data
	// Store is where sessions, recordings, targets and gateway state live: "" or "file" = the
	// embedded store in data_dir (default); "postgres://..." (or "postgresql://...") =
	// PostgreSQL, in the schema "airlock" (see docs/storage-postgres.md). data_dir still holds
	// the generated TLS certificate and keys. Env: AIRLOCK_STORE.
	Store  string `yaml:"store"`
	Listen Listen `yaml:"listen"`
	Log    Log    `yaml:"log"`

	// TLS for the gateway's listeners. When both are empty the gateway generates a self-signed
	// certificate in data_dir on first start and reuses it.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`

	Postgres Postgres `yaml:"postgres"`
	MySQL    MySQL    `yaml:"mysql"`
	// Kubernetes configures the Kubernetes listener.
	Kubernetes Kubernetes `yaml:"kubernetes"`
	// Agents configures the listener of network-resident agents (listen.agents).
	Agents    Agents    `yaml:"agents"`
	Recording Recording `yaml:"recording"`
	Auth      Auth      `yaml:"auth"`
	Approvals Approvals `yaml:"approvals"`
	Retention Retention `yaml:"retention"`

	// ShutdownGrace is how long SIGTERM lets running sessions finish before ending them.
	// Default 30s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`

	Users    []User   `yaml:"users"`
	Targets  []Target `yaml:"targets"`
	Policies []Policy `yaml:"policies"` // nil: every authenticated user reaches every target

	// OIDC lists OpenID Connect identity providers (docs/identity.md). Default: none.
	OIDC []OIDCProvider `yaml:"oidc"`

	// path is the file the config was read from ("" for the embedded default).
	path string
}

// Retention configures the retention job, which expires recordings older than their target's
// retention_days.
type Retention struct {
	Interval time.Duration `yaml:"interval"` // how often the job runs; default 1h
}

// Listen holds listener addresses. An empty address disables that listener, except that an
// unset api, postgres, mysql and ssh take their defaults.
type Listen struct {
	API      string `yaml:"api"`      // default 127.0.0.1:8009
	Postgres string `yaml:"postgres"` // default 127.0.0.1:15432; "off" disables it
	// MySQL is the MySQL/MariaDB listener. Default 127.0.0.1:13306; "off" disables it.
	MySQL string `yaml:"mysql"`
	// SSH is the SSH listener (docs/ssh.md). Default 127.0.0.1:12222; "off" disables it.
	SSH string `yaml:"ssh"`
	// Kubernetes is the Kubernetes API listener (issue 9): HTTPS with the gateway's
	// certificate, for kubectl through `airlock kubeconfig`. Default "" (off).
	Kubernetes string `yaml:"kubernetes"`
	// Agents is where network-resident agents dial in (issue 8, docs/agent.md): TLS with the
	// gateway's certificate, whose pin join tokens carry with this address. Default "" (off:
	// no agent can connect, and every target is dialled from the gateway).
	Agents string `yaml:"agents"`
	// Debug serves Go's pprof profiles (/debug/pprof/) for performance work. Default "" (off);
	// never expose it beyond loopback.
	Debug string `yaml:"debug"`
}

// Log configures structured logs on stderr.
type Log struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // json | text; default json unless stderr is a terminal
}

// Postgres configures the PostgreSQL listener.
type Postgres struct {
	// AllowPlaintextLoopback lets clients on a loopback address connect without TLS (and so
	// send their password in clear over loopback). Default false: TLS is required.
	AllowPlaintextLoopback bool `yaml:"allow_plaintext_loopback"`
	// MaxMessageSize bounds one protocol message from either side, in bytes. Default 1 GiB,
	// the limit PostgreSQL itself enforces.
	MaxMessageSize int `yaml:"max_message_size"`
}

// Kubernetes configures the Kubernetes listener.
type Kubernetes struct {
	// BodyLimit is how many bytes of each request and response body a recording keeps (the
	// SHA-256 of the whole body is always kept). Default 65536; -1 keeps no body.
	BodyLimit int `yaml:"body_limit"`
	// ForwardLimit is how many bytes of each direction of a port-forwarded connection a
	// recording keeps (forward.data events; their length and SHA-256 are always kept).
	// Default 16777216 (16 MiB); -1 keeps none.
	ForwardLimit int `yaml:"forward_limit"`
}

// Agents configures the listener of network-resident agents (docs/agent.md).
type Agents struct {
	// Advertise is the host:port agents dial to reach listen.agents, written into the join
	// tokens of `airlock agents create` (e.g. gw.example.com:8443, when listen.agents is
	// 0.0.0.0:8443 or sits behind NAT). Default "": listen.agents itself (with port 0, the port
	// bound); with a wildcard host there, creating an agent is refused until this is set.
	// Env: AIRLOCK_AGENTS_ADVERTISE.
	Advertise string `yaml:"advertise"`
}

// MySQL configures the MySQL/MariaDB listener.
type MySQL struct {
	// AllowPlaintextLoopback lets clients on a loopback address connect without TLS (they are
	// then asked for their password with mysql_clear_password). Default false: TLS is required.
	AllowPlaintextLoopback bool `yaml:"allow_plaintext_loopback"`
	// MaxPacketSize bounds one protocol packet from either side, in bytes. Default 1 GiB,
	// MySQL's own max_allowed_packet limit.
	MaxPacketSize int `yaml:"max_packet_size"`
}

// Recording configures the embedded recording store.
type Recording struct {
	// Fsync is when appended events are flushed to stable storage: "interval" (default: group
	// commit every fsync_interval) or "always" (before the bytes they describe are forwarded).
	// Either way an event is written to the store before those bytes are forwarded, so a
	// crash of the gateway process loses nothing; fsync only matters for power loss.
	Fsync         string        `yaml:"fsync"`
	FsyncInterval time.Duration `yaml:"fsync_interval"` // default 50ms
	// CheckpointEvents: the recorder signs the chain head with a checkpoint event at least
	// every this many events. Default 1000.
	CheckpointEvents int `yaml:"checkpoint_events"`
	// CheckpointInterval: a checkpoint also follows the first event recorded this long after
	// the previous one, and a timer signs the head of a session idle this long after an
	// unsigned event. Default 5s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// SigningKeyFile is a PEM PKCS #8 Ed25519 private key that signs checkpoints. Default ""
	// (a key generated on first start in data_dir/signing/, mode 0600).
	SigningKeyFile string `yaml:"signing_key_file"`
	// EncryptionKeyFile holds the AES-256 key that encrypts the originals of masked values in
	// recordings: 32 raw bytes, or 64 hex digits, or base64. Default "" (a key generated on
	// first start in data_dir/keys/, mode 0600). Keys used before stay in data_dir/keys/.
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// BestEffortBuffer bounds, in bytes of event data, what a best-effort session (a target
	// with recording.mode best-effort) holds in memory while the store is slow; events past it
	// are dropped and counted. Default 8 MiB per session.
	BestEffortBuffer int `yaml:"best_effort_buffer"`
}

// Approvals configures how statements a guardrail sends for approval wait for an approver
// (airlock requests, /api/v1/requests).
type Approvals struct {
	// Timeout denies a request nobody decided within it. Default 5m.
	Timeout time.Duration `yaml:"timeout"`
	// Webhook, when set, receives a POST with a JSON body announcing each request (best effort,
	// a few retries). Default "" (none).
	Webhook string `yaml:"webhook"`
}

// Auth configures the gateway's own credentials.
type Auth struct {
	TokenTTL time.Duration `yaml:"token_ttl"` // lifetime of gateway tokens; default 12h
	// AdminPassword sets the password of the local "admin" user created on first start. When
	// empty, a random one is generated and printed once. Env: AIRLOCK_ADMIN_PASSWORD.
	AdminPassword string `yaml:"admin_password"`
}

// User is a local user.
type User struct {
	Name         string   `yaml:"name"`
	Password     string   `yaml:"password"`      // cleartext; prefer password_hash
	PasswordHash string   `yaml:"password_hash"` // argon2id or bcrypt, e.g. from `airlock hash-password`
	Role         string   `yaml:"role"`          // user (default) | auditor | admin
	Groups       []string `yaml:"groups"`
	// SSHKeys are the user's public keys in authorized_keys form, for the SSH listener.
	SSHKeys []string `yaml:"ssh_keys"`
}

// Target is a destination defined in the config file.
type Target struct {
	Name    string `yaml:"name"`
	Type    string `yaml:"type"` // postgres
	Address string `yaml:"address"`
	// Agent names the agent that reaches this target, or a glob over agent names ("dc1-*"),
	// instead of an address: the agent's own config holds the address and credentials
	// (docs/agent.md). Default "" (the gateway dials address itself).
	Agent        string `yaml:"agent"`
	Database     string `yaml:"database"` // default database when the client names none
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordEnv  string `yaml:"password_env"`  // read the password from this env var
	PasswordFile string `yaml:"password_file"` // read the password from this file
	// PasswordCommand is a secret reference: a command (argv, no shell) whose standard output
	// is the password, run once at start, e.g. [vault, kv, get, -field=password, secret/db]
	// or [op, read, "op://prod/db/password"].
	PasswordCommand []string `yaml:"password_command"`
	TLS             string   `yaml:"tls"`     // disable | prefer (default) | require | verify-ca | verify-full
	CAFile          string   `yaml:"ca_file"` // CA bundle for verify-ca / verify-full
	// PrivateKeyFile is the gateway's SSH private key for an ssh target (PEM or OpenSSH form).
	PrivateKeyFile string `yaml:"private_key_file"`
	// HostKey pins an ssh target's public host key ("ssh-ed25519 AAAA..."): any other key
	// refuses the connection.
	HostKey string `yaml:"host_key"`
	// Token and TokenFile are the gateway's bearer token for a kubernetes target (at most one;
	// the file is read again for every client connection, so a rotated token is picked up).
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// ClientCertFile and ClientKeyFile are the gateway's client certificate for a kubernetes
	// target (PEM; they go together).
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// Impersonate forwards kubernetes requests as the gateway user and groups
	// (Impersonate-User, Impersonate-Group), so that the cluster's RBAC applies to them.
	// Default false: requests run with the gateway's credential alone.
	Impersonate bool              `yaml:"impersonate"`
	Labels      map[string]string `yaml:"labels"`
	Recording   TargetRecording   `yaml:"recording"`
	// RetentionDays is how long this target's recordings are kept after their session ended:
	// the retention job expires older ones that are not on legal hold. 0 (default) keeps them
	// forever.
	RetentionDays int `yaml:"retention_days"`
}

// TargetRecording is a target's recording policy.
type TargetRecording struct {
	// Mode is what a stalled or failing store does to this target's sessions: "strict"
	// (default: every event is in the store before the bytes it describes are forwarded; no
	// store, no session) or "best-effort" (sessions go on; events that do not fit in
	// recording.best_effort_buffer are dropped, counted and marked by a recording.gap event).
	Mode string `yaml:"mode"`
}

// Policy is a rule of the policy engine (internal/policy documents the precedence). A rule
// with access allow grants; deny refuses and wins over any allow; a rule without access only
// adds settings (masking, guardrails, recording, max duration) to sessions other rules allow.
type Policy struct {
	Name     string   `yaml:"name" json:"name"`
	Subjects []string `yaml:"subjects" json:"subjects"`       // user:NAME, group:NAME, role:NAME, service:NAME or "*"
	Targets  []string `yaml:"targets" json:"targets"`         // names or globs ("prod-*"), type:NAME, label:K=V, "*"
	Access   string   `yaml:"access" json:"access,omitempty"` // allow | deny | "" (settings only)
	// Recording is on (default) or off; the most specific matching rule that sets it decides.
	Recording string `yaml:"recording" json:"recording,omitempty"`
	// Masking lists detectors (credit_card, email, ...), "column:TABLE.COLUMN" and
	// "regex:NAME:PATTERN" rules (internal/masking); the union of all matching rules applies.
	Masking []string `yaml:"masking" json:"masking,omitempty"`
	// Guardrails lists statement classes to act on: "destructive" (deny), or "ACTION:CLASS"
	// with ACTION deny, approve or warn (e.g. "approve:destructive"); the union applies.
	Guardrails []string `yaml:"guardrails" json:"guardrails,omitempty"`
	// GuardrailRules are custom statement rules by kind, relation glob and class.
	GuardrailRules []GuardrailRule `yaml:"guardrail_rules" json:"guardrail_rules,omitempty"`
	// MaxDuration ends sessions after this long; the shortest of the matching rules applies.
	MaxDuration time.Duration `yaml:"max_duration" json:"max_duration,omitempty"`
	// LocalInfile lets MySQL clients send files with LOAD DATA LOCAL INFILE (recorded as
	// copy.in events). Default false: the gateway refuses them; any matching rule that sets it
	// allows them.
	LocalInfile bool `yaml:"local_infile" json:"local_infile,omitempty"`
	// SSH lists what an ssh session may do: shell, exec, sftp (sftp and scp), local_forwarding
	// (ssh -L), remote_forwarding (ssh -R), port_forwarding (both) and agent_forwarding. The
	// union of the matching rules applies; when none sets it: shell, exec and sftp. X11
	// forwarding is always refused. See docs/ssh.md.
	SSH []string `yaml:"ssh" json:"ssh,omitempty"`
	// SSHDenyCommands are regular expressions (RE2): an ssh exec whose command line matches
	// one is refused. The union of the matching rules applies.
	SSHDenyCommands []string `yaml:"ssh_deny_commands" json:"ssh_deny_commands,omitempty"`
	// Kubernetes are rules over Kubernetes API requests (verb, resource, namespace, name),
	// checked in order for every request of a session this rule applies to; the first that
	// matches acts (internal/policy/kubernetes.go).
	Kubernetes []KubernetesRule `yaml:"kubernetes" json:"kubernetes,omitempty"`
}

// KubernetesRule acts on the Kubernetes API requests it matches. An empty list matches
// anything; every non-empty one must match.
type KubernetesRule struct {
	Name       string   `yaml:"name" json:"name"`
	Verbs      []string `yaml:"verbs" json:"verbs,omitempty"`           // get, list, watch, create, update, patch, delete, deletecollection; "*"
	Resources  []string `yaml:"resources" json:"resources,omitempty"`   // pods, pods/exec, deployments.apps, namespaces; globs
	Namespaces []string `yaml:"namespaces" json:"namespaces,omitempty"` // globs; "" is cluster-scoped
	Names      []string `yaml:"names" json:"names,omitempty"`           // globs over the object's name
	Action     string   `yaml:"action" json:"action"`                   // deny | approve | warn | allow
}

// GuardrailRule is a custom guardrail (internal/guard.Rule).
type GuardrailRule struct {
	Name      string   `yaml:"name" json:"name"`
	Kinds     []string `yaml:"kinds" json:"kinds,omitempty"`         // select, insert, update, delete, drop, truncate, ...
	Relations []string `yaml:"relations" json:"relations,omitempty"` // globs over schema.table
	Classes   []string `yaml:"classes" json:"classes,omitempty"`     // destructive, program, unclassifiable
	Action    string   `yaml:"action" json:"action"`                 // deny | approve | warn
}

// Load reads a YAML file (path "" means none), applies AIRLOCK_* environment overrides and
// defaults, and validates the result.
func Load(path string) (*Config, error) {
	c := &Config{path: path}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // an empty file is an empty config
			return nil, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	if err := ApplyEnv(c, os.Environ()); err != nil {
		return nil, err
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Path is the file the config came from, "" for none.
func (c *Config) Path() string { return c.path }

// SetDefaults fills every unset field with its documented default.
func (c *Config) SetDefaults() {
	if c.DataDir == "" {
		c.DataDir = "./airlock-data"
	}
	if c.Listen.API == "" {
		c.Listen.API = "127.0.0.1:8009"
	}
	if c.Listen.Postgres == "" {
		c.Listen.Postgres = "127.0.0.1:15432"
	}
	if c.Listen.MySQL == "" {
		c.Listen.MySQL = "127.0.0.1:13306"
	}
	if c.Listen.SSH == "" {
		c.Listen.SSH = "127.0.0.1:12222"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Postgres.MaxMessageSize == 0 {
		c.Postgres.MaxMessageSize = 1 << 30
	}
	if c.Kubernetes.BodyLimit == 0 {
		c.Kubernetes.BodyLimit = 64 << 10
	}
	if c.Kubernetes.ForwardLimit == 0 {
		c.Kubernetes.ForwardLimit = 16 << 20
	}
	if c.MySQL.MaxPacketSize == 0 {
		c.MySQL.MaxPacketSize = 1 << 30
	}
	if c.Recording.Fsync == "" {
		c.Recording.Fsync = "interval"
	}
	if c.Recording.FsyncInterval == 0 {
		c.Recording.FsyncInterval = 50 * time.Millisecond
	}
	if c.Recording.CheckpointEvents == 0 {
		c.Recording.CheckpointEvents = 1000
	}
	if c.Recording.CheckpointInterval == 0 {
		c.Recording.CheckpointInterval = 5 * time.Second
	}
	if c.Recording.BestEffortBuffer == 0 {
		c.Recording.BestEffortBuffer = 8 << 20
	}
	if c.Auth.TokenTTL == 0 {
		c.Auth.TokenTTL = 12 * time.Hour
	}
	if c.Approvals.Timeout == 0 {
		c.Approvals.Timeout = 5 * time.Minute
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.Retention.Interval == 0 {
		c.Retention.Interval = time.Hour
	}
	for i := range c.OIDC {
		c.OIDC[i].setDefaults()
	}
	for i := range c.Targets {
		if c.Targets[i].TLS == "" {
			c.Targets[i].TLS = "prefer"
		}
		if c.Targets[i].Recording.Mode == "" {
			c.Targets[i].Recording.Mode = "strict"
		}
	}
}

// ValidStore reports whether v names a store the gateway knows: "" or "file" (the embedded
// store) or a postgres:// or postgresql:// URL.
func ValidStore(v string) bool {
	if v == "" || v == "file" {
		return true
	}
	rest, ok := strings.CutPrefix(v, "postgres://")
	if !ok {
		rest, ok = strings.CutPrefix(v, "postgresql://")
	}
	return ok && rest != ""
}

// Validate reports the first problem in a defaulted config.
func (c *Config) Validate() error {
	for _, a := range []struct{ name, addr string }{{"listen.api", c.Listen.API}, {"listen.postgres", c.Listen.Postgres},
		{"listen.mysql", c.Listen.MySQL}, {"listen.ssh", c.Listen.SSH},
		{"listen.kubernetes", c.Listen.Kubernetes}, {"listen.agents", c.Listen.Agents}} {
		if a.addr == "off" || (a.addr == "" && a.name != "listen.api") {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("config: %s: %w", a.name, err)
		}
	}
	if a := c.Agents.Advertise; a != "" {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("config: agents.advertise: %w", err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("config: agents.advertise %q: the host must be one agents can dial, not a wildcard", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("config: agents.advertise %q: the port must be a number from 1 to 65535", a)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		return fmt.Errorf("config: log.format must be json or text, not %q", c.Log.Format)
	}
	if !ValidStore(c.Store) {
		// Not the value: a PostgreSQL URL may carry a password.
		return errors.New(`config: store must be "file" or a postgres:// URL`)
	}
	switch c.Recording.Fsync {
	case "interval", "always":
	default:
		return fmt.Errorf("config: recording.fsync must be interval or always, not %q", c.Recording.Fsync)
	}
	if c.Recording.CheckpointEvents < 0 || c.Recording.CheckpointInterval < 0 {
		return errors.New("config: recording.checkpoint_events and recording.checkpoint_interval must not be negative")
	}
	if c.Recording.BestEffortBuffer < 0 {
		return errors.New("config: recording.best_effort_buffer must not be negative")
	}
	if c.Approvals.Timeout < 0 {
		return errors.New("config: approvals.timeout must not be negative")
	}
	if c.Approvals.Webhook != "" && !strings.HasPrefix(c.Approvals.Webhook, "http://") && !strings.HasPrefix(c.Approvals.Webhook, "https://") {
		return errors.New("config: approvals.webhook must be an http:// or https:// URL")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("config: tls_cert_file and tls_key_file go together")
	}
	if err := validateOIDC(c.OIDC); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, u := range c.Users {
		if u.Name == "" {
			return errors.New("config: users: a user has no name")
		}
		if seen[u.Name] {
			return fmt.Errorf("config: users: %q defined twice", u.Name)
		}
		seen[u.Name] = true
		if (u.Password == "") == (u.PasswordHash == "") {
			return fmt.Errorf("config: user %q: set exactly one of password and password_hash", u.Name)
		}
		switch u.Role {
		case "", "user", "auditor", "admin":
		default:
			return fmt.Errorf("config: user %q: role must be user, auditor or admin, not %q", u.Name, u.Role)
		}
	}
	seen = map[string]bool{}
	for _, t := range c.Targets {
		if seen[t.Name] {
			return fmt.Errorf("config: targets: %q defined twice", t.Name)
		}
		seen[t.Name] = true
		n := 0
		for _, s := range []string{t.Password, t.PasswordEnv, t.PasswordFile, strings.Join(t.PasswordCommand, " ")} {
			if s != "" {
				n++
			}
		}
		if n > 1 {
			return fmt.Errorf("config: target %q: set at most one of password, password_env, password_file, password_command", t.Name)
		}
		if len(t.PasswordCommand) > 0 && t.PasswordCommand[0] == "" {
			return fmt.Errorf("config: target %q: password_command needs a command", t.Name)
		}
		if t.Token != "" && t.TokenFile != "" {
			return fmt.Errorf("config: target %q: set at most one of token, token_file", t.Name)
		}
		if (t.ClientCertFile == "") != (t.ClientKeyFile == "") {
			return fmt.Errorf("config: target %q: client_cert_file and client_key_file go together", t.Name)
		}
		switch t.Recording.Mode {
		case "", "strict", "best-effort":
		default:
			return fmt.Errorf("config: target %q: recording.mode must be strict or best-effort, not %q", t.Name, t.Recording.Mode)
		}
		if t.RetentionDays < 0 {
			return fmt.Errorf("config: target %q: retention_days must not be negative, got %d", t.Name, t.RetentionDays)
		}
	}
	if c.Retention.Interval < 0 {
		return fmt.Errorf("config: retention.interval must not be negative, got %v", c.Retention.Interval)
	}
	for i, p := range c.Policies {
		if p.Name == "" {
			return fmt.Errorf("config: policies[%d]: name is required", i)
		}
		if len(p.Subjects) == 0 || len(p.Targets) == 0 {
			return fmt.Errorf("config: policy %q: subjects and targets are required", p.Name)
		}
		// Masking specs and guardrails are checked by policy.Validate when the gateway builds
		// its policy engine.
		switch p.Access {
		case "", "allow", "deny":
		default:
			return fmt.Errorf("config: policy %q: access must be allow, deny or empty (settings only), not %q", p.Name, p.Access)
		}
		switch p.Recording {
		case "", "on", "off", "true", "false":
		default:
			return fmt.Errorf("config: policy %q: recording must be on or off, not %q", p.Name, p.Recording)
		}
	}
	return nil
}

// passwordCommandTimeout bounds a password_command.
const passwordCommandTimeout = 30 * time.Second

// ResolvePassword returns a target's password from password, password_env, password_file or
// password_command.
func (t *Target) ResolvePassword() (string, error) {
	switch {
	case len(t.PasswordCommand) > 0:
		ctx, cancel := context.WithTimeout(context.Background(), passwordCommandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, t.PasswordCommand[0], t.PasswordCommand[1:]...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			// Its stderr may explain (not logged in to the secret manager, ...); its stdout is
			// never quoted: it may hold the secret.
			msg := strings.TrimSpace(stderr.String())
			if len(msg) > 300 {
				msg = msg[:300] + "..."
			}
			return "", fmt.Errorf("target %q: password_command %s: %v: %s", t.Name, t.PasswordCommand[0], err, msg)
		}
		pw := strings.TrimRight(string(out), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("target %q: password_command %s printed no password", t.Name, t.PasswordCommand[0])
		}
		return pw, nil
	case t.PasswordEnv != "":
		v, ok := os.LookupEnv(t.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("target %q: environment variable %s is not set", t.Name, t.PasswordEnv)
		}
		return v, nil
	case t.PasswordFile != "":
		b, err := os.ReadFile(t.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("target %q: %w", t.Name, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return t.Password, nil
}

// ApplyEnv overrides scalar fields from AIRLOCK_* variables named after their YAML path:
// listen.api is AIRLOCK_LISTEN_API, data_dir is AIRLOCK_DATA_DIR.
func ApplyEnv(c *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "AIRLOCK_") {
			env[k] = v
		}
	}
	return applyEnv(reflect.ValueOf(c).Elem(), "AIRLOCK", env)
}

var durationType = reflect.TypeOf(time.Duration(0))

func applyEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, env); err != nil {
				return err
			}
			continue
		}
		s, ok := env[name]
		if !ok {
			continue
		}
		switch {
		case f.Type == durationType:
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("config: %s: %w", name, err)
			}
			fv.SetInt(int64(d))
		case f.Type.Kind() == reflect.String:
			fv.SetString(s)
		case f.Type.Kind() == reflect.Bool:
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("config: %s: %w", name, err)
			}
			fv.SetBool(b)
		case f.Type.Kind() == reflect.Int:
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("config: %s: %w", name, err)
			}
			fv.SetInt(int64(n))
		}
	}
	return nil
}
