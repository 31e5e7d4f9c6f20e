package api

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	enginessh "github.com/airlock-gw/airlock/internal/engine/ssh"
)

func TestSSHCertificate(t *testing.T) {
	f := newFixture(t)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	key := string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(sp))) + " alice@laptop"
	body := func(v any) string { b, _ := json.Marshal(v); return string(b) }

	if res, b := f.do(t, "POST", "/api/v1/ssh/certificate", "alice", body(map[string]string{"public_key": key})); res.StatusCode != 501 {
		t.Fatalf("without an SSH listener: %d %s, want 501", res.StatusCode, b)
	}
	ca, err := enginessh.OpenUserCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SSHCA = ca
	for _, tc := range []struct {
		name string
		req  map[string]string
	}{
		{"no key", map[string]string{}},
		{"not a key", map[string]string{"public_key": "ssh-ed25519 nope"}},
		{"ttl too long", map[string]string{"public_key": key, "ttl": "48h"}},
		{"ttl not a duration", map[string]string{"public_key": key, "ttl": "soon"}},
	} {
		if res, b := f.do(t, "POST", "/api/v1/ssh/certificate", "alice", body(tc.req)); res.StatusCode != 400 {
			t.Errorf("%s: %d %s, want 400", tc.name, res.StatusCode, b)
		}
	}
	res, b := f.do(t, "POST", "/api/v1/ssh/certificate", "alice", body(map[string]string{"public_key": key, "ttl": "1h"}))
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	var got sshCertResponse
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(got.Certificate))
	if err != nil {
		t.Fatalf("certificate %q: %v", got.Certificate, err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok || !bytes.Equal(cert.Key.Marshal(), sp.Marshal()) || !bytes.Equal(cert.SignatureKey.Marshal(), ca.PublicKey().Marshal()) {
		t.Fatalf("not a certificate of the key by the CA: %+v", k)
	}
	if len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != "alice" || cert.CertType != ssh.UserCert {
		t.Errorf("principals %v type %d", cert.ValidPrincipals, cert.CertType)
	}
	if life := time.Unix(int64(cert.ValidBefore), 0).Sub(time.Now()); life > time.Hour+time.Minute || life < 50*time.Minute {
		t.Errorf("valid for %s more, want about 1h", life)
	}
	if got.ValidBefore.Unix() != int64(cert.ValidBefore) || got.CAPublicKey == "" || got.Principals[0] != "alice" {
		t.Errorf("response %+v", got)
	}
}
