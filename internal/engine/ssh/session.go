package ssh

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/recorder"
)

// session relays one client connection to its target connection. One recording covers the
// connection: every channel's events carry the channel's number.
type session struct {
	e        *Engine
	log      *slog.Logger
	c        *conn
	sc       *ssh.ServerConn
	up       *ssh.Client
	rec      *recorder.Session
	masker   *masking.Masker // nil: nothing to mask
	deny     []*regexp.Regexp
	settings policy.Settings
	rule     string

	nextID                         atomic.Uint32
	fromClient, toClient, channels atomic.Int64
	mFrom, mTo                     prometheus.Counter
	wg                             sync.WaitGroup // channel handlers
	mu                             sync.Mutex
	live                           map[uint32]*channel
	ending                         atomic.Bool
	failed                         chan endState            // first fatal error of a relay goroutine
	failure                        atomic.Pointer[endState] // the same, for the channels ending
	failOnce                       sync.Once
}

type endState struct {
	reason string
	err    error
}

func newSession(e *Engine, log *slog.Logger, c *conn, sc *ssh.ServerConn, rec *recorder.Session, mk *masking.Masker, deny []*regexp.Regexp) *session {
	s := &session{e: e, log: log, c: c, sc: sc, up: c.up, rec: rec, masker: mk, deny: deny,
		settings: c.dec.Settings, rule: c.dec.Rule, live: map[uint32]*channel{}, failed: make(chan endState, 1)}
	if m := e.d.Metrics; m != nil {
		s.mFrom = m.Bytes.WithLabelValues(Name, c.target.Name, "from_client")
		s.mTo = m.Bytes.WithLabelValues(Name, c.target.Name, "to_client")
	}
	return s
}

// fail ends the session from a relay goroutine.
func (s *session) fail(st endState) {
	s.failOnce.Do(func() { s.failure.Store(&st); s.failed <- st })
}

// failMessage is what the client is told when a relay goroutine ends the session.
func failMessage(st endState) string {
	switch {
	case st.reason == "error" && errors.Is(st.err, recorder.ErrUnavailable):
		return "airlock: recording failed, so the gateway ends this session: " + st.err.Error()
	case st.err != nil:
		return "airlock: " + st.err.Error()
	}
	return "airlock: the session ended"
}

// record writes one event before the bytes or request it describes are forwarded. An error
// means the recording cannot be kept: the session ends (fail closed).
func (s *session) record(t event.Type, data any, raw []byte) error {
	if s.rec == nil {
		return nil
	}
	s.rec.Record(t, data, raw)
	if err := s.rec.Commit(); err != nil {
		s.log.Error("recording failed: ending session", "err", err)
		s.fail(endState{reason: "error", err: err})
		return err
	}
	return nil
}

// recordInput records a read of the client's terminal input: raw as it is, or, when d is
// Withheld (typed at a password prompt, raw nil), only its length in the terminal.input event
// and the bytes (data) sealed with the recording key in an original event right after it,
// which only an auditor's reveal opens (audited), as masked values are kept. Withholding is
// decided by what the target printed, which a user controls (PS1='Password: '; stty -echo):
// kept sealed, nothing typed that way escapes the recording.
func (s *session) recordInput(d event.TerminalData, raw, data []byte) error {
	if s.rec == nil {
		return nil
	}
	if !d.Withheld || s.e.d.Sealer == nil {
		return s.record(event.TerminalInput, d, raw)
	}
	s.rec.Record(event.TerminalInput, d, nil)
	keyID, nonce, ct := s.e.d.Sealer.Seal(data, []byte(s.rec.ID()))
	return s.record(event.Original, event.OriginalData{Of: event.TerminalInput, KeyID: keyID, Nonce: base64.StdEncoding.EncodeToString(nonce)}, ct)
}

func (s *session) addFrom(n int) {
	s.fromClient.Add(int64(n))
	if s.mFrom != nil {
		s.mFrom.Add(float64(n))
	}
}

func (s *session) addTo(n int) {
	s.toClient.Add(int64(n))
	if s.mTo != nil {
		s.mTo.Add(float64(n))
	}
}

// denied records a request refused by policy.
func (s *session) denied(ch uint32, request, detail, reason string) {
	s.record(event.Denied, event.DeniedData{Channel: ch, Request: request, Detail: detail, Reason: reason, Rule: s.rule}, nil)
}

