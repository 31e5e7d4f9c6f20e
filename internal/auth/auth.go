package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// ErrBadCredentials is returned for an unknown user, a wrong password or an invalid token; the
// cases are deliberately not told apart to the caller.
var ErrBadCredentials = errors.New("invalid user name or password")

// TokenPrefix starts every gateway token, so that a token pasted where a password is expected is
// recognised (and so that secret scanners can find leaked ones).
const TokenPrefix = "alt_"

// User is a local user.
type User struct {
	Name         string
	PasswordHash string // bcrypt or argon2id (PHC string)
	Role         Role
	Groups       []string
	SSHKeys      []string // public keys in authorized_keys form, for the SSH listener (sshkeys.go)
}

// HashPassword returns the bcrypt hash stored for a password.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// Service authenticates local users and issues and checks gateway tokens.
type Service struct {
	TokenTTL time.Duration    // lifetime of issued tokens; 12h when zero
	Now      func() time.Time // time.Now when nil
	// Store keeps revocations, service accounts and OIDC sessions, shared by every gateway on
	// the same store. nil: they live in memory, as long as the process.
	Store KV

	mem  memKV
	saMu sync.Mutex // serialises changes of the service-account index

	key   []byte
	mu    sync.RWMutex
	users map[string]User
	// okCache remembers recently verified (user, password) pairs by a keyed hash, so that a
	// client opening many connections does not pay a bcrypt verification for each.
	okCache map[[32]byte]time.Time
}

