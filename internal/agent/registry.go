package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/store"
)

// Keys in the KV store.
const (
	kvNames = "agents/names"  // JSON list of registered names
	kvAgent = "agents/agent/" // + name: the Record (JSON)
	kvSeen  = "agents/seen/"  // + name: the Seen (JSON)
)

// Record is a registered agent, as stored.
type Record struct {
	Name       string    `json:"name"`
	SecretHash string    `json:"secret_hash"` // hex SHA-256 of the token's secret
	CreatedAt  time.Time `json:"created_at"`
	CreatedBy  string    `json:"created_by"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	RevokedBy  string    `json:"revoked_by,omitempty"`
}

// Seen is what the gateway last knew of an agent's tunnel, written when a tunnel is accepted
// and when it closes, so that the status outlives the gateway process. It has a key of its own
// rather than fields of the Record: gateways sharing a store write it on every connection, and
// a read-modify-write of the Record could then undo a revocation made by another gateway.
type Seen struct {
	SecretHash string    `json:"secret_hash"` // of the registration it belongs to
	At         time.Time `json:"at"`
	Version    string    `json:"version,omitempty"`
	Targets    []string  `json:"targets,omitempty"`
}

// Errors of the registry.
var (
	ErrExists  = errors.New("an active agent with this name already exists")
	ErrUnknown = errors.New("no such agent")
	ErrInvalid = errors.New("invalid agent name")
)

// Registry keeps the registered agents in the store's KV.
type Registry struct {
	KV  store.KV
	Now func() time.Time // default time.Now

	mu sync.Mutex // serialises changes
}

func (r *Registry) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Create registers name and returns the secret of its token, which is not kept: only its hash
// is. A revoked agent's name may be registered again; its old token stays refused.
func (r *Registry) Create(ctx context.Context, name, by string) (string, Record, error) {
	if !ValidName(name) {
		return "", Record{}, fmt.Errorf("%w %q: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, err := r.get(ctx, name); err == nil && old.RevokedAt.IsZero() {
		return "", Record{}, fmt.Errorf("%w: %q (revoke it first)", ErrExists, name)
	} else if err != nil && !errors.Is(err, ErrUnknown) {
		return "", Record{}, err
	}
	b := make([]byte, 32)
	rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	rec := Record{Name: name, SecretHash: hashSecret(secret), CreatedAt: r.now().UTC(), CreatedBy: by}
	if err := r.put(ctx, rec); err != nil {
		return "", Record{}, err
	}
	if err := store.AddName(ctx, r.KV, kvNames, name); err != nil {
		return "", Record{}, err
	}
	return secret, rec, nil
}

// Revoke refuses name's token from now on.
func (r *Registry) Revoke(ctx context.Context, name, by string) (Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, err := r.get(ctx, name)
	if err != nil {
		return Record{}, err
	}
	if rec.RevokedAt.IsZero() {
		rec.RevokedAt, rec.RevokedBy = r.now().UTC(), by
		if err := r.put(ctx, rec); err != nil {
			return Record{}, err
		}
	}
	return rec, nil
}

// Verify checks an agent's name and secret; the error's code (unknown, revoked, bad_secret) is
// what the agent is told.
func (r *Registry) Verify(ctx context.Context, name, secret string) (Record, string, error) {
	rec, err := r.get(ctx, name)
	if errors.Is(err, ErrUnknown) {
		return Record{}, "unknown", fmt.Errorf("no agent %q is registered at this gateway (`airlock agents create %s`)", name, name)
	}
	if err != nil {
		return Record{}, "", err
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(rec.SecretHash)) != 1 {
		return Record{}, "bad_secret", fmt.Errorf("the token of agent %q is not the one the gateway issued last", name)
	}
	if !rec.RevokedAt.IsZero() {
		return Record{}, "revoked", fmt.Errorf("agent %q was revoked by %s at %s", name, rec.RevokedBy, rec.RevokedAt.Format(time.RFC3339))
	}
	return rec, "", nil
}

// List returns every registered agent, revoked ones included, sorted by name.
func (r *Registry) List(ctx context.Context) ([]Record, error) {
	names, err := r.names(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(names))
	for _, n := range names {
		rec, err := r.get(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// SetSeen stores what the gateway knows of name's tunnel now.
func (r *Registry) SetSeen(ctx context.Context, name string, s Seen) error {
	return store.PutJSON(ctx, r.KV, kvSeen+name, s)
}

// GetSeen returns what the gateway last stored of rec's tunnels; ok is false when that
// registration never connected (a Seen of an earlier registration of the name does not count).
func (r *Registry) GetSeen(ctx context.Context, rec Record) (Seen, bool, error) {
	s, err := store.GetJSON[Seen](ctx, r.KV, kvSeen+rec.Name)
	if errors.Is(err, store.ErrNotFound) {
		return Seen{}, false, nil
	}
	if err != nil {
		return Seen{}, false, err
	}
	return s, s.SecretHash == rec.SecretHash, nil
}

func (r *Registry) names(ctx context.Context) ([]string, error) {
	names, err := store.GetJSON[[]string](ctx, r.KV, kvNames)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return names, err
}

func (r *Registry) get(ctx context.Context, name string) (Record, error) {
	rec, err := store.GetJSON[Record](ctx, r.KV, kvAgent+name)
	if errors.Is(err, store.ErrNotFound) {
		return Record{}, fmt.Errorf("%w %q", ErrUnknown, name)
	}
	return rec, err
}

func (r *Registry) put(ctx context.Context, rec Record) error {
	return store.PutJSON(ctx, r.KV, kvAgent+rec.Name, rec)
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
