package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
)

type serviceAccountView struct {
	auth.ServiceAccount
	Active bool `json:"active"`
}

// listUsers lists the local users (admin only): names, roles, groups and SSH key fingerprints,
// never a password hash. Users of OIDC providers are not kept by the gateway, so not listed.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]any{"users": s.Auth.LocalUsers()})
}

func (s *Server) listServiceAccounts(w http.ResponseWriter, r *http.Request) error {
	list, err := s.Auth.ServiceAccounts(r.Context())
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]serviceAccountView, 0, len(list))
	for _, sa := range list {
		out = append(out, serviceAccountView{sa, sa.Active(now)})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"service_accounts": out})
}

type createServiceAccountRequest struct {
	Name    string   `json:"name"`
	Role    string   `json:"role"`
	Groups  []string `json:"groups"`
	Targets []string `json:"targets"`
	// ExpiresIn is a Go duration ("720h"); ExpiresAt an RFC 3339 time. At most one; neither
	// means the key never expires.
	ExpiresIn string    `json:"expires_in"`
	ExpiresAt time.Time `json:"expires_at"`
}

// createServiceAccount creates an account and answers with its API key, the only time it is
// shown. It is audited once made (with the key's id, never the key); if the audit log cannot be
// written, the account is revoked again and the request fails.
func (s *Server) createServiceAccount(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	var req createServiceAccountRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	exp := req.ExpiresAt
	if req.ExpiresIn != "" {
		if !exp.IsZero() {
			return errorf(http.StatusBadRequest, "bad_request", "set at most one of expires_in and expires_at")
		}
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return errorf(http.StatusBadRequest, "bad_request", "expires_in must be a positive duration like 720h")
		}
		exp = time.Now().Add(d)
	}
	key, sa, err := s.Auth.CreateServiceAccount(r.Context(), auth.ServiceAccount{Name: req.Name, Role: role, Groups: req.Groups,
		Targets: req.Targets, ExpiresAt: exp, CreatedBy: id.User})
	switch {
	case errors.Is(err, auth.ErrServiceAccountExists):
		return errorf(http.StatusConflict, "conflict", "%v", err)
	case errors.Is(err, auth.ErrInvalidServiceAccount):
		return errorf(http.StatusBadRequest, "bad_request", "%v", err)
	case err != nil:
		return err
	}
	detail := map[string]string{"key_id": sa.KeyID, "role": string(sa.Role), "targets": strings.Join(sa.Targets, ",")}
	if !sa.ExpiresAt.IsZero() {
		detail["expires_at"] = sa.ExpiresAt.Format(time.RFC3339)
	}
	if err := s.audit(r, audit.Entry{Action: audit.ActionServiceAccountCreate, Actor: id.User, Outcome: audit.OK, Subject: sa.Name, Detail: detail}); err != nil {
		if _, rerr := s.Auth.RevokeServiceAccount(r.Context(), sa.Name, "airlock (audit log unavailable)"); rerr != nil {
			return fmt.Errorf("service account %s created unaudited and could not be revoked: %w", sa.Name, rerr)
		}
		return err
	}
	sa.KeyHash = ""
	return writeJSON(w, http.StatusCreated, map[string]any{"service_account": serviceAccountView{sa, true}, "api_key": key})
}

// revokeServiceAccount refuses the account's key from now on; it is audited before it is made.
func (s *Server) revokeServiceAccount(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	name := r.PathValue("name")
	if err := s.audit(r, audit.Entry{Action: audit.ActionServiceAccountRevoke, Actor: id.User, Outcome: audit.OK, Subject: name}); err != nil {
		return err
	}
	sa, err := s.Auth.RevokeServiceAccount(r.Context(), name, id.User)
	if errors.Is(err, auth.ErrNoServiceAccount) {
		s.audit(r, audit.Entry{Action: audit.ActionServiceAccountRevoke, Actor: id.User, Outcome: audit.Failed, Subject: name,
			Detail: map[string]string{"error": "no such service account"}})
		return errorf(http.StatusNotFound, "not_found", "no service account %q", name)
	}
	if err != nil {
		return err
	}
	sa.KeyHash = ""
	return writeJSON(w, http.StatusOK, map[string]any{"service_account": serviceAccountView{sa, false}})
}
