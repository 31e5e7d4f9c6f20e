package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/airlock-gw/airlock/internal/agent"
	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
)

// Agents is what the API needs of the gateway's agent hub (internal/agent.Hub).
type Agents interface {
	List(ctx context.Context) ([]agent.Info, error)
	Create(ctx context.Context, name, by string) (agent.Info, string, error)
	Revoke(ctx context.Context, name, by string) (agent.Info, error)
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) error {
	list := []agent.Info{}
	if s.Agents != nil {
		var err error
		if list, err = s.Agents.List(r.Context()); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"agents": list, "listening": s.Agents != nil})
}

// createAgent registers an agent and answers with its join token, the only time it is shown.
// It is audited once made; if the audit log cannot be written, the agent is revoked again.
func (s *Server) createAgent(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if !agent.ValidName(req.Name) {
		return errorf(http.StatusBadRequest, "bad_request", "invalid agent name %q: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", req.Name)
	}
	if s.Agents == nil {
		return errorf(http.StatusConflict, "agents_off", "this gateway has no agent listener: set listen.agents in its config (docs/agent.md)")
	}
	info, token, err := s.Agents.Create(r.Context(), req.Name, id.User)
	switch {
	case errors.Is(err, agent.ErrExists):
		return errorf(http.StatusConflict, "conflict", "%v", err)
	case errors.Is(err, agent.ErrInvalid):
		return errorf(http.StatusBadRequest, "bad_request", "%v", err)
	case errors.Is(err, agent.ErrNoAddress):
		return errorf(http.StatusConflict, "agents_no_address", "%v", err)
	case err != nil:
		return err
	}
	if err := s.audit(r, audit.Entry{Action: audit.ActionAgentCreate, Actor: id.User, Outcome: audit.OK, Subject: info.Name}); err != nil {
		if _, rerr := s.Agents.Revoke(r.Context(), info.Name, "airlock (audit log unavailable)"); rerr != nil {
			return fmt.Errorf("agent %s created unaudited and could not be revoked: %w", info.Name, rerr)
		}
		return err
	}
	return writeJSON(w, http.StatusCreated, map[string]any{"agent": info, "token": token})
}

// revokeAgent refuses the agent's token from now on and drops its tunnels; it is audited
// before it is made.
func (s *Server) revokeAgent(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	name := r.PathValue("name")
	if s.Agents == nil {
		return errorf(http.StatusNotFound, "not_found", "no agent %q (this gateway has no agent listener)", name)
	}
	if err := s.audit(r, audit.Entry{Action: audit.ActionAgentRevoke, Actor: id.User, Outcome: audit.OK, Subject: name}); err != nil {
		return err
	}
	info, err := s.Agents.Revoke(r.Context(), name, id.User)
	if errors.Is(err, agent.ErrUnknown) {
		s.audit(r, audit.Entry{Action: audit.ActionAgentRevoke, Actor: id.User, Outcome: audit.Failed, Subject: name,
			Detail: map[string]string{"error": "no such agent"}})
		return errorf(http.StatusNotFound, "not_found", "no agent %q", name)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"agent": info})
}
