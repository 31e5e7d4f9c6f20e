package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	s, err := NewService(bytes.Repeat([]byte{1}, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewService(bytes.Repeat([]byte{2}, 32), nil)
	v := s.Seal("oidc-web", []byte("state and verifier"))
	if strings.Contains(v, "state") {
		t.Fatalf("sealed value readable: %s", v)
	}
	if b, err := s.Open("oidc-web", v); err != nil || string(b) != "state and verifier" {
		t.Fatalf("open: %q %v", b, err)
	}
	if s.Seal("oidc-web", []byte("x")) == s.Seal("oidc-web", []byte("x")) {
		t.Fatal("two seals of the same value are equal (nonce reused)")
	}
	flipped := []byte(v)
	flipped[len(flipped)/2] ^= 1
	for name, tc := range map[string]struct {
		svc          *Service
		purpose, val string
	}{
		"other purpose": {s, "other", v}, "other key": {other, "oidc-web", v}, "changed": {s, "oidc-web", string(flipped)},
		"short": {s, "oidc-web", "abc"}, "not base64": {s, "oidc-web", "!!!"}, "empty": {s, "oidc-web", ""},
	} {
		if _, err := tc.svc.Open(tc.purpose, tc.val); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: %v, want ErrSealed", name, err)
		}
	}
}
