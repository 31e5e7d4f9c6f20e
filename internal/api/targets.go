package api

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/target"
)

func (s *Server) listTargets(w http.ResponseWriter, r *http.Request) error {
	list, err := s.Targets.List(r.Context())
	if err != nil {
		return fmt.Errorf("list targets: %w", err)
	}
	id := auth.FromContext(r.Context())
	out := make([]target.Target, 0, len(list))
	for _, t := range list {
		if id.InScope(t.Name) { // a service account lists only the targets of its scope
			out = append(out, t.Redacted())
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"targets": out})
}

func (s *Server) getTarget(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	t, err := s.Targets.Lookup(r.Context(), name)
	if errors.Is(err, target.ErrUnknown) || !auth.FromContext(r.Context()).InScope(name) {
		return errorf(http.StatusNotFound, "not_found", "no target %q", name)
	}
	if err != nil {
		return fmt.Errorf("look up target %s: %w", name, err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"target": t.Redacted()})
}

// targetRequest is what a client may set on a target; the gateway sets source and creation.
type targetRequest struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Address  string            `json:"address"`
	Database string            `json:"database"`
	Username string            `json:"username"`
	Password string            `json:"password"`
	TLS      string            `json:"tls"`
	CAFile   string            `json:"ca_file"`
	Labels   map[string]string `json:"labels"`
	// ssh: the gateway's key (a file on the gateway's host) and the target's pinned host key.
	PrivateKeyFile string `json:"private_key_file"`
	HostKey        string `json:"host_key"`
	// kubernetes: the gateway's bearer token (write-only) or a file holding it, its client
	// certificate, and whether to impersonate the user.
	Token          string `json:"token"`
	TokenFile      string `json:"token_file"`
	ClientCertFile string `json:"client_cert_file"`
	ClientKeyFile  string `json:"client_key_file"`
	Impersonate    bool   `json:"impersonate"`
	// RecordingMode: strict (default) or best-effort, as recording.mode in the config file.
	RecordingMode string `json:"recording_mode"`
	// RetentionDays: see target.Target; 0 keeps recordings forever.
	RetentionDays int `json:"retention_days"`
	// KeepPassword, with no password (or token) given, keeps the password (token) of the target
	// being replaced: credentials are write-only, so an edit form cannot send the old one back.
	KeepPassword bool `json:"keep_password"`
}

// createTarget registers a target (admins only). A name the config file defines cannot be
// taken over; a target registered through the API before is replaced (200 instead of 201).
//
// The change is audited before it is made (no change without an entry); if storing it then
// fails, a failed entry follows. A refusal for want of the admin role is audited too.
func (s *Server) createTarget(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	if id.Role != auth.RoleAdmin {
		s.audit(r, audit.Entry{Action: audit.ActionTargetPut, Actor: id.User, Outcome: audit.Denied,
			Detail: map[string]string{"role": string(id.Role)}})
		return errorf(http.StatusForbidden, "forbidden", "only admins may register targets (you are %s with role %s)", id.User, id.Role)
	}
	var req targetRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	t := target.Target{Name: req.Name, Type: req.Type, Address: req.Address, Database: req.Database,
		Username: req.Username, Password: req.Password, TLS: req.TLS, CAFile: req.CAFile, Labels: req.Labels,
		PrivateKeyFile: req.PrivateKeyFile, HostKey: strings.TrimSpace(req.HostKey), Token: req.Token, TokenFile: req.TokenFile,
		ClientCertFile: req.ClientCertFile, ClientKeyFile: req.ClientKeyFile, Impersonate: req.Impersonate,
		RecordingMode: req.RecordingMode, RetentionDays: req.RetentionDays, Source: "api", CreatedAt: time.Now().UTC().Truncate(time.Second), CreatedBy: id.User}
	if err := t.Validate(); err != nil {
		return errorf(http.StatusBadRequest, "invalid_target", "%v", err)
	}
	if err := checkTargetType(t, req.KeepPassword); err != nil {
		return errorf(http.StatusBadRequest, "invalid_target", "%v", err)
	}
	if _, ok := s.Targets.Static[t.Name]; ok {
		return errorf(http.StatusConflict, "exists", "target %q is defined in the config file and cannot be changed through the API", t.Name)
	}
	status := http.StatusCreated
	if old, err := s.Store.GetTarget(r.Context(), t.Name); err == nil {
		status = http.StatusOK
		if req.KeepPassword && req.Password == "" {
			t.Password = old.Password
		}
		if req.KeepPassword && req.Token == "" {
			t.Token = old.Token
		}
	} else if !errors.Is(err, target.ErrUnknown) {
		return fmt.Errorf("look up target %s: %w", t.Name, err)
	}
	// What changed, never the password.
	entry := audit.Entry{Action: audit.ActionTargetPut, Actor: id.User, Outcome: audit.OK, Subject: t.Name,
		Detail: map[string]string{"type": t.Type, "address": t.Address, "database": t.Database,
			"username": t.Username, "tls": t.TLS, "recording_mode": cmp.Or(t.RecordingMode, target.RecordingStrict), "retention_days": strconv.Itoa(t.RetentionDays), "replaced": strconv.FormatBool(status == http.StatusOK)}}
	for k, v := range map[string]string{"host_key": t.HostKey, "private_key_file": t.PrivateKeyFile, "ca_file": t.CAFile,
		"token_file": t.TokenFile, "client_cert_file": t.ClientCertFile} {
		if v != "" {
			entry.Detail[k] = v
		}
	}
	if t.Impersonate {
		entry.Detail["impersonate"] = "true"
	}
	if err := s.audit(r, entry); err != nil {
		return err
	}
	if err := s.Store.PutTarget(r.Context(), t); err != nil {
		entry.Outcome, entry.Detail["error"] = audit.Failed, err.Error()
		s.audit(r, entry)
		return fmt.Errorf("store target %s: %w", t.Name, err)
	}
	s.log().Info("api: target registered", "target", t.Name, "address", t.Address, "by", id.User, "replaced", status == http.StatusOK)
	return writeJSON(w, status, map[string]any{"target": t.Redacted()})
}

// checkTargetType checks what a target of each type registered through the API needs; a
// config-file target is checked the same way by its engine when a session starts.
func checkTargetType(t target.Target, keepSecret bool) error {
	switch t.Type {
	case "postgres", "mysql":
		if t.PrivateKeyFile != "" || t.HostKey != "" || t.Token != "" || t.TokenFile != "" || t.ClientCertFile != "" || t.Impersonate {
			return fmt.Errorf("target %q: ssh and kubernetes settings do not apply to a %s target", t.Name, t.Type)
		}
	case "ssh":
		if t.HostKey == "" {
			return fmt.Errorf("target %q: host_key is required: the gateway does not connect to an SSH server it cannot identify", t.Name)
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t.HostKey)); err != nil {
			return fmt.Errorf("target %q: host_key %q is not a public key in authorized_keys form (ssh-ed25519 AAAA...): %v", t.Name, t.HostKey, err)
		}
		if t.Username == "" {
			return fmt.Errorf("target %q: username (the login on the target) is required", t.Name)
		}
		if t.Password == "" && t.PrivateKeyFile == "" && !keepSecret {
			return fmt.Errorf("target %q: the gateway needs a credential for it: private_key_file or password", t.Name)
		}
	case "kubernetes":
		u, err := url.Parse(t.Address)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("target %q: address must be the API server's https:// URL, not %q", t.Name, t.Address)
		}
	default:
		return fmt.Errorf("target %q: type %q is not supported (supported: postgres, mysql, ssh, kubernetes)", t.Name, t.Type)
	}
	return nil
}
