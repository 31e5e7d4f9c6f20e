package sealbox

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadGeneratesAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k, created, err := Load(dir, "")
	if err != nil || !created {
		t.Fatalf("Load: %v created=%v", err, created)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v %v", st.Mode(), err)
	}
	st, err = os.Stat(filepath.Join(dir, k.KeyID()+".key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v %v", st.Mode(), err)
	}
	id, nonce, ct := k.Seal([]byte("4111 1111 1111 1111"), []byte("s-1"))
	if id != k.KeyID() || bytes.Contains(ct, []byte("4111")) {
		t.Fatalf("seal: id %s ct %q", id, ct)
	}
	k2, created, err := Load(dir, "")
	if err != nil || created || k2.KeyID() != k.KeyID() {
		t.Fatalf("reload: %v created=%v id %s", err, created, k2.KeyID())
	}
	p, err := k2.Open(id, nonce, ct, []byte("s-1"))
	if err != nil || string(p) != "4111 1111 1111 1111" {
		t.Fatalf("open: %q %v", p, err)
	}
	if _, err := k2.Open(id, nonce, ct, []byte("s-2")); err == nil {
		t.Fatal("opened with another session's aad")
	}
	ct[0] ^= 1
	if _, err := k2.Open(id, nonce, ct, []byte("s-1")); err == nil {
		t.Fatal("opened a tampered ciphertext")
	}
	if _, err := k2.Open("0000000000000000", nonce, ct, nil); err == nil {
		t.Fatal("opened with an unknown key")
	}
}

func TestKeyFileOldKeysStayReadable(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "keys")
	gen, _, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	id0, n0, ct0 := gen.Seal([]byte("old"), nil)

	key := bytes.Repeat([]byte{7}, KeySize)
	for name, content := range map[string][]byte{
		"raw": key, "hex": []byte(hex.EncodeToString(key) + "\n"), "b64": []byte(base64.StdEncoding.EncodeToString(key) + "\n"),
	} {
		f := filepath.Join(base, name)
		if err := os.WriteFile(f, content, 0o600); err != nil {
			t.Fatal(err)
		}
		k, created, err := Load(dir, f)
		if err != nil || created || k.KeyID() != KeyID(key) {
			t.Fatalf("%s: %v created=%v id %s", name, err, created, k.KeyID())
		}
		if p, err := k.Open(id0, n0, ct0, nil); err != nil || string(p) != "old" {
			t.Fatalf("%s: the generated key's ciphertext: %q %v", name, p, err)
		}
	}
	// The config key was copied into dir: without the file, what it sealed still opens.
	k, _ := New(key)
	id1, n1, ct1 := k.Seal([]byte("new"), nil)
	again, _, err := Load(dir, "")
	if err != nil || again.KeyID() != id0 {
		t.Fatalf("reload without key file: %v %s", err, again.KeyID())
	}
	if p, err := again.Open(id1, n1, ct1, nil); err != nil || string(p) != "new" {
		t.Fatalf("config key's ciphertext: %q %v", p, err)
	}
}

func TestParseKeyRejects(t *testing.T) {
	for _, b := range []string{"", "short", hex.EncodeToString(make([]byte, 31)), base64.StdEncoding.EncodeToString(make([]byte, 33))} {
		if _, err := ParseKey([]byte(b)); err == nil {
			t.Errorf("ParseKey(%q) accepted", b)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add([]byte(hex.EncodeToString(make([]byte, 32))))
	f.Add([]byte(base64.RawURLEncoding.EncodeToString(make([]byte, 32))))
	f.Add(make([]byte, 32))
	f.Add([]byte(" \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKey(b)
		if err == nil && len(k) != KeySize {
			t.Fatalf("ParseKey returned %d bytes", len(k))
		}
	})
}
