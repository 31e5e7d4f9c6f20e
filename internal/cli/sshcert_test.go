package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	enginessh "github.com/airlock-gw/airlock/internal/engine/ssh"
)

func writePubKey(t *testing.T) string {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	path := filepath.Join(t.TempDir(), "id_ed25519.pub")
	if err := os.WriteFile(path, append(bytes.TrimSpace(ssh.MarshalAuthorizedKey(sp)), " alice@laptop\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readCert(t *testing.T, path string) *ssh.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no certificate: %v", err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := k.(*ssh.Certificate)
	if !ok {
		t.Fatalf("%s holds a %s, not a certificate", path, k.Type())
	}
	return c
}

// TestSSHCert: airlock ssh-cert and airlock login --ssh-key write KEY-cert.pub beside the key.
func TestSSHCert(t *testing.T) {
	h := newHarness(t)
	pub := writePubKey(t)
	certPath := strings.TrimSuffix(pub, ".pub") + "-cert.pub"

	// A gateway without an SSH listener says so.
	if code, _, errOut := h.as(t, "alice").run(t, runSSHCert, pub); code == 0 || !strings.Contains(errOut, "no SSH listener") {
		t.Fatalf("without a CA: %d %q", code, errOut)
	}
	ca, err := enginessh.OpenUserCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h.srv.SSHCA = ca
	code, out, errOut := h.as(t, "alice").run(t, runSSHCert, "--ttl", "2h", "--ssh-key", pub)
	if code != 0 || !strings.Contains(out, "SSH certificate for alice") || !strings.Contains(out, certPath) {
		t.Fatalf("ssh-cert: %d %q %q", code, out, errOut)
	}
	if c := readCert(t, certPath); c.ValidPrincipals[0] != "alice" || !bytes.Equal(c.SignatureKey.Marshal(), ca.PublicKey().Marshal()) {
		t.Errorf("certificate %+v", c)
	}
	if code, _, errOut := h.run(t, runSSHCert, "--ssh-key", strings.TrimSuffix(pub, ".pub")+".missing"); code == 0 || !strings.Contains(errOut, "read the public key") {
		t.Errorf("missing key file: %d %q", code, errOut)
	}
	os.Remove(certPath)

	// login --ssh-key: the password on stdin, then the certificate with the new token.
	delete(h.vars, "AIRLOCK_TOKEN")
	h.stdin = "pw\n"
	code, out, errOut = h.run(t, runLogin, "--gateway", h.url, "--user", "alice", "--ssh-key", pub)
	if code != 0 || !strings.Contains(out, "Logged in") || !strings.Contains(out, "SSH certificate for alice") {
		t.Fatalf("login --ssh-key: %d %q %q", code, out, errOut)
	}
	readCert(t, certPath)
}
