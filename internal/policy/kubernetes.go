package policy

import (
	"fmt"
	"path"
	"slices"

	"github.com/airlock-gw/airlock/internal/config"
)

// KubeRequest is what a Kubernetes rule matches: one API request as the kubernetes engine
// parsed it.
type KubeRequest struct {
	Verb        string // get, list, watch, create, update, patch, delete, deletecollection
	Group       string // API group, "" for the core group
	Resource    string // pods, namespaces, ... ("" for a non-resource URL)
	Subresource string // exec, log, status, ...
	Namespace   string // "" for cluster-scoped resources
	Name        string
}

// resourceNames are the ways a rule's resources entry can name r: "pods", "pods/exec",
// "deployments.apps", "deployments.apps/scale".
func (r KubeRequest) resourceNames() []string {
	names := []string{r.Resource}
	if r.Group != "" {
		names = append(names, r.Resource+"."+r.Group)
	}
	if r.Subresource != "" {
		for i, n := range names {
			names[i] = n + "/" + r.Subresource
		}
	}
	return names
}

// MatchKube returns the first of rules that matches req, or nil. A rule's resources entry
// without a subresource does not match a subresource request ("pods" is not "pods/exec"),
// except "*", which matches everything.
func MatchKube(rules []config.KubernetesRule, req KubeRequest) *config.KubernetesRule {
	for i := range rules {
		if kubeRuleMatches(&rules[i], req) {
			return &rules[i]
		}
	}
	return nil
}

func kubeRuleMatches(r *config.KubernetesRule, req KubeRequest) bool {
	if len(r.Verbs) > 0 && !slices.Contains(r.Verbs, "*") && !slices.Contains(r.Verbs, req.Verb) {
		return false
	}
	if len(r.Resources) > 0 && !anyGlob(r.Resources, req.resourceNames()...) {
		return false
	}
	if len(r.Namespaces) > 0 && !anyGlob(r.Namespaces, req.Namespace) {
		return false
	}
	if len(r.Names) > 0 && !anyGlob(r.Names, req.Name) {
		return false
	}
	return true
}

// anyGlob reports whether one of patterns matches one of values; "*" matches everything,
// "" only the empty value.
func anyGlob(patterns []string, values ...string) bool {
	for _, p := range patterns {
		for _, v := range values {
			if p == "*" || p == v {
				return true
			}
			if p != "" && v != "" {
				if ok, _ := path.Match(p, v); ok {
					return true
				}
			}
		}
	}
	return false
}

// KubeVerbs are the verbs a Kubernetes rule can name.
var KubeVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*"}

func validateKube(policy string, rules []config.KubernetesRule) error {
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Name == "" {
			return fmt.Errorf("policy %q: every kubernetes rule needs a name", policy)
		}
		if seen[r.Name] {
			return fmt.Errorf("policy %q: kubernetes rule %q defined twice", policy, r.Name)
		}
		seen[r.Name] = true
		if !slices.Contains([]string{"deny", "approve", "warn", "allow"}, r.Action) {
			return fmt.Errorf("policy %q: kubernetes rule %q: action must be deny, approve, warn or allow, not %q", policy, r.Name, r.Action)
		}
		for _, v := range r.Verbs {
			if !slices.Contains(KubeVerbs, v) {
				return fmt.Errorf("policy %q: kubernetes rule %q: unknown verb %q (known: get, list, watch, create, update, patch, delete, deletecollection, *)", policy, r.Name, v)
			}
		}
		for _, list := range [][]string{r.Resources, r.Namespaces, r.Names} {
			for _, p := range list {
				if _, err := path.Match(p, ""); err != nil {
					return fmt.Errorf("policy %q: kubernetes rule %q: pattern %q: %w", policy, r.Name, p, err)
				}
			}
		}
	}
	return nil
}
