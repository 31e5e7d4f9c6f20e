package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// PolicyKey is the KV key of the policies managed through the API: a JSON list of
// config.Policy, evaluated after the config file's.
const PolicyKey = "policy/rules"

// actionPolicyPut audits a replacement of the API-managed policies. Like the audit package's
// actions it is part of the stored format: never rename it.
const actionPolicyPut = "policy.put"

// StoredPolicies returns the policies managed through the API (none when never set).
func StoredPolicies(ctx context.Context, kv store.KV) ([]config.Policy, error) {
	b, err := kv.GetKV(ctx, PolicyKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stored policies: %w", err)
	}
	var rules []config.Policy
	if err := json.Unmarshal(b, &rules); err != nil {
		return nil, fmt.Errorf("decode stored policies (%s): %w", PolicyKey, err)
	}
	return rules, nil
}

// policyView is a rule as the API shows it: its fields and where it comes from.
type policyView struct {
	config.Policy
	Source string `json:"source"` // config | api
}

// apiPolicies returns the rules managed through the API: the engine evaluates the config
// file's first, then these.
func (s *Server) apiPolicies() []config.Policy {
	rules := s.Policy.Rules()
	if len(rules) < len(s.ConfigPolicies) {
		return nil
	}
	return rules[len(s.ConfigPolicies):]
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	if !id.Role.CanReadAll() {
		return errorf(http.StatusForbidden, "forbidden", "only admins and auditors may read policies (you are %s with role %s)", id.User, id.Role)
	}
	out := []policyView{}
	for _, p := range s.ConfigPolicies {
		out = append(out, policyView{Policy: p, Source: "config"})
	}
	for _, p := range s.apiPolicies() {
		out = append(out, policyView{Policy: p, Source: "api"})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"policies": out})
}

// putPolicies replaces the API-managed policies (admins only). The whole set, config rules
// included, is validated first; the change is audited before it is stored and takes effect,
// and a failure to store it is audited too.
func (s *Server) putPolicies(w http.ResponseWriter, r *http.Request) error {
	id := auth.FromContext(r.Context())
	if id.Role != auth.RoleAdmin {
		s.audit(r, audit.Entry{Action: actionPolicyPut, Actor: id.User, Outcome: audit.Denied,
			Detail: map[string]string{"role": string(id.Role)}})
		return errorf(http.StatusForbidden, "forbidden", "only admins may change policies (you are %s with role %s)", id.User, id.Role)
	}
	var req struct {
		Policies []config.Policy `json:"policies"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Policies == nil {
		return errorf(http.StatusBadRequest, "bad_request", `"policies" is required (an empty list removes every API-managed policy)`)
	}
	for _, p := range req.Policies {
		if slices.ContainsFunc(s.ConfigPolicies, func(c config.Policy) bool { return c.Name == p.Name }) {
			return errorf(http.StatusBadRequest, "invalid_policy", "policy %q is defined in the config file and cannot be changed through the API", p.Name)
		}
	}
	all := append(slices.Clone(s.ConfigPolicies), req.Policies...)
	if err := policy.Validate(all); err != nil {
		return errorf(http.StatusBadRequest, "invalid_policy", "%v", err)
	}

	// One change at a time, so that the audited difference is the one applied.
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	added, removed, changed := diffPolicies(s.apiPolicies(), req.Policies)
	entry := audit.Entry{Action: actionPolicyPut, Actor: id.User, Outcome: audit.OK,
		Detail: map[string]string{"added": strings.Join(added, ","), "removed": strings.Join(removed, ","),
			"changed": strings.Join(changed, ","), "count": fmt.Sprint(len(req.Policies))}}
	if err := s.audit(r, entry); err != nil {
		return err
	}
	b, err := json.Marshal(req.Policies)
	if err != nil {
		return fmt.Errorf("encode policies: %w", err)
	}
	if err := s.Store.PutKV(r.Context(), PolicyKey, b); err != nil {
		entry.Outcome, entry.Detail["error"] = audit.Failed, err.Error()
		s.audit(r, entry)
		return fmt.Errorf("store policies: %w", err)
	}
	if err := s.Policy.SetRules(all); err != nil { // validated above; the masking check could differ only by a race
		entry.Outcome, entry.Detail["error"] = audit.Failed, err.Error()
		s.audit(r, entry)
		return fmt.Errorf("install policies: %w", err)
	}
	s.log().Info("api: policies replaced", "by", id.User, "added", added, "removed", removed, "changed", changed)
	out := []policyView{}
	for _, p := range req.Policies {
		out = append(out, policyView{Policy: p, Source: "api"})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"policies": out})
}

// diffPolicies names the rules added, removed and changed going from old to new.
func diffPolicies(old, new []config.Policy) (added, removed, changed []string) {
	byName := map[string]config.Policy{}
	for _, p := range old {
		byName[p.Name] = p
	}
	for _, p := range new {
		o, ok := byName[p.Name]
		switch {
		case !ok:
			added = append(added, p.Name)
		case !reflect.DeepEqual(o, p):
			changed = append(changed, p.Name)
		}
		delete(byName, p.Name)
	}
	for _, p := range old {
		if _, ok := byName[p.Name]; ok {
			removed = append(removed, p.Name)
		}
	}
	return added, removed, changed
}

// explainPolicy answers what the policy engine decides for a user and a target, and why. A
// local user's role and groups come from the gateway; for anyone else (an identity from
// elsewhere, a what-if) they come from the query.
func (s *Server) explainPolicy(w http.ResponseWriter, r *http.Request) error {
	caller := auth.FromContext(r.Context())
	if !caller.Role.CanReadAll() {
		return errorf(http.StatusForbidden, "forbidden", "only admins and auditors may explain policies (you are %s with role %s)", caller.User, caller.Role)
	}
	q := r.URL.Query()
	user, tname := q.Get("user"), q.Get("target")
	if user == "" || tname == "" {
		return errorf(http.StatusBadRequest, "bad_request", "user and target are required (?user=NAME&target=NAME)")
	}
	id, local := s.Auth.LookupUser(user)
	if local {
		if q.Has("groups") || q.Has("role") {
			return errorf(http.StatusBadRequest, "bad_request", "%s is a local user: its groups and role come from the gateway, leave out groups and role", user)
		}
	} else {
		role, err := auth.ParseRole(q.Get("role"))
		if err != nil {
			return errorf(http.StatusBadRequest, "bad_request", "role: %v", err)
		}
		id = &auth.Identity{User: user, Role: role}
		for _, g := range strings.Split(q.Get("groups"), ",") {
			if g = strings.TrimSpace(g); g != "" {
				id.Groups = append(id.Groups, g)
			}
		}
	}
	t, err := s.Targets.Lookup(r.Context(), tname)
	if errors.Is(err, target.ErrUnknown) {
		return errorf(http.StatusNotFound, "not_found", "no target %q", tname)
	}
	if err != nil {
		return fmt.Errorf("look up target %s: %w", tname, err)
	}
	d := s.Policy.Decide(id, t)
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	return writeJSON(w, http.StatusOK, struct {
		policy.Decision
		Text     string         `json:"text"`
		Identity map[string]any `json:"identity"`
	}{d, d.Explain(), map[string]any{"user": id.User, "role": id.Role, "groups": groups, "local": local}})
}
