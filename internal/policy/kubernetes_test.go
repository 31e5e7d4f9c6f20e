package policy

import (
	"testing"

	"github.com/airlock-gw/airlock/internal/config"
)

func TestMatchKube(t *testing.T) {
	rules := []config.KubernetesRule{
		{Name: "no-ns-delete", Verbs: []string{"delete"}, Resources: []string{"namespaces"}, Action: "deny"},
		{Name: "no-exec-system", Resources: []string{"pods/exec", "pods/attach"}, Namespaces: []string{"kube-*"}, Action: "deny"},
		{Name: "scale-prod", Verbs: []string{"patch", "update"}, Resources: []string{"deployments.apps/scale"}, Namespaces: []string{"prod"}, Action: "warn"},
		{Name: "cluster-scoped-writes", Verbs: []string{"create", "update", "patch", "delete"}, Namespaces: []string{""}, Names: []string{"crit-*"}, Action: "deny"},
	}
	tests := []struct {
		name string
		req  KubeRequest
		want string
	}{
		{"delete namespace", KubeRequest{Verb: "delete", Resource: "namespaces", Namespace: "a", Name: "a"}, "no-ns-delete"},
		{"get namespace", KubeRequest{Verb: "get", Resource: "namespaces", Namespace: "a", Name: "a"}, ""},
		{"exec in kube-system", KubeRequest{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "kube-system", Name: "p"}, "no-exec-system"},
		{"exec elsewhere", KubeRequest{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "default", Name: "p"}, ""},
		{"pods is not pods/exec", KubeRequest{Verb: "get", Resource: "pods", Namespace: "kube-system", Name: "p"}, ""},
		{"grouped resource", KubeRequest{Verb: "patch", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: "prod", Name: "api"}, "scale-prod"},
		{"cluster-scoped only", KubeRequest{Verb: "delete", Resource: "nodes", Name: "crit-1"}, "cluster-scoped-writes"},
		{"namespaced not matched by empty namespace", KubeRequest{Verb: "delete", Resource: "pods", Namespace: "x", Name: "crit-1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if r := MatchKube(rules, tt.req); r != nil {
				got = r.Name
			}
			if got != tt.want {
				t.Errorf("MatchKube(%+v) = %q, want %q", tt.req, got, tt.want)
			}
		})
	}
}

func TestValidateKube(t *testing.T) {
	base := config.Policy{Name: "p", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "allow"}
	bad := [][]config.KubernetesRule{
		{{Name: "", Action: "deny"}},
		{{Name: "a", Action: "block"}},
		{{Name: "a", Action: "deny", Verbs: []string{"destroy"}}},
		{{Name: "a", Action: "deny", Resources: []string{"["}}},
		{{Name: "a", Action: "deny"}, {Name: "a", Action: "warn"}},
	}
	for i, k := range bad {
		p := base
		p.Kubernetes = k
		if err := Validate([]config.Policy{p}); err == nil {
			t.Errorf("case %d: %+v validated", i, k)
		}
	}
	p := base
	p.Kubernetes = []config.KubernetesRule{{Name: "a", Action: "deny", Verbs: []string{"delete"}, Resources: []string{"namespaces"}}}
	if err := Validate([]config.Policy{p}); err != nil {
		t.Error(err)
	}
	d := config.Policy{Name: "d", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "deny", Kubernetes: p.Kubernetes}
	if err := Validate([]config.Policy{d}); err == nil {
		t.Error("a deny rule with kubernetes rules validated")
	}
}
