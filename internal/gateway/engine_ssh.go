package gateway

import (
	"context"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/auth"
	_ "github.com/airlock-gw/airlock/internal/engine/ssh" // registers the ssh engine
)

// AuthenticatePublicKey lets the ssh engine log in local users by their registered ssh_keys
// (the engine looks for this method on its Authenticator).
func (a authenticator) AuthenticatePublicKey(ctx context.Context, user string, key ssh.PublicKey) (*auth.Identity, error) {
	return a.svc.AuthenticatePublicKey(ctx, user, key)
}
