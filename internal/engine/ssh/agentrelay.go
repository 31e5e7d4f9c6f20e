package ssh

// SSH targets served by an agent (docs/agent.md). An SSH login cannot be handed over like a
// PostgreSQL one: the session keys are the client's. So the agent logs in to the target itself,
// with the key or password and the host key pin of its own config, and serves the gateway, over
// the tunnel stream, an SSH connection of its own that relays every channel and request to the
// target's and back. The gateway runs its engine on that connection as on a direct one: policy,
// recording and masking happen there; the agent carries channels.
//
// The inner connection needs no authentication of its own: the stream is one the gateway opened
// on the agent's authenticated tunnel. The agent's inner host key (ephemeral, one per process)
// travels as the handshake's state, and the gateway pins it for that connection.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

func init() { connector.RegisterHandshake(Name, agentHandshake) }

// innerCiphers: AES-GCM has assembly on the machines agents run on; the inner connection is
// already inside the tunnel's TLS.
var innerCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"}

var relayKey = sync.OnceValues(func() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
})

// agentHandshake is the agent's side: the login to t, then the relay served on a pipe whose
// other end goes back to the gateway over the tunnel. The state is the relay's host key.
func agentHandshake(ctx context.Context, t target.Target, dial connector.DialFunc, _ []byte) (net.Conn, []byte, error) {
	signer, err := relayKey()
	if err != nil {
		return nil, nil, err
	}
	cc, chans, reqs, err := connectTarget(ctx, t, dial)
	if err != nil {
		return nil, nil, err
	}
	state, err := json.Marshal(relayState{HostKey: signer.PublicKey().Marshal(), Version: string(cc.ServerVersion()), Login: t.Username})
	if err != nil {
		cc.Close()
		return nil, nil, err
	}
	gw, ag := net.Pipe()
	go serveRelay(ag, signer, cc, chans, reqs)
	return gw, state, nil
}

// relayState is the handshake's state: the relay's host key, which the gateway pins, and for
// session.start the target's SSH version string and the login the agent used.
type relayState struct {
	HostKey []byte `json:"host_key"`
	Version string `json:"version"`
	Login   string `json:"login"`
}

// serveRelay serves the gateway's SSH connection on c and relays it to the target's (up), until
// either ends; then it closes both.
func serveRelay(c net.Conn, signer ssh.Signer, up ssh.Conn, upChans <-chan ssh.NewChannel, upReqs <-chan *ssh.Request) {
	defer up.Close()
	cfg := &ssh.ServerConfig{NoClientAuth: true, Config: ssh.Config{Ciphers: innerCiphers}}
	cfg.AddHostKey(signer)
	c.SetDeadline(time.Now().Add(upstreamHandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	go relayGlobal(reqs, up)
	go relayGlobal(upReqs, sc)
	go relayOpens(upChans, sc) // forwarded-tcpip, auth-agent: the target opens them
	go func() { up.Wait(); sc.Close() }()
	relayOpens(chans, up)
}

// relayGlobal forwards global requests (keepalives, tcpip-forward) to the other side, with
// its answer.
func relayGlobal(in <-chan *ssh.Request, to ssh.Conn) {
	for r := range in {
		ok, payload, err := to.SendRequest(r.Type, r.WantReply, r.Payload)
		if err != nil {
			ok, payload = false, nil
		}
		if r.WantReply {
			r.Reply(ok, payload)
		}
	}
}

// relayOpens opens on to each channel the other side asks for, and relays it.
func relayOpens(in <-chan ssh.NewChannel, to ssh.Conn) {
	for nc := range in {
		go func() {
			ch, chReqs, err := to.OpenChannel(nc.ChannelType(), nc.ExtraData())
			if err != nil {
				var oe *ssh.OpenChannelError
				if errors.As(err, &oe) {
					nc.Reject(oe.Reason, oe.Message)
				} else {
					nc.Reject(ssh.ConnectionFailed, err.Error())
				}
				return
			}
			in, inReqs, err := nc.Accept()
			if err != nil {
				ch.Close()
				return
			}
			relayChannel(in, inReqs, ch, chReqs)
		}()
	}
}

// relayChannel copies a channel both ways: data, extended data (stderr), EOF, requests with
// their replies (pty-req, exec, window-change, exit-status, ...). A side's EOF is passed on
// once both its streams are copied (x/crypto refuses writes after CloseWrite), and its close
// once, in addition, its requests are.
func relayChannel(a ssh.Channel, aReqs <-chan *ssh.Request, b ssh.Channel, bReqs <-chan *ssh.Request) {
	aDone := copyHalf(b, a)
	bDone := copyHalf(a, b)
	done := make(chan struct{}, 2)
	go func() { relayRequests(aReqs, b); <-aDone; b.Close(); done <- struct{}{} }()
	go func() { relayRequests(bReqs, a); <-bDone; a.Close(); done <- struct{}{} }()
	<-done
	<-done
}

// copyHalf copies from's data and extended data to to, then sends to an EOF; the channel it
// returns is closed then.
func copyHalf(to, from ssh.Channel) <-chan struct{} {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(to, from) }()
	go func() { defer wg.Done(); io.Copy(to.Stderr(), from.Stderr()) }()
	done := make(chan struct{})
	go func() { wg.Wait(); to.CloseWrite(); close(done) }()
	return done
}

func relayRequests(in <-chan *ssh.Request, to ssh.Channel) {
	for r := range in {
		ok, err := to.SendRequest(r.Type, r.WantReply, r.Payload)
		if r.WantReply {
			r.Reply(ok && err == nil, nil)
		}
	}
}

// dialViaAgent is the gateway's side: a stream to the agent serving t, on which the agent has
// logged in to t, and the gateway's SSH client on the agent's relay, whose host key the
// handshake's state pins.
func (e *Engine) dialViaAgent(ctx context.Context, t target.Target) (*ssh.Client, upstreamInfo, error) {
	u, err := e.d.Connector.Open(ctx, t, Name, nil)
	if err != nil {
		return nil, upstreamInfo{}, &userError{fmt.Sprintf("cannot reach target %s through its agent: %v", t.Name, err)}
	}
	var st relayState
	if err := json.Unmarshal(u.State, &st); err != nil {
		u.Close()
		return nil, upstreamInfo{}, &userError{fmt.Sprintf("target %s: the agent's answer does not parse: %v", t.Name, err)}
	}
	want := st.HostKey
	cfg := &ssh.ClientConfig{
		User: "airlock",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if len(want) == 0 || !bytes.Equal(key.Marshal(), want) {
				return errors.New("the agent's relay presented a host key other than the one its handshake announced")
			}
			return nil
		},
		Config:        ssh.Config{Ciphers: innerCiphers},
		ClientVersion: "SSH-2.0-Airlock",
		Timeout:       upstreamHandshakeTimeout,
	}
	lc := &connector.LostConn{Conn: u}
	u.SetDeadline(time.Now().Add(upstreamHandshakeTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(lc, t.Name, cfg)
	if err != nil {
		u.Close()
		return nil, upstreamInfo{}, &userError{fmt.Sprintf("SSH to target %s through agent %s failed: %v", t.Name, u.Via, err)}
	}
	u.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), upstreamInfo{Version: st.Version, Login: st.Login, Via: u.Via, lost: lc.Lost}, nil
}