// NewService returns a Service that signs tokens with key (at least 32 bytes).
func NewService(key []byte, users []User) (*Service, error) {
	if len(key) < 32 {
		return nil, errors.New("auth: token key must be at least 32 bytes")
	}
	s := &Service{key: key, users: map[string]User{}, okCache: map[[32]byte]time.Time{}}
	for _, u := range users {
		if err := s.AddUser(u); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// AddUser adds or replaces a local user.
func (s *Service) AddUser(u User) error {
	if u.Name == "" {
		return errors.New("auth: user name is required")
	}
	if strings.ContainsAny(u.Name, ":/ \t") {
		return fmt.Errorf("auth: user name %q may not contain ':', '/' or spaces", u.Name)
	}
	if err := checkHash(u.PasswordHash); err != nil {
		return fmt.Errorf("auth: user %q: password hash: %v", u.Name, err)
	}
	if u.Role == "" {
		u.Role = RoleUser
	}
	s.mu.Lock()
	s.users[u.Name] = u
	s.okCache = map[[32]byte]time.Time{}
	s.mu.Unlock()
	return nil
}

// HasUser reports whether a local user exists.
func (s *Service) HasUser(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.users[name]
	return ok
}

// LookupUser returns the identity a local user would have after logging in (name, role and
// groups, without a method), and false when there is no such local user. The policy API uses
// it to explain decisions for a user by name.
func (s *Service) LookupUser(name string) (*Identity, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[name]
	if !ok {
		return nil, false
	}
	return &Identity{User: u.Name, Groups: slices.Clone(u.Groups), Role: u.Role}, true
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) ttl() time.Duration {
	if s.TokenTTL > 0 {
		return s.TokenTTL
	}
	return 12 * time.Hour
}

// Login checks a local user's password.
func (s *Service) Login(ctx context.Context, user, password string) (*Identity, error) {
	s.mu.RLock()
	u, ok := s.users[user]
	s.mu.RUnlock()
	if !ok {
		// Spend the same time as a real check so that user names cannot be probed by timing:
		// a check against a hash of the algorithm and cost of a real user's (bcrypt and
		// argon2id, and their costs, differ by several times).
		passwordMatches(s.dummyFor(user), password)
		return nil, fail(ReasonUnknownUser, "no local user %q", user)
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(u.PasswordHash))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var k [32]byte
	mac.Sum(k[:0])
	now := s.now()
	s.mu.RLock()
	until, cached := s.okCache[k]
	s.mu.RUnlock()
	if !cached || now.After(until) {
		if !passwordMatches(u.PasswordHash, password) {
			return nil, fail(ReasonBadPassword, "wrong password for %q", user)
		}
		s.mu.Lock()
		if len(s.okCache) > 10000 {
			s.okCache = map[[32]byte]time.Time{}
		}
		s.okCache[k] = now.Add(time.Minute)
		s.mu.Unlock()
	}
	return &Identity{User: u.Name, Groups: u.Groups, Role: u.Role, Method: "password"}, nil
}

// dummyFor returns the hash Login checks the password of an unknown user name against: one of
// the algorithm and cost of a local user's hash, the user chosen by a keyed hash of the name
// (so a name always costs the same, and what it costs tells nothing of whether it exists).
func (s *Service) dummyFor(name string) string {
	s.mu.RLock()
	names := make([]string, 0, len(s.users))
	for n := range s.users {
		names = append(names, n)
	}
	slices.Sort(names)
	hash := ""
	if len(names) > 0 {
		mac := hmac.New(sha256.New, s.key)
		mac.Write([]byte("airlock-dummy\x00" + name))
		hash = s.users[names[binary.BigEndian.Uint64(mac.Sum(nil))%uint64(len(names))]].PasswordHash
	}
	s.mu.RUnlock()
	return dummyLike(hash)
}

// dummies holds, by algorithm and cost, a hash of a password nobody has (dummyLike).
var dummies sync.Map // string -> func() string

// dummyLike returns a hash of the algorithm and cost of hash (bcrypt's default cost for ""),
// made on first use, not at package init: a bcrypt hash costs about 100 ms of CPU (250 ms on a
// loaded machine), which every CLI command (kubectl runs `airlock kube-credential` for each
// command) would otherwise pay at start.
func dummyLike(hash string) string {
	const pw = "airlock-dummy"
	key, gen := "bcrypt", func() string {
		h, _ := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
		return string(h)
	}
	if a, err := parseArgon2id(hash); err == nil {
		key = fmt.Sprintf("argon2id m=%d t=%d p=%d salt=%d key=%d", a.memory, a.time, a.threads, len(a.salt), len(a.key))
		gen = func() string {
			salt := make([]byte, len(a.salt))
			rand.Read(salt)
			return formatArgon2id(a.time, a.memory, a.threads, salt, argon2.IDKey([]byte(pw), salt, a.time, a.memory, a.threads, uint32(len(a.key))))
		}
	} else if cost, err := bcrypt.Cost([]byte(hash)); err == nil {
		key = fmt.Sprintf("bcrypt %d", cost)
		gen = func() string {
			h, _ := bcrypt.GenerateFromPassword([]byte(pw), cost)
			return string(h)
		}
	}
	f, _ := dummies.LoadOrStore(key, sync.OnceValue(gen))
	return f.(func() string)()
}

type tokenClaims struct {
	V        int      `json:"v"`
	User     string   `json:"sub"`
	Groups   []string `json:"groups,omitempty"`
	Role     Role     `json:"role"`
	IssuedUs int64    `json:"iat_us"` // microseconds, so that a revocation and a new login in the same second are told apart
	Expiry   int64    `json:"exp"`
	Nonce    string   `json:"jti"`
	Via      string   `json:"via,omitempty"`   // how the holder logged in: password | oidc
	Provider string   `json:"idp,omitempty"`   // the OIDC provider, for via oidc
	Session  string   `json:"sid,omitempty"`   // the OIDC session that can refresh it
	Scope    []string `json:"scope,omitempty"` // targets, when restricted
}

// tokenVersion is the version of tokenClaims; tokens of another version are refused.
const tokenVersion = 2

func (c *tokenClaims) identity() *Identity {
	return &Identity{User: c.User, Groups: c.Groups, Role: c.Role, Method: "token", ExpiresAt: time.Unix(c.Expiry, 0),
		Via: c.Via, Provider: c.Provider, Session: c.Session, TokenID: c.Nonce, Scope: c.Scope,
		IssuedAt: time.UnixMicro(c.IssuedUs)}
}

// IssueToken returns a signed token for id, valid for TokenTTL.
func (s *Service) IssueToken(id *Identity) (token string, expires time.Time, err error) {
	return s.IssueTokenUntil(id, time.Time{})
}

// IssueTokenUntil returns a signed token for id, valid for TokenTTL but not after notAfter
// (when it is set).
func (s *Service) IssueTokenUntil(id *Identity, notAfter time.Time) (token string, expires time.Time, err error) {
	now := s.now()
	expires = now.Add(s.ttl()).Truncate(time.Second)
	if !notAfter.IsZero() && notAfter.Before(expires) {
		expires = notAfter.Truncate(time.Second)
	}
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return "", time.Time{}, err
	}
	via := id.Via
	if via == "" {
		via = id.Method
	}
	body, err := json.Marshal(tokenClaims{V: tokenVersion, User: id.User, Groups: id.Groups, Role: id.Role,
		IssuedUs: now.UnixMicro(), Expiry: expires.Unix(), Nonce: base64.RawURLEncoding.EncodeToString(nonce),
		Via: via, Provider: id.Provider, Session: id.Session, Scope: id.Scope})
	if err != nil {
		return "", time.Time{}, err
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	return TokenPrefix + payload + "." + s.sign(payload), expires, nil
}

func (s *Service) sign(payload string) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(TokenPrefix + payload))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// parseToken checks a token's signature and returns its claims, whatever its expiry.
func (s *Service) parseToken(token string) (*tokenClaims, error) {
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return nil, fail(ReasonMalformed, "not a gateway token")
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, fail(ReasonMalformed, "gateway token without a signature")
	}
	if !hmac.Equal([]byte(sig), []byte(s.sign(payload))) {
		return nil, fail(ReasonBadSignature, "gateway token signature does not match")
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, fail(ReasonMalformed, "gateway token payload: %v", err)
	}
	var c tokenClaims
	if err := json.Unmarshal(body, &c); err != nil || c.V != tokenVersion {
		return nil, fail(ReasonMalformed, "gateway token of an unknown version")
	}
	return &c, nil
}

