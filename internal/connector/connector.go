// Package connector reaches targets: directly from the gateway today, through an agent's tunnel
// later. Engines dial through a Connector and never open sockets to targets themselves.
package connector

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/airlock-gw/airlock/internal/target"
)

// Connector opens a byte stream to a target's address.
type Connector interface {
	Dial(ctx context.Context, t target.Target) (net.Conn, error)
}

// Direct dials targets over TCP from the gateway.
type Direct struct {
	Timeout time.Duration // default 10s
}

// Dial implements Connector.
func (d Direct) Dial(ctx context.Context, t target.Target) (net.Conn, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	nd := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	c, err := nd.DialContext(ctx, "tcp", t.Address)
	if err != nil {
		return nil, fmt.Errorf("dial target %q at %s: %w", t.Name, t.Address, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return c, nil
}
