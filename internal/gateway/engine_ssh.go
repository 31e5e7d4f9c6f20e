package gateway

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/engine"
	enginessh "github.com/airlock-gw/airlock/internal/engine/ssh" // registers the ssh engine
)

// AuthenticatePublicKey lets the ssh engine log in local users by their registered ssh_keys
// (the engine looks for this method on its Authenticator).
func (a authenticator) AuthenticatePublicKey(ctx context.Context, user string, key ssh.PublicKey) (*auth.Identity, error) {
	return a.svc.AuthenticatePublicKey(ctx, user, key)
}

// CheckUserRevoked lets the ssh engine refuse SSH certificates issued before an admin revoked
// the user's tokens.
func (a authenticator) CheckUserRevoked(ctx context.Context, user string, issued time.Time) error {
	return a.svc.CheckUserRevoked(ctx, user, issued)
}

// sshCA is the ssh engine's user CA, for the API's certificate route; nil when the SSH listener
// is off.
func sshCA(e engine.Engine) api.SSHSigner {
	if se, ok := e.(*enginessh.Engine); ok && se.UserCA() != nil {
		return se.UserCA()
	}
	return nil
}

// CheckCertSubject lets the ssh engine refuse the certificate of a local user no longer in the
// configuration, or of a service account revoked or expired since it was issued.
func (a authenticator) CheckCertSubject(ctx context.Context, id *auth.Identity, via string) error {
	if id.Service {
		sas, err := a.svc.ServiceAccounts(ctx)
		if err != nil {
			return err
		}
		for _, sa := range sas {
			if sa.Name == id.User {
				if !sa.Active(time.Now()) {
					return fmt.Errorf("service account %s is revoked or expired", id.User)
				}
				return nil
			}
		}
		return fmt.Errorf("no service account %s", id.User)
	}
	if via == "password" && !a.svc.HasUser(id.User) {
		return fmt.Errorf("no local user %s", id.User)
	}
	return nil
}
