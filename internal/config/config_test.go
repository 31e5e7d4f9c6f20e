package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEmbeddedDefault(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "./airlock-data" || c.Listen.API != "127.0.0.1:8009" || c.Listen.Postgres != "127.0.0.1:15432" || c.Listen.MySQL != "127.0.0.1:13306" || c.Listen.SSH != "127.0.0.1:12222" {
		t.Fatalf("defaults: %+v", c)
	}
	if c.ShutdownGrace != 30*time.Second || c.Recording.Fsync != "interval" || c.Auth.TokenTTL != 12*time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestLoadIssueExample(t *testing.T) {
	p := write(t, `
data_dir: ./airlock-data
listen:
  api: 127.0.0.1:8009
  postgres: 127.0.0.1:15432
users:
  - name: alice
    password: s3cret
    role: user
    groups: [dba]
targets:
  - name: pg
    type: postgres
    address: 127.0.0.1:5432
    database: test
    username: postgres
    password: ""
  - name: pg-be
    type: postgres
    address: 127.0.0.1:5432
    recording:
      mode: best-effort
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Users) != 1 || c.Users[0].Groups[0] != "dba" || c.Targets[0].TLS != "prefer" ||
		c.Targets[0].Recording.Mode != "strict" || c.Targets[1].Recording.Mode != "best-effort" || c.Recording.BestEffortBuffer != 8<<20 {
		t.Fatalf("loaded %+v", c)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown key", "listen:\n  apii: x\n", "apii"},
		{"unknown policy setting", "policies:\n  - name: p\n    subjects: ['*']\n    targets: ['*']\n    access: allow\n    mask: [email]\n", "mask"},
		{"bad recording", "policies:\n  - {name: p, subjects: ['*'], targets: ['*'], recording: maybe}\n", "recording"},
		{"bad role", "users:\n  - name: a\n    password: x\n    role: root\n", "role"},
		{"password and hash", "users:\n  - name: a\n    password: x\n    password_hash: y\n", "exactly one"},
		{"duplicate target", "targets:\n  - {name: a, type: postgres, address: 'h:1'}\n  - {name: a, type: postgres, address: 'h:2'}\n", "twice"},
		{"bad listen", "listen:\n  api: nope\n", "listen.api"},
		{"bad fsync", "recording:\n  fsync: sometimes\n", "recording.fsync"},
		{"bad recording mode", "targets:\n  - {name: a, type: postgres, address: 'h:1', recording: {mode: off}}\n", "recording.mode"},
		{"advertise without port", "agents:\n  advertise: gw.example.com\n", "agents.advertise"},
		{"wildcard advertise", "agents:\n  advertise: 0.0.0.0:8443\n", "wildcard"},
		{"advertise port 0", "agents:\n  advertise: 'gw.example.com:0'\n", "agents.advertise"},
		{"bad access", "policies:\n  - {name: p, subjects: ['*'], targets: ['*'], access: maybe}\n", "access"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestApplyEnv(t *testing.T) {
	c := &Config{}
	err := ApplyEnv(c, []string{"AIRLOCK_LISTEN_API=127.0.0.1:9", "AIRLOCK_DATA_DIR=/d", "AIRLOCK_SHUTDOWN_GRACE=2s",
		"AIRLOCK_POSTGRES_ALLOW_PLAINTEXT_LOOPBACK=true", "AIRLOCK_POSTGRES_MAX_MESSAGE_SIZE=42", "AIRLOCK_AGENTS_ADVERTISE=gw.example.com:8443", "OTHER=1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.API != "127.0.0.1:9" || c.DataDir != "/d" || c.ShutdownGrace != 2*time.Second ||
		!c.Postgres.AllowPlaintextLoopback || c.Postgres.MaxMessageSize != 42 || c.Agents.Advertise != "gw.example.com:8443" {
		t.Fatalf("env not applied: %+v", c)
	}
	if err := ApplyEnv(&Config{}, []string{"AIRLOCK_SHUTDOWN_GRACE=soon"}); err == nil {
		t.Fatal("bad duration accepted")
	}
}

func TestResolvePassword(t *testing.T) {
	t.Setenv("AIRLOCK_TEST_PW", "from-env")
	f := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	for _, tt := range []struct {
		t    Target
		want string
	}{
		{Target{Password: "inline"}, "inline"},
		{Target{PasswordEnv: "AIRLOCK_TEST_PW"}, "from-env"},
		{Target{PasswordFile: f}, "from-file"},
		{Target{PasswordCommand: []string{"printf", "%s\n", "from command"}}, "from command"},
	} {
		got, err := tt.t.ResolvePassword()
		if err != nil || got != tt.want {
			t.Errorf("%+v: %q, %v; want %q", tt.t, got, err, tt.want)
		}
	}
	if _, err := (&Target{Name: "x", PasswordEnv: "AIRLOCK_TEST_UNSET_VAR"}).ResolvePassword(); err == nil {
		t.Error("unset env var accepted")
	}
	// A failing command: its stderr explains, its stdout (maybe a secret) is never quoted.
	_, err := (&Target{Name: "x", PasswordCommand: []string{"sh", "-c", "echo s3cret; echo not logged in >&2; exit 3"}}).ResolvePassword()
	if err == nil || !strings.Contains(err.Error(), "not logged in") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("failing password_command: %v", err)
	}
	if _, err := (&Target{Name: "x", PasswordCommand: []string{"true"}}).ResolvePassword(); err == nil {
		t.Error("a password_command that printed nothing was accepted")
	}
	if _, err := (&Target{Name: "x", PasswordCommand: []string{"/nonexistent/secret-tool"}}).ResolvePassword(); err == nil {
		t.Error("a missing password_command was accepted")
	}
	// One source only, and the YAML shape.
	c, err := Load(write(t, "targets:\n  - name: pg\n    type: postgres\n    address: 127.0.0.1:5432\n    password_command: [printf, cmd-pw]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := c.Targets[0].ResolvePassword(); err != nil || pw != "cmd-pw" {
		t.Errorf("password_command from YAML: %q, %v", pw, err)
	}
	if _, err := Load(write(t, "targets:\n  - name: pg\n    type: postgres\n    address: 127.0.0.1:5432\n    password: a\n    password_command: [printf, b]\n")); err == nil || !strings.Contains(err.Error(), "at most one") {
		t.Errorf("password and password_command both accepted: %v", err)
	}
}

// yaml.v3 is a YAML 1.2 decoder, but `on`/`off` are the YAML 1.1 booleans people write: into
// a string field they must arrive as the words, and the policy engine reads them as such.
func TestPolicyRecordingOnOff(t *testing.T) {
	c, err := Load(write(t, `policies:
  - name: a
    subjects: ["*"]
    targets: [pg]
    access: allow
    recording: on
    max_duration: 1h
  - name: b
    subjects: [user:alice]
    targets: [pg]
    recording: off
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Policies[0].Recording + "/" + c.Policies[1].Recording; got != "on/off" {
		t.Fatalf("recording loaded as %q, want on/off", got)
	}
	if c.Policies[0].MaxDuration != time.Hour {
		t.Fatalf("max_duration %v", c.Policies[0].MaxDuration)
	}
}

func TestAgentsAdvertise(t *testing.T) {
	c, err := Load(write(t, "listen:\n  agents: 0.0.0.0:8443\nagents:\n  advertise: gw.example.com:8443\n"))
	if err != nil || c.Agents.Advertise != "gw.example.com:8443" || c.Listen.Agents != "0.0.0.0:8443" {
		t.Fatalf("%+v %v", c.Agents, err)
	}
}
