package api

import (
	"net/http"

	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/verify"
)

// SigningKeys is what the API needs of the gateway's checkpoint keys (signing.Keyring).
type SigningKeys interface {
	Keys() []signing.PublicKey
}

// publicKeys returns the trusted verification keys by id; none when the server has no keys.
func (s *Server) publicKeys() []signing.PublicKey {
	if s.SigningKeys == nil {
		return nil
	}
	return s.SigningKeys.Keys()
}

// signingKeys lists every public key that ever signed a checkpoint. Public keys are public: the
// route answers without authentication, like a JWKS endpoint, so verifiers can fetch them.
func (s *Server) signingKeys(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]any{"keys": verify.KeysJSON(s.publicKeys())})
}
