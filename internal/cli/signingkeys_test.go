package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/signing"
)

func TestSigningKeysRotateAndList(t *testing.T) {
	h := newHarness(t)
	data := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "signing")
	first, _, err := signing.Open(dir, "", nil) // what the gateway's first start does
	if err != nil {
		t.Fatal(err)
	}

	code, out, errs := h.run(t, runSigningKeys, "rotate", "--config", cfg)
	if code != exitOK {
		t.Fatalf("rotate: exit %d, %s", code, errs)
	}
	id := strings.TrimSpace(out)
	if id == first.KeyID() || !strings.Contains(errs, "restart") {
		t.Fatalf("rotate printed %q (stderr %q); the old key is %s", id, errs, first.KeyID())
	}
	second, _, err := signing.Open(dir, "", nil) // the next start
	if err != nil {
		t.Fatal(err)
	}
	if second.KeyID() != id {
		t.Fatalf("after rotate the gateway signs with %s, want %s", second.KeyID(), id)
	}
	if pub, ok := second.Public()[first.KeyID()]; !ok || !pub.Equal(first.Public()[first.KeyID()]) {
		t.Fatal("the old public key is no longer trusted after rotation")
	}

	h.srv.SigningKeys = second
	h.vars["AIRLOCK_GATEWAY"] = h.url // no login: public keys are public
	code, out, errs = h.run(t, runSigningKeys, "list")
	if code != exitOK {
		t.Fatalf("list: exit %d, %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(out, first.KeyID()) || !strings.Contains(out, id) {
		t.Fatalf("list printed:\n%s", out)
	}
	for _, l := range lines[1:] {
		if cur := strings.HasPrefix(l, id) && strings.Contains(l, " yes "); strings.HasPrefix(l, id) != cur {
			t.Errorf("the current key is not marked (only) on its line: %q", l)
		}
	}

	// A configured key file is the operator's to replace: rotate refuses.
	if err := os.WriteFile(cfg, []byte("data_dir: "+data+"\nrecording:\n  signing_key_file: /nonexistent/k.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs = h.run(t, runSigningKeys, "rotate", "--config", cfg); code == exitOK || !strings.Contains(errs, "signing_key_file") {
		t.Fatalf("rotate with signing_key_file: exit %d, %q", code, errs)
	}
}
