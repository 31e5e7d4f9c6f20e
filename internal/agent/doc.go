// Package agent is the network-resident agent (`airlock agent`) and the gateway's side of its
// tunnel (Hub): the agent dials out over TLS, pinned by its join token, and serves the targets
// of its own config through one yamux-multiplexed connection; the gateway opens a stream per
// session and the agent runs the protocol's handshake there, with credentials that never leave it.
package agent
