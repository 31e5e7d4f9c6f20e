package kubernetes

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/airlock-gw/airlock/internal/policy"
)

// requestInfo is what the gateway knows of an API request from its method and path, the way
// the API server's own request-info resolver reads them (verbs as RBAC names them).
type requestInfo struct {
	policy.KubeRequest
	Version    string
	IsResource bool // false for /version, /api, /apis/..., /openapi/..., /healthz, ...
}

// parseRequest reads the verb, group, version, resource, subresource, namespace and name of an
// API request from its method, path (without the gateway's prefix) and query.
func parseRequest(method, path string, query url.Values) requestInfo {
	var ri requestInfo
	ri.Verb = strings.ToLower(method)
	parts := splitPath(path)
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		ri.Version, parts = parts[1], parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		ri.Group, ri.Version, parts = parts[1], parts[2], parts[3:]
	default:
		return ri // a non-resource URL: discovery, version, openapi, health
	}
	if len(parts) == 0 {
		return ri // discovery of a group version
	}
	ri.IsResource = true
	watchPrefix := false
	if parts[0] == "watch" { // the deprecated /api/v1/watch/... form
		watchPrefix, parts = true, parts[1:]
	}
	// namespaces/NS/RESOURCE/... addresses a namespaced resource; namespaces and
	// namespaces/NAME[/SUB] the namespace objects themselves.
	// (namespaces/NAME/status and /finalize are subresources of the namespace).
	if len(parts) >= 2 && parts[0] == "namespaces" {
		ri.Namespace = parts[1]
		if len(parts) >= 3 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		}
	}
	if len(parts) > 0 {
		ri.Resource = parts[0]
	}
	if len(parts) > 1 {
		ri.Name = parts[1]
	}
	if len(parts) > 2 {
		ri.Subresource = parts[2]
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPrefix || isTrue(query.Get("watch")):
			ri.Verb = "watch"
		case ri.Name == "":
			ri.Verb = "list"
		case ri.Group == "" && ri.Resource == "pods" && connectCreates[ri.Subresource]:
			// A GET of exec, attach or portforward is an upgrade to WebSocket (kubectl 1.30+);
			// the API server authorizes it as create (AuthorizePodWebsocketUpgradeCreatePermission,
			// on by default since v1.35), as it does the POST of SPDY: a rule on create matches both.
			ri.Verb = "create"
		default:
			ri.Verb = "get"
		}
	case http.MethodPost:
		ri.Verb = "create"
	case http.MethodPut:
		ri.Verb = "update"
	case http.MethodPatch:
		ri.Verb = "patch"
	case http.MethodDelete:
		if ri.Name == "" {
			ri.Verb = "deletecollection"
		} else {
			ri.Verb = "delete"
		}
	}
	// A list or watch by fieldSelector metadata.name=NAME addresses one object (kubectl get
	// pod NAME -w does that).
	if (ri.Verb == "list" || ri.Verb == "watch") && ri.Name == "" {
		if fs := query.Get("fieldSelector"); strings.HasPrefix(fs, "metadata.name=") && !strings.Contains(fs, ",") {
			ri.Name = strings.TrimPrefix(fs, "metadata.name=")
		}
	}
	return ri
}

// connectCreates are the pod subresources whose GET the API server authorizes as create.
var connectCreates = map[string]bool{"exec": true, "attach": true, "portforward": true}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func isTrue(s string) bool { return s == "true" || s == "1" }
