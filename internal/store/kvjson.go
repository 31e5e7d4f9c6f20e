package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// GetJSON reads the value under key and decodes it into a T; ErrNotFound (wrapped) when absent.
// Accounts, agents and sessions of the identity provider are kept in the KV this way.
func GetJSON[T any](ctx context.Context, kv KV, key string) (T, error) {
	var v T
	b, err := kv.GetKV(ctx, key)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("stored %s: %w", key, err)
	}
	return v, nil
}

// PutJSON stores v encoded as JSON under key.
func PutJSON(ctx context.Context, kv KV, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return kv.PutKV(ctx, key, b)
}

// AddName adds name to the sorted JSON list of names under key (the index of a kind of record
// that GetKV cannot list), unless it is there already.
func AddName(ctx context.Context, kv KV, key, name string) error {
	names, err := GetJSON[[]string](ctx, kv, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if slices.Contains(names, name) {
		return nil
	}
	names = append(names, name)
	slices.Sort(names)
	return PutJSON(ctx, kv, key, names)
}
