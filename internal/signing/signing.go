package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Algorithm is the only signature algorithm: Ed25519 (RFC 8032), pure, no prehash.
const Algorithm = "ed25519"

// A key directory (data_dir/signing, mode 0700) holds, per key ever used:
//
//	<id>.pub   PEM "PUBLIC KEY" (PKIX), header "Created: <RFC 3339>"; never removed
//	<id>.key   PEM "PRIVATE KEY" (PKCS #8), mode 0600; only the current one is needed
//	current    the id of the key that signs, one line
//
// Rotation (Rotate) writes a new pair and points current at it; the old public keys stay, so
// recordings signed with them still verify.
const (
	pubSuffix   = ".pub"
	keySuffix   = ".key"
	currentFile = "current"
	createdHdr  = "Created"
)

// KeyID names a public key: the first 16 hex digits of SHA-256 of its 32 bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// PublicKey is one verification key.
type PublicKey struct {
	ID        string
	Key       ed25519.PublicKey
	CreatedAt time.Time // zero when unknown
	Current   bool      // the key signing new checkpoints
}

// Keyring is the current signing key and every public key ever used. It is read-only after
// Open and safe for concurrent use.
type Keyring struct {
	priv ed25519.PrivateKey
	id   string
	keys []PublicKey // sorted by creation time, then id
}

// KeyID returns the id of the signing key.
func (k *Keyring) KeyID() string { return k.id }

// Sign signs msg with the current key.
func (k *Keyring) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// Keys returns every public key, oldest first.
func (k *Keyring) Keys() []PublicKey { return append([]PublicKey(nil), k.keys...) }

// Public returns the public keys by id.
func (k *Keyring) Public() map[string]ed25519.PublicKey {
	m := make(map[string]ed25519.PublicKey, len(k.keys))
	for _, p := range k.keys {
		m[p.ID] = p.Key
	}
	return m
}

// Open loads the keyring from dir, generating the first key when dir holds none. keyFile, when
// set, is a PEM PKCS #8 Ed25519 private key (`openssl genpkey -algorithm ed25519`) that signs
// instead of the keys in dir; its public key is added to dir so it stays listed after it is
// replaced. created reports a newly generated key.
func Open(dir, keyFile string, now func() time.Time) (k *Keyring, created bool, err error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("signing keys: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("signing keys: %w", err)
	}
	var priv ed25519.PrivateKey
	switch {
	case keyFile != "":
		if priv, err = readPrivate(keyFile); err != nil {
			return nil, false, err
		}
		pub := priv.Public().(ed25519.PublicKey)
		if _, err := os.Stat(filepath.Join(dir, KeyID(pub)+pubSuffix)); errors.Is(err, fs.ErrNotExist) {
			if err := writeFile(filepath.Join(dir, KeyID(pub)+pubSuffix), publicPEM(pub, now()), 0o644); err != nil {
				return nil, false, err
			}
		}
	default:
		b, rerr := os.ReadFile(filepath.Join(dir, currentFile))
		switch {
		case errors.Is(rerr, fs.ErrNotExist):
			if priv, err = generate(dir, now()); err != nil {
				return nil, false, err
			}
			created = true
		case rerr != nil:
			return nil, false, fmt.Errorf("signing keys: %w", rerr)
		default:
			id := strings.TrimSpace(string(b))
			if priv, err = readPrivate(filepath.Join(dir, id+keySuffix)); err != nil {
				return nil, false, err
			}
			if got := KeyID(priv.Public().(ed25519.PublicKey)); got != id {
				return nil, false, fmt.Errorf("signing keys: %s holds key %s, not %s", id+keySuffix, got, id)
			}
		}
	}
	k = &Keyring{priv: priv, id: KeyID(priv.Public().(ed25519.PublicKey))}
	if k.keys, err = readPublics(dir); err != nil {
		return nil, false, err
	}
	for i := range k.keys {
		k.keys[i].Current = k.keys[i].ID == k.id
	}
	return k, created, nil
}

// Rotate generates a new key in dir and makes it current: gateways started afterwards sign with
// it. Every older public key stays in dir. It returns the new key's id.
func Rotate(dir string, now time.Time) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("signing keys: %w", err)
	}
	priv, err := generate(dir, now)
	if err != nil {
		return "", err
	}
	return KeyID(priv.Public().(ed25519.PublicKey)), nil
}

