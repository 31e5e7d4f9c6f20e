package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// ErrSealed is returned by Open for a value that was not sealed by this gateway for the same
// purpose, or was changed.
var ErrSealed = errors.New("auth: sealed value is not ours or was changed")

// Seal encrypts and authenticates b for the gateway itself, for a value that travels through a
// client and must come back unread and unchanged (the state of a browser's OIDC sign-in, kept in
// a cookie). The key is derived from the token key and purpose, so every gateway that shares the
// token key opens it, and a value sealed for one purpose does not open for another.
func (s *Service) Seal(purpose string, b []byte) string {
	aead := s.aead(purpose)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, b, []byte(purpose)))
}

// Open returns what Seal sealed for purpose.
func (s *Service) Open(purpose, sealed string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	aead := s.aead(purpose)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrSealed
	}
	b, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(purpose))
	if err != nil {
		return nil, ErrSealed
	}
	return b, nil
}

func (s *Service) aead(purpose string) cipher.AEAD {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte("airlock-seal\x00" + purpose))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}
