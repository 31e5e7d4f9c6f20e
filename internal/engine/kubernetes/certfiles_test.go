package kubernetes

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeClientCert(t *testing.T, dir, cn string, mod time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	for name, b := range map[string]*pem.Block{"c.pem": {Type: "CERTIFICATE", Bytes: der}, "k.pem": {Type: "EC PRIVATE KEY", Bytes: kd}} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
}

// A rotated client certificate is used for the next connection, without a restart.
func TestClientCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	writeClientCert(t, dir, "first", t0)
	cf := &certFiles{cert: filepath.Join(dir, "c.pem"), key: filepath.Join(dir, "k.pem")}
	cn := func() string {
		t.Helper()
		c, err := cf.get()
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := cn(); got != "first" {
		t.Fatalf("first load: %s", got)
	}
	first, _ := cf.get()
	if again, _ := cf.get(); again != first {
		t.Error("unchanged files were loaded again")
	}
	writeClientCert(t, dir, "second", t0.Add(time.Minute))
	if got := cn(); got != "second" {
		t.Fatalf("after rotation: %s, want second", got)
	}
	os.Remove(filepath.Join(dir, "k.pem"))
	if _, err := cf.get(); err == nil {
		t.Error("a missing key file went unnoticed")
	}
}
