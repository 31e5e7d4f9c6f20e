package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/target"
)

// Config is agent.yaml. Every field's default is stated beside it (docs/agent.md).
type Config struct {
	// Token is the join token from `airlock agents create`; --token, AIRLOCK_AGENT_TOKEN and
	// token_file are the other ways to give it (the flag wins, then the environment).
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// Gateway overrides the address the token carries (host:port of listen.agents).
	// Default "": the token's.
	Gateway string     `yaml:"gateway"`
	Log     config.Log `yaml:"log"`
	// Debug serves Go's pprof profiles (/debug/pprof/) for performance work, like the
	// gateway's listen.debug. Default "" (off); keep it on loopback.
	Debug string `yaml:"debug"`
	// ShutdownGrace is how long SIGTERM lets running sessions finish. Default 30s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// Targets are the targets this agent serves, in the gateway's target shape, with their
	// addresses and credentials (password, password_env, password_file, ...), which stay here.
	Targets []config.Target `yaml:"targets"`
}

// LoadConfig reads agent.yaml (path "" means an empty config).
func LoadConfig(path string) (*Config, error) {
	c := &Config{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read agent config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("parse agent config %s: %w", path, err)
		}
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	return c, nil
}

// ResolveToken returns the join token: flag, then AIRLOCK_AGENT_TOKEN, then token, then
// token_file.
func (c *Config) ResolveToken(flag string) (Token, error) {
	s := flag
	if s == "" {
		s = os.Getenv("AIRLOCK_AGENT_TOKEN")
	}
	if s == "" {
		s = c.Token
	}
	if s == "" && c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return Token{}, fmt.Errorf("token_file: %w", err)
		}
		s = strings.TrimSpace(string(b))
	}
	if s == "" {
		return Token{}, errors.New("no join token: pass --token (from `airlock agents create NAME`), or set AIRLOCK_AGENT_TOKEN or token_file")
	}
	return ParseToken(s)
}

// ResolveTargets returns the targets by name, with their credentials resolved; each needs an
// address (the agent dials it).
func (c *Config) ResolveTargets() (map[string]target.Target, error) {
	out := map[string]target.Target{}
	for _, t := range c.Targets {
		if _, dup := out[t.Name]; dup {
			return nil, fmt.Errorf("agent config: targets: %q defined twice", t.Name)
		}
		if t.Agent != "" {
			return nil, fmt.Errorf("agent config: target %q: agent is for the gateway's config; here, give its address", t.Name)
		}
		if t.Token != "" && t.TokenFile != "" {
			return nil, fmt.Errorf("agent config: target %q: set at most one of token, token_file", t.Name)
		}
		pw, err := t.ResolvePassword()
		if err != nil {
			return nil, fmt.Errorf("agent config: %w", err)
		}
		tt := target.Target{Name: t.Name, Type: t.Type, Address: t.Address, Database: t.Database, Username: t.Username,
			Password: pw, TLS: t.TLS, CAFile: t.CAFile, PrivateKeyFile: t.PrivateKeyFile, HostKey: t.HostKey, Labels: t.Labels,
			Token: t.Token, TokenFile: t.TokenFile, ClientCertFile: t.ClientCertFile, ClientKeyFile: t.ClientKeyFile, Impersonate: t.Impersonate, Source: "agent"}
		if err := tt.Validate(); err != nil {
			return nil, fmt.Errorf("agent config: %w", err)
		}
		out[t.Name] = tt
	}
	if len(out) == 0 {
		return nil, errors.New("agent config: no targets: list the targets this agent serves under targets:")
	}
	return out, nil
}
