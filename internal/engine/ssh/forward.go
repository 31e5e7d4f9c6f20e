package ssh

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/event"
)

// tcpipPayload is the extra data of direct-tcpip and forwarded-tcpip channel opens (RFC 4254
// 7.1, 7.2): where to connect, and where the connection comes from.
type tcpipPayload struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

func (p tcpipPayload) dest() string { return net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))) }
func (p tcpipPayload) orig() string {
	return net.JoinHostPort(p.OrigHost, strconv.Itoa(int(p.OrigPort)))
}

// handleDirect relays a local port forward (ssh -L): the target opens the connection.
func (s *session) handleDirect(nc ssh.NewChannel) {
	var p tcpipPayload
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "airlock: malformed direct-tcpip request")
		return
	}
	id := s.nextID.Add(1)
	if !s.settings.SSHAllows("local_forwarding") {
		s.denied(id, "direct-tcpip", p.dest(), "local port forwarding is not allowed by policy")
		nc.Reject(ssh.Prohibited, "airlock: port forwarding to "+p.dest()+" is not allowed by policy")
		return
	}
	d := event.ForwardData{Channel: id, Kind: "local", Destination: p.dest(), Origin: p.orig()}
	s.forward(nc, d, true, func() (ssh.Channel, <-chan *ssh.Request, error) {
		return s.up.OpenChannel("direct-tcpip", nc.ExtraData())
	})
}

// forward relays one forwarded connection: it records it, opens its far side with open (on the
// target for ssh -L, on the client for ssh -R), accepts nc, bridges the two, and records the
// bytes each way once it closes. fromClient says that nc came from the client.
func (s *session) forward(nc ssh.NewChannel, d event.ForwardData, fromClient bool, open func() (ssh.Channel, <-chan *ssh.Request, error)) {
	if s.record(event.Forward, d, nil) != nil {
		nc.Reject(ssh.ConnectionFailed, "airlock: recording failed")
		return
	}
	far, freqs, err := open()
	if err != nil {
		reason, msg := ssh.ConnectionFailed, err.Error()
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			reason, msg = oe.Reason, oe.Message
		}
		d.Closed, d.Error = true, msg
		s.record(event.Forward, d, nil)
		nc.Reject(reason, msg)
		return
	}
	near, nreqs, err := nc.Accept()
	if err != nil {
		far.Close()
		return
	}
	go ssh.DiscardRequests(freqs)
	go ssh.DiscardRequests(nreqs)
	cc, uc := near, far
	if !fromClient {
		cc, uc = far, near
	}
	// Bytes "from the client" are what the client's side sends, whichever side opened.
	d.BytesFromClient, d.BytesToClient = s.bridge(cc, uc)
	d.Closed = true
	s.record(event.Forward, d, nil)
}

// remoteForwards relays connections the target accepted on a port the client asked it to
// listen on (ssh -R).
func (s *session) remoteForwards(chans <-chan ssh.NewChannel) {
	for nc := range chans {
		if s.ending.Load() || !s.settings.SSHAllows("remote_forwarding") {
			nc.Reject(ssh.Prohibited, "remote port forwarding is not allowed")
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			var p tcpipPayload
			ssh.Unmarshal(nc.ExtraData(), &p)
			d := event.ForwardData{Channel: s.nextID.Add(1), Kind: "remote", Destination: p.dest(), Origin: p.orig()}
			s.forward(nc, d, false, func() (ssh.Channel, <-chan *ssh.Request, error) {
				return s.sc.OpenChannel("forwarded-tcpip", nc.ExtraData())
			})
		}()
	}
}

// agentChannels relays the target's requests to the client's agent, when the policy allowed
// agent forwarding (the request is not passed on otherwise). The agent protocol carries
// signatures, not secrets worth keeping; only the channel is recorded.
func (s *session) agentChannels(chans <-chan ssh.NewChannel) {
	for nc := range chans {
		if s.ending.Load() || !s.settings.SSHAllows("agent_forwarding") {
			nc.Reject(ssh.Prohibited, "agent forwarding is not allowed")
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			d := event.ForwardData{Channel: s.nextID.Add(1), Kind: "agent", Destination: "auth-agent@openssh.com"}
			s.forward(nc, d, false, func() (ssh.Channel, <-chan *ssh.Request, error) {
				return s.sc.OpenChannel("auth-agent@openssh.com", nil)
			})
		}()
	}
}

// bridge copies both ways between the client's and the target's channel, passing EOF on, and
// closes both once both directions are done. It returns the bytes each way.
func (s *session) bridge(cc, uc ssh.Channel) (fromClient, toClient int64) {
	var wg sync.WaitGroup
	var from, to atomic.Int64
	wg.Add(2)
	go func() { // forwardCopier: client -> target
		defer wg.Done()
		n, err := io.Copy(uc, cc)
		from.Store(n)
		s.addFrom(int(n))
		if err != nil {
			uc.Close()
			cc.Close()
			return
		}
		uc.CloseWrite()
	}()
	go func() { // forwardCopier: target -> client
		defer wg.Done()
		n, err := io.Copy(cc, uc)
		to.Store(n)
		s.addTo(int(n))
		if err != nil {
			uc.Close()
			cc.Close()
			return
		}
		cc.CloseWrite()
	}()
	wg.Wait()
	cc.Close()
	uc.Close()
	return from.Load(), to.Load()
}