// VerifyToken checks a token's signature, expiry and revocation.
func (s *Service) VerifyToken(token string) (*Identity, error) {
	return s.VerifyTokenContext(context.Background(), token)
}

// VerifyTokenContext is VerifyToken with a context for the revocation look-up.
func (s *Service) VerifyTokenContext(ctx context.Context, token string) (*Identity, error) {
	c, err := s.parseToken(token)
	if err != nil {
		return nil, err
	}
	exp := time.Unix(c.Expiry, 0)
	if !s.now().Before(exp) {
		return nil, fail(ReasonExpired, "token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if err := s.checkRevoked(ctx, c); err != nil {
		return nil, err
	}
	return c.identity(), nil
}

// VerifySecret checks a bearer secret for the API: a gateway token or a service account's API
// key.
func (s *Service) VerifySecret(ctx context.Context, secret string) (*Identity, error) {
	if strings.HasPrefix(secret, APIKeyPrefix) {
		return s.verifyAPIKey(ctx, secret)
	}
	return s.VerifyTokenContext(ctx, secret)
}

// Authenticate accepts a gateway token issued to user, an API key of the service account named
// user, or user's password: what a protocol client puts in its password field.
func (s *Service) Authenticate(ctx context.Context, user, secret string) (*Identity, error) {
	if strings.HasPrefix(secret, TokenPrefix) || strings.HasPrefix(secret, APIKeyPrefix) {
		id, err := s.VerifySecret(ctx, secret)
		if err != nil {
			return nil, err
		}
		if id.User != user {
			return nil, fail(ReasonWrongUser, "issued to %q, presented by %q", id.User, user)
		}
		return id, nil
	}
	return s.Login(ctx, user, secret)
}

// LocalUser is what may be shown of a local user: never the password hash.
type LocalUser struct {
	Name   string   `json:"name"`
	Role   Role     `json:"role"`
	Groups []string `json:"groups"`
	// SSHKeys are the SHA256 fingerprints of the user's SSH public keys.
	SSHKeys []string `json:"ssh_keys"`
}

// LocalUsers lists the local users (from the config file, and the bootstrap admin), by name.
func (s *Service) LocalUsers() []LocalUser {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]LocalUser, 0, len(s.users))
	for _, u := range s.users {
		lu := LocalUser{Name: u.Name, Role: u.Role, Groups: slices.Clone(u.Groups), SSHKeys: []string{}}
		if lu.Groups == nil {
			lu.Groups = []string{}
		}
		keys, _ := ParseSSHKeys(u.SSHKeys)
		for _, k := range keys {
			lu.SSHKeys = append(lu.SSHKeys, ssh.FingerprintSHA256(k))
		}
		out = append(out, lu)
	}
	slices.SortFunc(out, func(a, b LocalUser) int { return strings.Compare(a.Name, b.Name) })
	return out
}
