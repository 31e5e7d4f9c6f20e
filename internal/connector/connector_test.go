package connector

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/target"
)

func TestOpenRunsTheRegisteredHandshakeOverDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 5)
		if _, err := c.Read(b); err == nil && string(b) == "hello" {
			c.Write([]byte("ok"))
		}
	}()
	RegisterHandshake("test-echo", func(ctx context.Context, tg target.Target, dial DialFunc, req []byte) (net.Conn, []byte, error) {
		c, err := dial(ctx)
		if err != nil {
			return nil, nil, err
		}
		c.Write(req)
		b := make([]byte, 2)
		if _, err := c.Read(b); err != nil {
			c.Close()
			return nil, nil, err
		}
		return c, append([]byte(tg.Name+":"), b...), nil
	})
	u, err := Direct{}.Open(context.Background(), target.Target{Name: "t1", Address: ln.Addr().String()}, "test-echo", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if string(u.State) != "t1:ok" || u.Via != "" {
		t.Fatalf("state %q via %q, want t1:ok and direct", u.State, u.Via)
	}
}

func TestDirectOpenRefusesAgentTargetsAndUnknownProtocols(t *testing.T) {
	_, err := Direct{}.Open(context.Background(), target.Target{Name: "p", Agent: "dc1"}, "test-none", nil)
	if err == nil || !strings.Contains(err.Error(), "served by an agent") {
		t.Fatalf("agent target opened directly: %v", err)
	}
	_, err = Direct{}.Open(context.Background(), target.Target{Name: "p", Address: "127.0.0.1:1"}, "test-none", nil)
	if err == nil || !strings.Contains(err.Error(), "no handshake registered") {
		t.Fatalf("unknown protocol: %v", err)
	}
}

func TestAgentErrorsUnwrap(t *testing.T) {
	err := error(&AgentError{Agent: "dc1", Err: ErrNoAgent})
	if !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), "agent dc1") {
		t.Fatalf("%v", err)
	}
}
