// Package oidcmock is an OpenID provider for tests that signs whatever it is asked to: the
// discovery document, a JWKS that can rotate, and tokens good and bad. It has no login, no
// grants: the tests that run real flows use a certified provider (test/oidcprovider).
package oidcmock

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// IdP is a running mock provider.
type IdP struct {
	Server *httptest.Server
	Issuer string
	Key    *rsa.PrivateKey // the current signing key
	KeyID  string

	mu         sync.Mutex
	published  []jose.JSONWebKey
	keyFetches int
}

// New starts a mock provider on a loopback port.
func New() *IdP {
	m := &IdP{}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	m.Issuer = m.Server.URL
	m.Rotate()
	return m
}

// Close stops the provider.
func (m *IdP) Close() { m.Server.Close() }

func newKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// Rotate makes a new signing key the current one and publishes it beside the old ones.
func (m *IdP) Rotate() {
	k := newKey()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Key = k
	m.KeyID = fmt.Sprintf("key-%d", len(m.published)+1)
	m.published = append(m.published, jose.JSONWebKey{Key: &k.PublicKey, KeyID: m.KeyID, Algorithm: "RS256", Use: "sig"})
}

// KeyFetches is how many times the JWKS was fetched.
func (m *IdP) KeyFetches() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keyFetches
}

func (m *IdP) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": m.Issuer, "authorization_endpoint": m.Issuer + "/authorize", "token_endpoint": m.Issuer + "/token",
			"jwks_uri": m.Issuer + "/keys", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	case "/keys":
		m.mu.Lock()
		m.keyFetches++
		set := jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), m.published...)}
		m.mu.Unlock()
		json.NewEncoder(w).Encode(set)
	default:
		http.NotFound(w, r)
	}
}

// Claims returns valid claims for user with groups, for the audience aud, valid for an hour.
func (m *IdP) Claims(aud, user string, groups ...string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": m.Issuer, "aud": aud, "sub": "sub-" + user, "preferred_username": user,
		"groups": groups, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// Sign signs claims with the current key (RS256).
func (m *IdP) Sign(claims map[string]any) string {
	m.mu.Lock()
	k, kid := m.Key, m.KeyID
	m.mu.Unlock()
	return SignRS256(k, kid, claims)
}

// SignRS256 signs claims with key, naming kid in the header.
func SignRS256(key *rsa.PrivateKey, kid string, claims map[string]any) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		panic(err)
	}
	return sign(sig, claims)
}

func sign(sig jose.Signer, claims map[string]any) string {
	b, _ := json.Marshal(claims)
	jws, err := sig.Sign(b)
	if err != nil {
		panic(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

// Unsigned returns claims as a JWT with alg none and an empty signature.
func Unsigned(kid string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	b, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// HS256WithPublicKey signs claims with HMAC-SHA256 keyed by the provider's public key in PEM
// form: the algorithm-confusion attack on verifiers that let the token choose the algorithm.
func (m *IdP) HS256WithPublicKey(claims map[string]any) string {
	m.mu.Lock()
	pub, kid := &m.Key.PublicKey, m.KeyID
	m.mu.Unlock()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		panic(err)
	}
	return sign(sig, claims)
}

// Tamper replaces the payload of a signed token by claims, keeping header and signature.
func Tamper(token string, claims map[string]any) string {
	parts := strings.Split(token, ".")
	b, _ := json.Marshal(claims)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}
