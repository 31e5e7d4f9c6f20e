package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/target"
)

// fakeTarget is an in-process SSH server: it accepts key, and answers an exec on a session
// channel with the command echoed to stdout, "err" to stderr, the client's stdin copied after
// it, and exit status 3.
func fakeTarget(t *testing.T, key ssh.PublicKey) (ssh.Signer, func() (net.Conn, error)) {
	t.Helper()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	host, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if !bytes.Equal(k.Marshal(), key.Marshal()) {
			return nil, errors.New("unknown key")
		}
		return &ssh.Permissions{}, nil
	}}
	cfg.AddHostKey(host)
	serve := func(c net.Conn) {
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go func() {
				for r := range creqs {
					if r.Type != "exec" {
						r.Reply(false, nil)
						continue
					}
					r.Reply(true, nil)
					cmd := string(r.Payload[4:])
					fmt.Fprintf(ch, "ran %s\n", cmd)
					fmt.Fprint(ch.Stderr(), "err\n")
					io.Copy(ch, ch) // stdin back, until the client's EOF
					ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{3}))
					ch.Close()
				}
			}()
		}
	}
	return host, func() (net.Conn, error) {
		a, b := tcpPair(t)
		go serve(b)
		return a, nil
	}
}

// tcpPair is two ends of a loopback TCP connection: buffered, unlike net.Pipe, on which two SSH
// ends writing their version lines at once would wait for each other forever.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestAgentRelay runs the agent's handshake against an in-process target and the gateway's
// client on the relay it serves: exec with stdout, stderr, stdin, EOF and exit status carried
// both ways; the relay's host key pinned from the handshake's state; a wrong pin refused at
// the agent.
func TestAgentRelay(t *testing.T) {
	_, gk, _ := ed25519.GenerateKey(rand.Reader)
	gwKey, _ := ssh.NewSignerFromKey(gk)
	host, dial := fakeTarget(t, gwKey.PublicKey())
	keyFile := t.TempDir() + "/key"
	pemBlock, err := ssh.MarshalPrivateKey(gk, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(pemBlock), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := target.Target{Name: "web", Type: Name, Address: "10.0.0.1:22", Username: "deploy", PrivateKeyFile: keyFile,
		HostKey: string(ssh.MarshalAuthorizedKey(host.PublicKey()))}
	conn, state, err := agentHandshake(context.Background(), tg, func(context.Context) (net.Conn, error) { return dial() }, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st relayState
	if err := json.Unmarshal(state, &st); err != nil || st.Login != "deploy" || !strings.HasPrefix(st.Version, "SSH-2.0-Go") {
		t.Fatalf("state %s: %v", state, err)
	}
	// What the agent's tunnel stream does: copy both ways between the relay's pipe and the
	// gateway.
	gw, stream := tcpPair(t)
	go func() { io.Copy(stream, conn); stream.Close() }()
	go func() { io.Copy(conn, stream); conn.Close() }()
	cc, chans, reqs, err := ssh.NewClientConn(gw, "web", &ssh.ClientConfig{User: "x", Config: ssh.Config{Ciphers: innerCiphers},
		HostKeyCallback: ssh.FixedHostKey(mustParse(t, st.HostKey))})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	for i := range 3 { // several channels on one connection, one after the other
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		s.Stdout, s.Stderr = &out, &errOut
		s.Stdin = strings.NewReader(fmt.Sprintf("input %d\n", i))
		err = s.Run("uptime")
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
			t.Errorf("run: %v, want exit status 3", err)
		}
		if want := fmt.Sprintf("ran uptime\ninput %d\n", i); out.String() != want || errOut.String() != "err\n" {
			t.Errorf("stdout %q (want %q), stderr %q", out.String(), want, errOut.String())
		}
	}

	tg.HostKey = string(ssh.MarshalAuthorizedKey(gwKey.PublicKey())) // not the target's
	if _, _, err := agentHandshake(context.Background(), tg, func(context.Context) (net.Conn, error) { return dial() }, nil); err == nil ||
		!strings.Contains(err.Error(), "does not match the pinned one") {
		t.Errorf("wrong pin: %v", err)
	}
}

func mustParse(t *testing.T, b []byte) ssh.PublicKey {
	t.Helper()
	k, err := ssh.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
