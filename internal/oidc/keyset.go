package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// errUnknownKey is returned when no published key has the token's kid, even after a refresh.
var errUnknownKey = errors.New("no key of the provider has this kid")

// keySet is a provider's JWKS, cached. An unknown kid (the provider rotated its keys) makes it
// fetch the set again, but at most once per minInterval, so that tokens with made-up kids cannot
// turn the gateway into a load generator against the provider.
type keySet struct {
	url         string
	client      *http.Client
	algs        []jose.SignatureAlgorithm
	minInterval time.Duration
	now         func() time.Time

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // zero: never
	fetches int       // for tests
}

func (k *keySet) lookup(kid string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range k.keys {
		if kid == "" || key.KeyID == kid {
			out = append(out, key)
		}
	}
	return out
}

// keysFor returns the keys that may have signed a token with kid, fetching the set when it is
// unknown and the last fetch is old enough.
func (k *keySet) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if keys := k.lookup(kid); len(keys) > 0 {
		return keys, nil
	}
	if !k.fetched.IsZero() && k.now().Sub(k.fetched) < k.minInterval {
		return nil, errUnknownKey
	}
	if err := k.fetch(ctx); err != nil {
		return nil, err
	}
	if keys := k.lookup(kid); len(keys) > 0 {
		return keys, nil
	}
	return nil, errUnknownKey
}

func (k *keySet) fetch(ctx context.Context) error {
	k.fetched = k.now()
	k.fetches++
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	res, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch JWKS %s: %w", k.url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil || res.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch JWKS %s: status %d: %v", k.url, res.StatusCode, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("fetch JWKS %s: %w", k.url, err)
	}
	k.keys = set.Keys
	return nil
}

// VerifySignature implements go-oidc's KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	keys, err := k.keysFor(ctx, jws.Signatures[0].Header.KeyID)
	if err != nil {
		return nil, err
	}
	for _, key := range keys {
		if payload, err := jws.Verify(key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("signature does not verify with the provider's keys")
}
