package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	tok := Token{Name: "dc1-a", Addr: "gw:8443", Pin: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Secret: "x"}.String()
	tokFile := filepath.Join(dir, "tok")
	os.WriteFile(tokFile, []byte(tok+"\n"), 0o600)
	tests := []struct {
		name, yaml, flag, wantErr string
	}{
		{"token file and password file", "token_file: " + tokFile + "\ntargets:\n  - {name: db, type: postgres, address: 10.0.0.1:5432, username: u, password_file: " + pw + "}\n", "", ""},
		{"flag wins", "token: nonsense\ntargets:\n  - {name: db, type: postgres, address: 10.0.0.1:5432}\n", tok, ""},
		{"unknown key", "targetz: []\n", tok, "field targetz not found"},
		{"no targets", "log: {level: info}\n", tok, "no targets"},
		{"agent key on the agent", "targets:\n  - {name: db, type: postgres, agent: x}\n", tok, "agent is for the gateway's config"},
		{"no address", "targets:\n  - {name: db, type: postgres}\n", tok, "address"},
		{"duplicate", "targets:\n  - {name: db, type: postgres, address: a:1}\n  - {name: db, type: postgres, address: a:2}\n", tok, "defined twice"},
		{"no token", "targets:\n  - {name: db, type: postgres, address: a:1}\n", "", "no join token"},
	}
	t.Setenv("AIRLOCK_AGENT_TOKEN", "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "agent.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o600)
			c, err := LoadConfig(p)
			if err == nil {
				_, err = c.ResolveToken(tt.flag)
			}
			if err == nil {
				ts, rerr := c.ResolveTargets()
				err = rerr
				if err == nil && ts["db"].Password != "" && ts["db"].Password != "s3cret" {
					t.Errorf("password %q", ts["db"].Password)
				}
			}
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
