package kubernetes

import (
	"net/url"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name, method, path, query                    string
		verb, group, resource, sub, namespace, rname string
		isResource                                   bool
	}{
		{"list pods", "GET", "/api/v1/namespaces/default/pods", "", "list", "", "pods", "", "default", "", true},
		{"get pod", "GET", "/api/v1/namespaces/default/pods/web", "", "get", "", "pods", "", "default", "web", true},
		{"watch pods", "GET", "/api/v1/namespaces/default/pods", "watch=true", "watch", "", "pods", "", "default", "", true},
		{"watch one by field selector", "GET", "/api/v1/namespaces/default/pods", "watch=1&fieldSelector=metadata.name%3Dweb", "watch", "", "pods", "", "default", "web", true},
		{"legacy watch prefix", "GET", "/api/v1/watch/namespaces/default/pods", "", "watch", "", "pods", "", "default", "", true},
		{"exec", "POST", "/api/v1/namespaces/kube-system/pods/coredns/exec", "command=sh", "create", "", "pods", "exec", "kube-system", "coredns", true},
		{"exec over websocket", "GET", "/api/v1/namespaces/a/pods/p/exec", "", "create", "", "pods", "exec", "a", "p", true},
		{"attach over websocket", "GET", "/api/v1/namespaces/a/pods/p/attach", "stdout=true", "create", "", "pods", "attach", "a", "p", true},
		{"port-forward over websocket", "GET", "/api/v1/namespaces/a/pods/p/portforward", "ports=80", "create", "", "pods", "portforward", "a", "p", true},
		{"pod log", "GET", "/api/v1/namespaces/a/pods/p/log", "", "get", "", "pods", "log", "a", "p", true},
		{"exec of another group's pods", "GET", "/apis/x.example/v1/namespaces/a/pods/p/exec", "", "get", "x.example", "pods", "exec", "a", "p", true},
		{"list namespaces", "GET", "/api/v1/namespaces", "", "list", "", "namespaces", "", "", "", true},
		{"delete namespace", "DELETE", "/api/v1/namespaces/team-a", "", "delete", "", "namespaces", "", "team-a", "team-a", true},
		{"namespace status", "PUT", "/api/v1/namespaces/team-a/status", "", "update", "", "namespaces", "status", "team-a", "team-a", true},
		{"namespace finalize", "PUT", "/api/v1/namespaces/team-a/finalize", "", "update", "", "namespaces", "finalize", "team-a", "team-a", true},
		{"cluster-scoped", "GET", "/api/v1/nodes/n1", "", "get", "", "nodes", "", "", "n1", true},
		{"group resource", "PATCH", "/apis/apps/v1/namespaces/prod/deployments/api/scale", "", "patch", "apps", "deployments", "scale", "prod", "api", true},
		{"deletecollection", "DELETE", "/apis/apps/v1/namespaces/prod/deployments", "", "deletecollection", "apps", "deployments", "", "prod", "", true},
		{"create", "POST", "/api/v1/namespaces/prod/configmaps", "", "create", "", "configmaps", "", "prod", "", true},
		{"discovery", "GET", "/api", "", "get", "", "", "", "", "", false},
		{"group discovery", "GET", "/apis/apps/v1", "", "get", "apps", "", "", "", "", false},
		{"version", "GET", "/version", "", "get", "", "", "", "", "", false},
		{"openapi", "GET", "/openapi/v3/api/v1", "", "get", "", "", "", "", "", false},
		{"root", "GET", "/", "", "get", "", "", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			ri := parseRequest(tt.method, tt.path, q)
			if ri.Verb != tt.verb || ri.Group != tt.group || ri.Resource != tt.resource || ri.Subresource != tt.sub ||
				ri.Namespace != tt.namespace || ri.Name != tt.rname || ri.IsResource != tt.isResource {
				t.Errorf("parseRequest(%s %s?%s) = %+v", tt.method, tt.path, tt.query, ri)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"/api/v1/namespaces/a/pods/b/exec", "/apis/apps/v1/watch/namespaces/x/deployments", "//", "/api/v1/namespaces"} {
		f.Add("GET", s, "watch=true")
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		q, _ := url.ParseQuery(query)
		ri := parseRequest(method, path, q)
		if ri.Subresource != "" && ri.Name == "" {
			t.Errorf("subresource %q without a name from %q", ri.Subresource, path)
		}
	})
}
