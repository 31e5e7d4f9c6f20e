package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
)

// listRequests lists the statements waiting for approval (admins and auditors).
func (s *Server) listRequests(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	if !id.Role.CanReadAll() {
		return errorf(http.StatusForbidden, "forbidden", "only admins and auditors may list approval requests (you are %s with role %s)", id.User, id.Role)
	}
	list := []approval.Pending{}
	if s.Approvals != nil {
		list = s.Approvals.List()
	}
	return writeJSON(w, http.StatusOK, map[string]any{"requests": list})
}

// decideRequest is the optional body of approve and deny.
type decideRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) approveRequest(w http.ResponseWriter, r *http.Request) error {
	return s.decide(w, r, true)
}

func (s *Server) denyRequest(w http.ResponseWriter, r *http.Request) error {
	return s.decide(w, r, false)
}

// decide approves or denies a request (admins only; never the requester). The broker audits
// the decision and its refusals; a refusal for want of the admin role is audited here.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, approve bool) error {
	id := auth.FromContext(r.Context())
	reqID := r.PathValue("id")
	if id.Role != auth.RoleAdmin {
		s.audit(r, audit.Entry{Action: approval.ActionDecide, Actor: id.User, Outcome: audit.Denied, Subject: reqID,
			Detail: map[string]string{"role": string(id.Role)}})
		return errorf(http.StatusForbidden, "forbidden", "only admins may decide approval requests (you are %s with role %s)", id.User, id.Role)
	}
	var req decideRequest
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "read body: %v", err)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "invalid JSON body: %v", err)
		}
	}
	if s.Approvals == nil {
		return errorf(http.StatusNotFound, "not_found", "no approval request %q", reqID)
	}
	err = s.Approvals.Decide(reqID, approve, id.User, req.Reason)
	switch {
	case errors.Is(err, approval.ErrUnknown):
		return errorf(http.StatusNotFound, "not_found", "no approval request %q", reqID)
	case errors.Is(err, approval.ErrDecided):
		return errorf(http.StatusConflict, "decided", "approval request %q is already decided, timed out or withdrawn", reqID)
	case errors.Is(err, approval.ErrOwnRequest):
		return errorf(http.StatusForbidden, "own_request", "%s cannot decide their own approval request", id.User)
	case err != nil:
		return fmt.Errorf("decide approval request %s: %w", reqID, err)
	}
	decision := "denied"
	if approve {
		decision = "approved"
	}
	s.log().Info("api: approval request decided", "id", reqID, "decision", decision, "by", id.User)
	return writeJSON(w, http.StatusOK, map[string]any{"id": reqID, "approved": approve, "by": id.User, "reason": req.Reason})
}
