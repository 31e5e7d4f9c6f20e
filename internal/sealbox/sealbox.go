package sealbox

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of every key: AES-256.
const KeySize = 32

// A key directory (data_dir/keys, mode 0700) holds, per key ever used:
//
//	<id>.key   the key, 64 hex digits and a newline, mode 0600; never removed
//	current    the id of the key that seals, one line
//
// Old keys stay, so what they sealed can still be opened.
const (
	keySuffix   = ".key"
	currentFile = "current"
)

// ErrUnknownKey is returned by Open for a key id the keyring does not hold.
var ErrUnknownKey = errors.New("sealbox: unknown key")

// KeyID names a key: the first 16 hex digits of SHA-256 of its 32 bytes.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// ParseKey reads a key file's content: exactly 32 raw bytes, or the key as hex (64 digits) or
// base64 (standard or URL alphabet, padded or not), surrounding white space ignored.
func ParseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize {
		return append([]byte(nil), b...), nil
	}
	s := string(bytes.TrimSpace(b))
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("not a %d-byte key (want %d raw bytes, %d hex digits or base64)", KeySize, KeySize, 2*KeySize)
}

// Keyring is the current sealing key and every key used before. It is read-only after Open and
// safe for concurrent use.
type Keyring struct {
	id   string
	keys map[string]cipher.AEAD
}

// New returns a keyring of the given keys; the first seals. For tests and tools.
func New(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("sealbox: no key")
	}
	k := &Keyring{keys: map[string]cipher.AEAD{}}
	for i, key := range keys {
		a, err := aead(key)
		if err != nil {
			return nil, err
		}
		id := KeyID(key)
		k.keys[id] = a
		if i == 0 {
			k.id = id
		}
	}
	return k, nil
}

func aead(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealbox: key is %d bytes, want %d", len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// KeyID returns the id of the sealing key.
func (k *Keyring) KeyID() string { return k.id }

// Seal encrypts plain with the current key and a fresh random nonce; aad is authenticated, not
// encrypted, and must be given again to Open.
func (k *Keyring) Seal(plain, aad []byte) (keyID string, nonce, ct []byte) {
	a := k.keys[k.id]
	nonce = make([]byte, a.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand, Go 1.24+)
	return k.id, nonce, a.Seal(nil, nonce, plain, aad)
}

// Open decrypts what Seal returned, with any key of the keyring.
func (k *Keyring) Open(keyID string, nonce, ct, aad []byte) ([]byte, error) {
	a, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, keyID)
	}
	if len(nonce) != a.NonceSize() {
		return nil, fmt.Errorf("sealbox: nonce is %d bytes, want %d", len(nonce), a.NonceSize())
	}
	p, err := a.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, fmt.Errorf("sealbox: key %s: %w", keyID, err)
	}
	return p, nil
}

// Load opens the keyring in dir, generating the first key when dir holds none. keyFile, when
// set, holds the key that seals instead (see ParseKey); it is copied into dir (mode 0600) so what
// it sealed stays readable after the file is replaced. created reports a newly generated key.
func Load(dir, keyFile string) (k *Keyring, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("recording keys: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("recording keys: %w", err)
	}
	var cur []byte
	switch {
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, false, fmt.Errorf("recording encryption key: %w", err)
		}
		if cur, err = ParseKey(b); err != nil {
			return nil, false, fmt.Errorf("recording encryption key %s: %w", keyFile, err)
		}
		path := filepath.Join(dir, KeyID(cur)+keySuffix)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := writeFile(path, []byte(hex.EncodeToString(cur)+"\n"), 0o600); err != nil {
				return nil, false, err
			}
		}
	default:
		b, rerr := os.ReadFile(filepath.Join(dir, currentFile))
		switch {
		case errors.Is(rerr, fs.ErrNotExist):
			cur = make([]byte, KeySize)
			rand.Read(cur)
			id := KeyID(cur)
			if err := writeFile(filepath.Join(dir, id+keySuffix), []byte(hex.EncodeToString(cur)+"\n"), 0o600); err != nil {
				return nil, false, err
			}
			if err := writeFile(filepath.Join(dir, currentFile), []byte(id+"\n"), 0o600); err != nil {
				return nil, false, err
			}
			created = true
		case rerr != nil:
			return nil, false, fmt.Errorf("recording keys: %w", rerr)
		default:
			id := strings.TrimSpace(string(b))
			if cur, err = readKey(filepath.Join(dir, id+keySuffix)); err != nil {
				return nil, false, err
			}
			if got := KeyID(cur); got != id {
				return nil, false, fmt.Errorf("recording keys: %s holds key %s, not %s", id+keySuffix, got, id)
			}
		}
	}
	keys := [][]byte{cur}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, fmt.Errorf("recording keys: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, keySuffix) || strings.TrimSuffix(name, keySuffix) == KeyID(cur) {
			continue
		}
		key, err := readKey(filepath.Join(dir, name))
		if err != nil {
			return nil, false, err
		}
		keys = append(keys, key)
	}
	k, err = New(keys...)
	return k, created, err
}

func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recording key: %w", err)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("recording key %s: %w", path, err)
	}
	return k, nil
}

// writeFile writes b to path atomically (a temporary file renamed over it) with mode perm.
func writeFile(path string, b []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("recording keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("recording keys: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("recording keys: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("recording keys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("recording keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("recording keys: %w", err)
	}
	return nil
}
