package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testSSHCertificate: `airlock login --ssh-key` and `airlock ssh-cert` get certificates from the
// gateway's user CA for keys registered nowhere; stock ssh logs in with them (ssh finds
// KEY-cert.pub beside KEY by itself); a certificate is good for its own user only, and not once
// the user's tokens are revoked. Each issue is in the audit log. Runs last in TestSSH: it
// revokes alice's tokens.
func testSSHCertificate(t *testing.T, f *sshFixture) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	aliceKey := filepath.Join(home, ".ssh", "id_ed25519")
	keygen(t, aliceKey)
	env := append(cleanEnv(), "HOME="+home)

	// airlock login --ssh-key: the password on stdin, the certificate beside the key.
	r := run(time.Minute, env, strings.NewReader(alicePassword+"\n"), airlockBin, "login", "--gateway", f.g.apiURL(), "--user", "alice",
		"--ssh-key", aliceKey+".pub")
	if r.Code != 0 || !strings.Contains(r.Stdout, "SSH certificate for alice") {
		t.Fatalf("airlock login --ssh-key: %s", r)
	}
	if _, err := os.Stat(aliceKey + "-cert.pub"); err != nil {
		t.Fatalf("no certificate beside the key: %v", err)
	}
	if r := run(time.Minute, env, nil, "ssh-keygen", "-L", "-f", aliceKey+"-cert.pub"); r.Code != 0 || !strings.Contains(r.Stdout, "Type: ssh-ed25519-cert-v01@openssh.com user certificate") {
		t.Errorf("ssh-keygen -L: %s", r)
	}
	since := time.Now()
	if r := f.c.ssh("alice:web-1", aliceKey, "echo via-certificate"); r.Code != 0 || r.Stdout != "via-certificate\n" {
		t.Fatalf("ssh with the certificate: %s", r)
	}
	_, ev := f.g.waitSSHSessionSlack(t, "alice", "web-1", since, 0)
	if m := ev[0].str("auth_method"); m != "certificate" {
		t.Errorf("auth_method = %q, want certificate", m)
	}
	// Without the certificate the key is a stranger.
	bare := filepath.Join(t.TempDir(), "bare")
	b, _ := os.ReadFile(aliceKey)
	os.WriteFile(bare, b, 0o600)
	if r := f.c.ssh("alice:web-1", bare, "true"); r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("the key without its certificate: %s", r)
	}

	// airlock ssh-cert for bob (the saved login of another home): good for bob, not for alice.
	bobHome := t.TempDir()
	bobKey := filepath.Join(bobHome, "bob_key")
	keygen(t, bobKey)
	bobEnv := append(cleanEnv(), "HOME="+bobHome, "AIRLOCK_GATEWAY="+f.g.apiURL(), "AIRLOCK_TOKEN="+f.g.token(t, "bob", bobPassword))
	r = run(time.Minute, bobEnv, nil, airlockBin, "ssh-cert", "--ttl", "1h", "--json", bobKey+".pub")
	var ans struct {
		Principals  []string  `json:"principals"`
		ValidBefore time.Time `json:"valid_before"`
	}
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &ans) != nil || len(ans.Principals) != 1 || ans.Principals[0] != "bob" {
		t.Fatalf("airlock ssh-cert: %s", r)
	}
	if life := time.Until(ans.ValidBefore); life > time.Hour+time.Minute || life < 50*time.Minute {
		t.Errorf("--ttl 1h: valid for %s more", life)
	}
	if r := f.c.ssh("bob:web-1", bobKey, "echo bob-cert"); r.Code != 0 || r.Stdout != "bob-cert\n" {
		t.Errorf("bob with his certificate: %s", r)
	}
	if r := f.c.ssh("alice:web-1", bobKey, "echo should-not-run"); r.Code != 255 || strings.Contains(r.Stdout, "should-not-run") {
		t.Errorf("bob's certificate as alice: %s", r)
	}

	// An admin revokes alice's tokens: her certificate goes with them.
	if code, b := f.g.api(t, f.g.adminToken(t), "POST", "/api/v1/auth/revoke", map[string]string{"user": "alice"}); code != 200 {
		t.Fatalf("revoke: %d %s", code, b)
	}
	if r := f.c.ssh("alice:web-1", aliceKey, "echo should-not-run"); r.Code != 255 || strings.Contains(r.Stdout, "should-not-run") {
		t.Errorf("a certificate issued before the revocation: %s", r)
	}

	// The audit log has each certificate, with the key's fingerprint.
	tok := f.g.adminToken(t)
	var issued []string
	for _, s := range f.g.sessions(t, tok, sessionFilter{}) {
		if s.Type != "audit" {
			continue
		}
		for _, e := range f.g.events(t, tok, s.ID) {
			if e.Type == "audit" && e.str("action") == "ssh.certificate" {
				issued = append(issued, e.str("actor"))
			}
		}
	}
	if got := strings.Join(issued, ","); !strings.Contains(got, "alice") || !strings.Contains(got, "bob") {
		t.Errorf("audited ssh.certificate actors: %q, want alice and bob", got)
	}
}
