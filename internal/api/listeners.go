package api

import (
	"net"
	"net/http"
	"sort"
)

// Listener is a protocol listener of the gateway, as GET /api/v1/listeners reports it.
type Listener struct {
	Protocol string `json:"protocol"` // postgres, mysql, ssh, kubernetes, agents
	Address  string `json:"address"`  // host:port a client dials
}

// listeners tells a logged-in client where the gateway's protocol listeners are and the TLS
// certificate they present, so that `airlock kubeconfig TARGET` needs no --server. A listener
// bound to every interface (0.0.0.0, ::) is reported with the host the client used to reach
// this API, which is the best guess of a name it can dial.
func (s *Server) listeners(w http.ResponseWriter, r *http.Request) error {
	out := []Listener{}
	if s.Listeners != nil {
		reqHost, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			reqHost = r.Host
		}
		for proto, addr := range s.Listeners() {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				continue
			}
			if ip := net.ParseIP(host); (host == "" || ip != nil && ip.IsUnspecified()) && reqHost != "" {
				host = reqHost
			}
			out = append(out, Listener{Protocol: proto, Address: net.JoinHostPort(host, port)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Protocol < out[j].Protocol })
	return writeJSON(w, http.StatusOK, map[string]any{"listeners": out, "certificate": string(s.TLSCertificate)})
}
