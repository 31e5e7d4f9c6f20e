package agent

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
)

// tokenPrefix starts every join token, so that secret scanners and people can tell one.
const tokenPrefix = "aljt1_"

// Token is what `airlock agents create` prints once: everything an agent needs to join.
type Token struct {
	Name string `json:"name"` // the agent's name, as registered
	// Addr is the gateway's agent listener (listen.agents), host:port.
	Addr string `json:"addr"`
	// Pin is the SHA-256 of the gateway certificate's SubjectPublicKeyInfo, base64url: the
	// agent accepts no other server key, whatever CA signed it.
	Pin string `json:"pin"`
	// Secret authenticates the agent; the gateway keeps only its SHA-256.
	Secret string `json:"secret"`
}

// ValidName reports whether n may name an agent: 1 to 63 letters, digits, '.', '_' or '-',
// starting with a letter or digit (so that globs like "dc1-*" select agents). (A loop, not the
// regexp ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$: compiling that one took 0.3 ms of every start of the
// airlock binary, kubectl's credential plugin included.)
func ValidName(n string) bool {
	if len(n) == 0 || len(n) > 63 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// String encodes the token.
func (t Token) String() string {
	b, _ := json.Marshal(t)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseToken decodes a token from String; it checks every field's shape.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Token{}, errors.New("not an agent join token (it starts with " + tokenPrefix + ", from `airlock agents create`)")
	}
	if len(rest) > 4096 {
		return Token{}, errors.New("agent join token too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return Token{}, fmt.Errorf("agent join token: %w", err)
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return Token{}, fmt.Errorf("agent join token: %w", err)
	}
	switch {
	case !ValidName(t.Name):
		return Token{}, fmt.Errorf("agent join token: invalid agent name %q", t.Name)
	case t.Secret == "":
		return Token{}, errors.New("agent join token: no secret")
	}
	if _, _, err := net.SplitHostPort(t.Addr); err != nil {
		return Token{}, fmt.Errorf("agent join token: gateway address %q: %w", t.Addr, err)
	}
	if p, err := base64.RawURLEncoding.DecodeString(t.Pin); err != nil || len(p) != sha256.Size {
		return Token{}, errors.New("agent join token: the certificate pin is not a base64url SHA-256")
	}
	return t, nil
}

// Pin returns the pin of a DER certificate: the SHA-256 of its SubjectPublicKeyInfo.
func Pin(der []byte) (string, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
