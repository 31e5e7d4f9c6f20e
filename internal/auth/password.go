package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// argon2id parameters of new hashes: RFC 9106's second recommended option, scaled to OWASP's
// minimum memory (19 MiB, 2 passes, 1 lane), so that a login costs tens of milliseconds.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPasswordArgon2id returns an argon2id hash of password in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash), accepted wherever a bcrypt hash is.
func HashPasswordArgon2id(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return formatArgon2id(argonTime, argonMemory, argonThreads, salt, key), nil
}

// formatArgon2id is the PHC string of an argon2id hash.
func formatArgon2id(time, memory uint32, threads uint8, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memory, time, threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

type argonHash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

func parseArgon2id(h string) (argonHash, error) {
	var a argonHash
	parts := strings.Split(h, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[1] != "argon2id" {
		return a, errors.New("not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return a, fmt.Errorf("argon2id version %q not supported", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &a.memory, &a.time, &a.threads); err != nil {
		return a, fmt.Errorf("argon2id parameters %q: %w", parts[3], err)
	}
	if a.time == 0 || a.threads == 0 || a.memory < 8*uint32(a.threads) || a.memory > 4<<20 {
		return a, fmt.Errorf("argon2id parameters %q out of range", parts[3])
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(a.salt) < 8 {
		return a, errors.New("argon2id salt is not valid base64 of 8+ bytes")
	}
	if a.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(a.key) < 16 {
		return a, errors.New("argon2id hash is not valid base64 of 16+ bytes")
	}
	return a, nil
}

// checkHash reports whether hash is a password hash Login can check: bcrypt or argon2id.
func checkHash(hash string) error {
	if strings.HasPrefix(hash, "$argon2id$") {
		_, err := parseArgon2id(hash)
		return err
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return errors.New("not a bcrypt or argon2id hash")
	}
	return nil
}

// passwordMatches compares password with a bcrypt or argon2id hash.
func passwordMatches(hash, password string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		a, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		key := argon2.IDKey([]byte(password), a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
		return subtle.ConstantTimeCompare(key, a.key) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}
