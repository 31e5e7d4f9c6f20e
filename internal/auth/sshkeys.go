package auth

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ParseSSHKeys parses public keys in authorized_keys form ("ssh-ed25519 AAAA... comment"), as
// users register them in ssh_keys. Options before the key type are not accepted: the gateway
// would not enforce them.
func ParseSSHKeys(keys []string) ([]ssh.PublicKey, error) {
	out := make([]ssh.PublicKey, 0, len(keys))
	for i, k := range keys {
		k = strings.TrimSpace(k)
		pk, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("ssh_keys[%d]: %w", i, err)
		}
		if len(opts) > 0 {
			return nil, fmt.Errorf("ssh_keys[%d]: authorized_keys options (%s) are not supported", i, strings.Join(opts, ","))
		}
		if len(bytes.TrimSpace(rest)) > 0 {
			return nil, fmt.Errorf("ssh_keys[%d]: one key per entry", i)
		}
		if _, isCert := pk.(*ssh.Certificate); isCert {
			return nil, fmt.Errorf("ssh_keys[%d]: a certificate is not a key to register", i)
		}
		out = append(out, pk)
	}
	return out, nil
}

// AuthenticatePublicKey returns the identity of local user user when key is one of the keys
// registered for them (ssh_keys). The caller has checked that the client holds the private key
// (the SSH signature); this only says whose key it is.
func (s *Service) AuthenticatePublicKey(ctx context.Context, user string, key ssh.PublicKey) (*Identity, error) {
	s.mu.RLock()
	u, ok := s.users[user]
	s.mu.RUnlock()
	if !ok || len(u.SSHKeys) == 0 {
		return nil, ErrBadCredentials
	}
	keys, err := ParseSSHKeys(u.SSHKeys)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", user, err)
	}
	want := key.Marshal()
	if !slices.ContainsFunc(keys, func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), want) }) {
		return nil, ErrBadCredentials
	}
	return &Identity{User: u.Name, Groups: slices.Clone(u.Groups), Role: u.Role, Method: "publickey"}, nil
}
