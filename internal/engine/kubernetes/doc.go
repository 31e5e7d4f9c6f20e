// Package kubernetes is the Kubernetes engine: an HTTPS listener that kubectl reaches through
// a kubeconfig from `airlock kubeconfig`, which authenticates every request with the user's
// gateway token, decides it by policy (verb, resource, namespace, name), forwards it to the
// target's API server with the gateway's credential (optionally impersonating the user), and
// records each request, response and watch event.
package kubernetes
