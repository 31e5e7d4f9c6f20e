package gateway

import (
	"context"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/oidc"
)

// authenticator is what the engines check a client's secret with: an IdP token (when OIDC
// providers are configured and the secret is shaped like a JWT), else whatever auth.Service
// accepts (gateway token, API key, local password).
type authenticator struct {
	svc  *auth.Service
	oidc *oidc.Set
}

func (a authenticator) Authenticate(ctx context.Context, user, secret string) (*auth.Identity, error) {
	if oidc.LooksLikeJWT(secret) && len(a.oidc.All()) > 0 {
		id, err := a.oidc.Authenticate(ctx, secret, a.svc.CheckUserRevoked)
		if err != nil {
			return nil, err
		}
		if id.User != user {
			return nil, &auth.Failure{Reason: auth.ReasonWrongUser, Detail: "the IdP token names " + id.User}
		}
		return id, nil
	}
	return a.svc.Authenticate(ctx, user, secret)
}
