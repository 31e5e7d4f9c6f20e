package signing

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOpenGeneratesThenReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "signing")
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	k, created, err := Open(dir, "", func() time.Time { return t0 })
	if err != nil || !created {
		t.Fatalf("Open = %v, created %v", err, created)
	}
	if len(k.KeyID()) != 16 {
		t.Fatalf("key id %q is not 16 hex digits", k.KeyID())
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, k.KeyID()+".key"): 0o600} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, %v; want %v", path, st.Mode().Perm(), err, want)
		}
	}
	msg := []byte("hello")
	sig := k.Sign(msg)
	k2, created, err := Open(dir, "", nil)
	if err != nil || created || k2.KeyID() != k.KeyID() {
		t.Fatalf("reopen = %v, created %v, id %s want %s", err, created, k2.KeyID(), k.KeyID())
	}
	keys := k2.Keys()
	if len(keys) != 1 || !keys[0].Current || !keys[0].CreatedAt.Equal(t0) || !ed25519.Verify(keys[0].Key, msg, sig) {
		t.Fatalf("keys = %+v", keys)
	}
}

func TestRotateKeepsOldPublicKeys(t *testing.T) {
	dir := t.TempDir()
	k1, _, err := Open(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := Rotate(dir, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	k2, _, err := Open(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if k2.KeyID() != id2 || id2 == k1.KeyID() {
		t.Fatalf("after rotation signing with %s, want %s (old %s)", k2.KeyID(), id2, k1.KeyID())
	}
	pub := k2.Public()
	if len(pub) != 2 || pub[k1.KeyID()] == nil {
		t.Fatalf("public keys after rotation: %v", pub)
	}
	for _, p := range k2.Keys() {
		if p.Current != (p.ID == id2) {
			t.Fatalf("key %s current=%v", p.ID, p.Current)
		}
	}
}

func TestOpenConfiguredKeyFile(t *testing.T) {
	dir := t.TempDir()
	// A PKCS #8 PEM key made elsewhere, as openssl genpkey writes it.
	if _, err := Rotate(filepath.Join(dir, "elsewhere"), time.Now()); err != nil {
		t.Fatal(err)
	}
	other, _, err := Open(filepath.Join(dir, "elsewhere"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "elsewhere", other.KeyID()+".key")
	k, created, err := Open(filepath.Join(dir, "signing"), keyFile, nil)
	if err != nil || created || k.KeyID() != other.KeyID() {
		t.Fatalf("Open with key file = %v, created %v, id %s want %s", err, created, k.KeyID(), other.KeyID())
	}
	if len(k.Keys()) != 1 || !k.Keys()[0].Current {
		t.Fatalf("keys = %+v", k.Keys())
	}
}

func TestParsePublicKeys(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	id := KeyID(pub)
	b64 := base64.StdEncoding.EncodeToString(pub)
	js, _ := json.Marshal(map[string]any{"keys": []map[string]any{{"id": id, "algorithm": "ed25519", "public_key": b64}}})
	for name, in := range map[string][]byte{
		"pem":    MarshalPublicPEM(PublicKey{Key: pub, CreatedAt: time.Now()}),
		"base64": []byte(b64 + "\n"),
		"json":   js,
	} {
		t.Run(name, func(t *testing.T) {
			keys, err := ParsePublicKeys(in)
			if err != nil || len(keys) != 1 || keys[0].ID != id || !keys[0].Key.Equal(pub) {
				t.Fatalf("ParsePublicKeys = %+v, %v", keys, err)
			}
		})
	}
	for _, bad := range []string{"", "not a key", base64.StdEncoding.EncodeToString([]byte("short")), "-----BEGIN FOO-----\n-----END FOO-----"} {
		if _, err := ParsePublicKeys([]byte(bad)); err == nil {
			t.Errorf("ParsePublicKeys(%q) succeeded", bad)
		}
	}
}