func generate(dir string, now time.Time) (ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	id := KeyID(pub)
	// Public key first: a key that ever signed anything must be listed.
	if err := writeFile(filepath.Join(dir, id+pubSuffix), publicPEM(pub, now), 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, id+keySuffix), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, currentFile), []byte(id+"\n"), 0o600); err != nil {
		return nil, err
	}
	return priv, nil
}

// publicPEM encodes pub as PEM PKIX with its creation time as a header.
func publicPEM(pub ed25519.PublicKey, created time.Time) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub) // cannot fail for an ed25519 key
	h := map[string]string{}
	if !created.IsZero() {
		h[createdHdr] = created.UTC().Format(time.RFC3339)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: h, Bytes: der})
}

// MarshalPublicPEM encodes a public key the way the key directory and `airlock export` store it.
func MarshalPublicPEM(p PublicKey) []byte { return publicPEM(p.Key, p.CreatedAt) }

func readPrivate(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM \"PRIVATE KEY\" (PKCS #8)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T, not an Ed25519 key", path, k)
	}
	return priv, nil
}

func readPublics(dir string) ([]PublicKey, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"+pubSuffix))
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	var out []PublicKey
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		keys, err := ParsePublicKeys(b)
		if err != nil || len(keys) != 1 {
			return nil, fmt.Errorf("signing keys: %s: not one public key: %v", n, err)
		}
		out = append(out, keys[0])
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// ParsePublicKeys reads verification keys in any of the forms Airlock hands out: PEM "PUBLIC
// KEY" blocks (PKIX, as in the key directory and `openssl pkey -pubout`), the JSON answer of
// GET /api/v1/signing-keys, or lines of base64 (standard or URL alphabet) of the raw 32-byte key.
func ParsePublicKeys(b []byte) ([]PublicKey, error) {
	trimmed := strings.TrimSpace(string(b))
	switch {
	case strings.HasPrefix(trimmed, "-----BEGIN"):
		var out []PublicKey
		rest := []byte(trimmed)
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "PUBLIC KEY" {
				continue
			}
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key: %w", err)
			}
			pub, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("public key: a %T, not an Ed25519 key", k)
			}
			p := PublicKey{ID: KeyID(pub), Key: pub}
			if c := blk.Headers[createdHdr]; c != "" {
				p.CreatedAt, _ = time.Parse(time.RFC3339, c)
			}
			out = append(out, p)
		}
		if len(out) == 0 {
			return nil, errors.New("public key: no PEM \"PUBLIC KEY\" block")
		}
		return out, nil
	case strings.HasPrefix(trimmed, "{"):
		var doc struct {
			Keys []struct {
				Algorithm string    `json:"algorithm"`
				PublicKey string    `json:"public_key"`
				CreatedAt time.Time `json:"created_at"`
			} `json:"keys"`
		}
		if err := json.Unmarshal([]byte(trimmed), &doc); err != nil {
			return nil, fmt.Errorf("public keys JSON: %w", err)
		}
		var out []PublicKey
		for _, k := range doc.Keys {
			if k.Algorithm != "" && k.Algorithm != Algorithm {
				continue
			}
			pub, err := decodeRaw(k.PublicKey)
			if err != nil {
				return nil, err
			}
			out = append(out, PublicKey{ID: KeyID(pub), Key: pub, CreatedAt: k.CreatedAt})
		}
		if len(out) == 0 {
			return nil, errors.New("public keys JSON: no ed25519 key")
		}
		return out, nil
	}
	var out []PublicKey
	for _, line := range strings.Fields(trimmed) {
		pub, err := decodeRaw(line)
		if err != nil {
			return nil, err
		}
		out = append(out, PublicKey{ID: KeyID(pub), Key: pub})
	}
	if len(out) == 0 {
		return nil, errors.New("public key: empty")
	}
	return out, nil
}

func decodeRaw(s string) (ed25519.PublicKey, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("public key: %d bytes, an Ed25519 key has %d", len(b), ed25519.PublicKeySize)
			}
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, fmt.Errorf("public key: %q is neither PEM nor base64", s)
}

// writeFile replaces path atomically with b, durable once it returns.
func writeFile(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	defer os.Remove(f.Name())
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err == nil {
		if d, derr := os.Open(dir); derr == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("signing keys: write %s: %w", path, err)
	}
	return nil
}