// run relays until either side goes away or ctx ends, and returns what session.end records.
func (s *session) run(ctx context.Context, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) event.SessionEndData {
	go s.clientRequests(reqs)
	go s.clientChannels(chans)
	go s.remoteForwards(s.up.HandleChannelOpen("forwarded-tcpip"))
	go s.agentChannels(s.up.HandleChannelOpen("auth-agent@openssh.com"))

	clientGone := make(chan error, 1)
	upGone := make(chan error, 1)
	go func() { clientGone <- s.sc.Wait() }()
	go func() { upGone <- s.up.Wait() }()
	kctx, stopKeepalive := context.WithCancel(ctx)
	defer stopKeepalive()
	go s.keepalive(kctx, "client", s.sc)
	go s.keepalive(kctx, "upstream", s.up)

	var st endState
	select {
	case <-clientGone:
		st = endState{reason: "client_disconnected"}
	case err := <-upGone:
		st = endState{reason: "upstream_closed"}
		msg := fmt.Sprintf("airlock: the connection to target %s was closed", s.c.target.Name)
		if lost := s.agentLost(err); lost != nil {
			st.reason, st.err, msg = "agent_lost", lost, s.lostMessage(lost)
		} else if err != nil && !isClosedErr(err) {
			st.err = err
		}
		// Let the channels pass on what the target sent before it went (a channel that ends
		// with its agent says so itself: handleSession).
		s.waitChannels(5 * time.Second)
		s.abortAll(msg)
	case <-ctx.Done():
		cause := context.Cause(ctx)
		st = endState{reason: "gateway_shutdown", err: cause}
		switch {
		case errors.Is(cause, engine.ErrTerminated):
			st.reason = "terminated"
		case errors.Is(cause, engine.ErrMaxDuration):
			st.reason = "max_duration"
		}
		s.abortAll("airlock: " + cause.Error())
	case st = <-s.failed:
		s.abortAll(failMessage(st))
	}
	s.ending.Store(true)
	s.sc.Close()
	s.up.Close()
	s.waitChannels(10 * time.Second)
	d := event.SessionEndData{Reason: st.reason, BytesFromClient: s.fromClient.Load(), BytesToClient: s.toClient.Load(),
		Statements: s.channels.Load()}
	if st.err != nil {
		d.Error = st.err.Error()
	}
	return d
}

// agentLost is the loss of the agent that carried the connection to the target, when err (the
// upstream's end) or the connection says that is how it ended; nil otherwise.
func (s *session) agentLost(err error) *connector.LostError {
	var lost *connector.LostError
	if errors.As(err, &lost) {
		return lost
	}
	if f := s.c.upInfo.lost; f != nil {
		return f()
	}
	return nil
}

// lostMessage is what a client is told when its session ends with its agent.
func (s *session) lostMessage(lost *connector.LostError) string {
	return fmt.Sprintf("airlock: the connection to target %s was lost with the agent serving it: %v; reconnect to be served by another agent (`airlock agents list`)",
		s.c.target.Name, lost)
}

func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || err.Error() == "EOF"
}

func (s *session) waitChannels(d time.Duration) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// abortAll tells every open session channel's client why the session ends, then closes it.
func (s *session) abortAll(msg string) {
	s.mu.Lock()
	chs := make([]*channel, 0, len(s.live))
	for _, ch := range s.live {
		chs = append(chs, ch)
	}
	s.mu.Unlock()
	for _, ch := range chs {
		ch.abort(msg)
	}
}

// keeper is what keepalive needs of either connection.
type keeper interface {
	SendRequest(name string, wantReply bool, payload []byte) (bool, []byte, error)
}

// keepalive asks the peer for a reply every interval; a peer that does not answer within the
// timeout ends the session, so that neither side is left talking to a dead connection.
func (s *session) keepalive(ctx context.Context, side string, k keeper) {
	t := time.NewTicker(s.e.keepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := k.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case <-ctx.Done():
			return
		case err := <-done:
			if err != nil {
				return // the connection is gone; run notices through Wait
			}
		case <-time.After(s.e.keepaliveTimeout):
			reason := "client_disconnected"
			if side == "upstream" {
				reason = "upstream_closed"
			}
			s.fail(endState{reason: reason, err: fmt.Errorf("the %s did not answer a keepalive within %s", side, s.e.keepaliveTimeout)})
			return
		}
	}
}

// clientRequests answers the client's global requests: remote port forwarding when the policy
// allows it, a polite no to everything else (keepalives included: any answer is a sign of life).
func (s *session) clientRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward", "cancel-tcpip-forward":
			var p struct {
				Addr string
				Port uint32
			}
			ssh.Unmarshal(req.Payload, &p)
			dest := net.JoinHostPort(p.Addr, strconv.Itoa(int(p.Port)))
			if !s.settings.SSHAllows("remote_forwarding") {
				if req.Type == "tcpip-forward" {
					s.denied(0, "tcpip-forward", dest, "remote port forwarding is not allowed by policy")
				}
				req.Reply(false, nil)
				continue
			}
			ok, payload, err := s.up.SendRequest(req.Type, req.WantReply, req.Payload)
			if req.Type == "tcpip-forward" {
				d := event.ForwardData{Kind: "remote-listen", Destination: dest}
				if err != nil || !ok {
					d.Error = "the target refused to listen"
				}
				s.record(event.Forward, d, nil)
			}
			req.Reply(ok && err == nil, payload)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// clientChannels serves the channels the client opens.
func (s *session) clientChannels(chans <-chan ssh.NewChannel) {
	for nc := range chans {
		if s.ending.Load() {
			nc.Reject(ssh.ResourceShortage, "airlock: the session is ending")
			continue
		}
		switch nc.ChannelType() {
		case "session":
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.handleSession(nc) }()
		case "direct-tcpip":
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.handleDirect(nc) }()
		default:
			s.denied(0, nc.ChannelType(), "", "channel type not supported by the gateway")
			nc.Reject(ssh.UnknownChannelType, "airlock: channel type "+nc.ChannelType()+" is not supported")
		}
	}
}
