package ssh

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
)

// Buffers of one copier start small, so that an idle session holds little memory, and grow
// while reads fill them, so that bulk transfers move in large recorded batches.
const (
	minBuf = 2 << 10
	maxBuf = 256 << 10
	// maxCommand bounds the command text kept in an exec event.
	maxCommand = 64 << 10
)

// allowedEnv is the environment a client may pass on to the target (its own AcceptEnv still
// applies). Anything else is refused: variables like LD_PRELOAD or BASH_ENV change what runs.
func allowedEnv(name string) bool {
	switch name {
	case "LANG", "LANGUAGE", "TZ", "COLORTERM", "TERM_PROGRAM":
		return true
	}
	return strings.HasPrefix(name, "LC_")
}

// channel is one session channel: client side cc, target side uc.
type channel struct {
	s      *session
	id     uint32
	cc, uc ssh.Channel

	mu      sync.Mutex
	pty     atomic.Bool
	started bool
	env     map[string]string
	exits   []*ssh.Request // the target's exit-status/exit-signal, passed on after its output
	exit    string         // how the program ended, as text (exitText)

	sftp   atomic.Pointer[sftpObserver] // set for the sftp subsystem: operations are recorded, not bytes
	xfer   atomic.Pointer[transfer]     // set for scp and rsync: relayed as they are, counted
	noEcho atomic.Bool                  // a password prompt is showing: input is not kept
	line   []byte                       // the output's current line, for prompt detection (output copier only)

	echoMu sync.Mutex
	echo   []byte    // typed on the terminal, not yet seen echoed (see echoed)
	echoAt time.Time // when echo was last typed

	// ready is closed once the channel's shell, exec or subsystem request went on to the target
	// (or was refused), or the client's requests ended: input waits for it, so that neither
	// its bytes nor its EOF reach the target before the request the client sent ahead of them
	// (an EOF that overtook the exec was lost: "ssh gw 'read x' < /dev/null" hung), and so
	// that the first bytes of an sftp or scp channel are read as such.
	ready     chan struct{}
	readyOnce sync.Once

	wmu    sync.Mutex // serialises writes to the client
	out    *maskStream
	errOut *maskStream
	closed atomic.Bool
}

func (s *session) register(ch *channel) {
	s.mu.Lock()
	s.live[ch.id] = ch
	s.mu.Unlock()
}

func (s *session) unregister(ch *channel) {
	s.mu.Lock()
	delete(s.live, ch.id)
	s.mu.Unlock()
}

// handleSession relays a session channel until both sides closed it.
func (s *session) handleSession(nc ssh.NewChannel) {
	uc, ureqs, err := s.up.OpenChannel("session", nil)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "airlock: the target refused a session: "+err.Error())
		return
	}
	cc, creqs, err := nc.Accept()
	if err != nil {
		uc.Close()
		return
	}
	ch := &channel{s: s, id: s.nextID.Add(1), cc: cc, uc: uc, env: map[string]string{}, ready: make(chan struct{})}
	ch.out = newMaskStream(ch, "")
	ch.errOut = newMaskStream(ch, "stderr")
	s.channels.Add(1)
	s.register(ch)
	defer s.unregister(ch)

	var outputs sync.WaitGroup
	outputs.Add(2)
	go func() { defer outputs.Done(); ch.copyOut(uc, ch.out) }()
	go func() { defer outputs.Done(); ch.copyOut(uc.Stderr(), ch.errOut) }()
	go ch.copyIn()
	upDone := make(chan struct{})
	go func() { defer close(upDone); ch.upstreamRequests(ureqs) }()
	clientDone := make(chan struct{})
	go func() { defer close(clientDone); ch.clientRequests(creqs); ch.open(); uc.Close() }()

	outputs.Wait()
	<-upDone
	// Everything the target sent is through: now its exit status, then EOF and close.
	ch.mu.Lock()
	exits := ch.exits
	ch.exits = nil
	exit := ch.exit
	ch.mu.Unlock()
	if xf := ch.xfer.Load(); xf != nil {
		xf.record(ch, exit)
	}
	if sf := ch.sftp.Load(); sf != nil {
		sf.end()
		if err := s.rec.Commit(); err != nil {
			s.fail(endState{reason: "error", err: err})
		}
	}
	ch.sendExits(exits)
	cc.CloseWrite()
	cc.Close()
	uc.Close()
	<-clientDone
}

// sendExits ends the channel for the client once the target's output is through: the target's
// exit status, or why there is none. A session that is failing (the recording could not be
// kept: the target's last output may not have reached the client) ends the channel with the
// reason and exit status 255 instead of the target's status, which would say all went well:
// run's abort may come too late to say it on a channel that closes by itself.
func (ch *channel) sendExits(exits []*ssh.Request) {
	s := ch.s
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	if ch.closed.Load() { // abort told the client already
		return
	}
	if f := s.failure.Load(); f != nil {
		ch.exitWithLocked(failMessage(*f))
		return
	}
	for _, r := range exits {
		ch.cc.SendRequest(r.Type, false, r.Payload)
	}
	if len(exits) == 0 {
		// No exit status: the program may have been cut off with the agent that carried it.
		if lost := s.agentLost(nil); lost != nil {
			ch.exitWithLocked(s.lostMessage(lost))
		}
	}
}

// clientRequests passes the client's channel requests on, after policy and recording.
func (ch *channel) clientRequests(reqs <-chan *ssh.Request) {
	s := ch.s
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			var p struct {
				Term                      string
				Cols, Rows, Width, Height uint32
				Modes                     string
			}
			if ssh.Unmarshal(req.Payload, &p) != nil {
				req.Reply(false, nil)
				continue
			}
			ch.pty.Store(true)
			if s.record(event.TerminalResize, event.TerminalSizeData{Channel: ch.id, Cols: p.Cols, Rows: p.Rows,
				Width: p.Width, Height: p.Height, Term: p.Term}, nil) != nil {
				req.Reply(false, nil)
				continue
			}
			ch.forward(req)
		case "window-change":
			var p struct{ Cols, Rows, Width, Height uint32 }
			if ssh.Unmarshal(req.Payload, &p) == nil {
				if s.record(event.TerminalResize, event.TerminalSizeData{Channel: ch.id, Cols: p.Cols, Rows: p.Rows,
					Width: p.Width, Height: p.Height}, nil) != nil {
					continue
				}
			}
			ch.forward(req)
		case "env":
			var p struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &p) != nil || !allowedEnv(p.Name) {
				req.Reply(false, nil)
				continue
			}
			ch.mu.Lock()
			ch.env[p.Name] = p.Value
			ch.mu.Unlock()
			ch.forward(req)
		case "shell", "exec", "subsystem":
			ch.start(req)
		case "signal", "break", "eow@openssh.com":
			ch.forward(req)
		case "x11-req":
			s.denied(ch.id, "x11", "", "X11 forwarding is not supported through the gateway")
			req.Reply(false, nil)
		case "auth-agent-req@openssh.com":
			if !s.settings.SSHAllows("agent_forwarding") {
				s.denied(ch.id, "auth-agent", "", "agent forwarding is not allowed by policy")
				req.Reply(false, nil)
				continue
			}
			ch.forward(req)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// forward sends a request to the target and its answer back to the client.
func (ch *channel) forward(req *ssh.Request) {
	ok, err := ch.uc.SendRequest(req.Type, req.WantReply, req.Payload)
	if req.WantReply {
		req.Reply(ok && err == nil, nil)
	}
}

// open lets input through (ready).
func (ch *channel) open() { ch.readyOnce.Do(func() { close(ch.ready) }) }

// start handles shell, exec and subsystem: the policy, the guardrails, then the recording.
func (ch *channel) start(req *ssh.Request) {
	s := ch.s
	ch.mu.Lock()
	if ch.started {
		ch.mu.Unlock()
		req.Reply(false, nil)
		return
	}
	ch.started = true
	defer ch.open() // once the request went on, or was refused
	pty := ch.pty.Load()
	env := map[string]string{}
	for k, v := range ch.env {
		env[k] = v
	}
	ch.mu.Unlock()
	d := event.ExecData{Channel: ch.id, Kind: req.Type, PTY: pty, Env: env, Login: s.c.upInfo.Login}
	if len(d.Env) == 0 {
		d.Env = nil
	}
	feature := req.Type
	var xfer *transfer
	switch req.Type {
	case "exec":
		var p struct{ Command string }
		if ssh.Unmarshal(req.Payload, &p) != nil {
			req.Reply(false, nil)
			return
		}
		d.Command = p.Command
		if len(d.Command) > maxCommand {
			d.Command, d.Truncated = d.Command[:maxCommand], true
		}
		xfer = parseTransfer(p.Command)
		if xfer != nil {
			feature = "sftp"
		}
		for _, re := range s.deny {
			if re.MatchString(p.Command) {
				s.record(event.Guardrail, event.GuardrailData{Action: "deny", Rule: s.rule, Reason: "command matches " + re.String(),
					Classes: []string{"ssh_command"}, Statement: d.Command}, nil)
				ch.refuse(req, fmt.Sprintf("airlock: command refused by policy %s: it matches %q", s.rule, re.String()))
				return
			}
		}
	case "subsystem":
		var p struct{ Name string }
		if ssh.Unmarshal(req.Payload, &p) != nil {
			req.Reply(false, nil)
			return
		}
		d.Command = p.Name
		if p.Name != "sftp" {
			s.denied(ch.id, "subsystem", p.Name, "only the sftp subsystem is relayed")
			req.Reply(false, nil)
			return
		}
		feature = "sftp"
	}
	if !s.settings.SSHAllows(feature) {
		what := map[string]string{"shell": "an interactive shell", "exec": "running commands", "sftp": "file transfer (sftp, scp, rsync)"}[feature]
		s.denied(ch.id, feature, d.Command, what+" is not allowed by policy")
		ch.refuse(req, fmt.Sprintf("airlock: %s is not allowed on %s by policy", what, s.c.target.Name))
		return
	}
	if feature == "sftp" && req.Type == "subsystem" {
		ch.sftp.Store(newSFTPObserver(ch))
	}
	if xfer != nil {
		ch.xfer.Store(xfer)
	}
	if s.record(event.Exec, d, nil) != nil {
		req.Reply(false, nil)
		return
	}
	ch.forward(req)
}

// refuse accepts a shell/exec request and answers it with a message on stderr and exit status
// 1, so that the client prints why instead of a bare "request failed".
func (ch *channel) refuse(req *ssh.Request, msg string) {
	req.Reply(true, nil)
	ch.wmu.Lock()
	if ch.pty.Load() {
		io.WriteString(ch.cc, msg+"\r\n")
	} else {
		io.WriteString(ch.cc.Stderr(), msg+"\n")
	}
	ch.cc.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
	ch.wmu.Unlock()
	ch.cc.CloseWrite()
	ch.uc.Close()
}

// tell writes msg for the client's user: on the terminal, or on stderr. The caller holds wmu.
func (ch *channel) tell(msg string) {
	if ch.pty.Load() {
		io.WriteString(ch.cc, "\r\n"+msg+"\r\n")
	} else {
		io.WriteString(ch.cc.Stderr(), msg+"\n")
	}
}

// abort tells the client why the session ends and closes the channel.
func (ch *channel) abort(msg string) {
	ch.out.end()
	ch.errOut.end()
	ch.wmu.Lock()
	if !ch.closed.Load() {
		ch.exitWithLocked(msg)
	}
	ch.closed.Store(true)
	ch.wmu.Unlock()
	ch.cc.CloseWrite()
	ch.cc.Close()
	ch.uc.Close()
}

// exitWithLocked ends the channel for the client with msg and exit status 255 (the gateway,
// not the program, ended it). It runs under wmu.
func (ch *channel) exitWithLocked(msg string) {
	ch.tell(msg)
	ch.cc.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{255}))
	ch.closed.Store(true)
}

// upstreamRequests holds the target's exit-status and exit-signal until the output before them
// is through, and passes other requests on.
func (ch *channel) upstreamRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "exit-status":
			var p struct{ Status uint32 }
			if ssh.Unmarshal(req.Payload, &p) == nil {
				st := int(p.Status)
				ch.s.record(event.ExecExit, event.ExitData{Channel: ch.id, Status: &st}, nil)
				ch.mu.Lock()
				ch.exit = exitText(&st, "")
				ch.mu.Unlock()
			}
			ch.mu.Lock()
			ch.exits = append(ch.exits, req)
			ch.mu.Unlock()
		case "exit-signal":
			var p struct {
				Signal     string
				CoreDumped bool
				Message    string
				Lang       string
			}
			if ssh.Unmarshal(req.Payload, &p) == nil {
				ch.s.record(event.ExecExit, event.ExitData{Channel: ch.id, Signal: p.Signal, Core: p.CoreDumped, Message: p.Message}, nil)
				ch.mu.Lock()
				ch.exit = exitText(nil, p.Signal)
				ch.mu.Unlock()
			}
			ch.mu.Lock()
			ch.exits = append(ch.exits, req)
			ch.mu.Unlock()
		default:
			ok, err := ch.cc.SendRequest(req.Type, req.WantReply, req.Payload)
			if req.WantReply {
				req.Reply(ok && err == nil, nil)
			}
		}
	}
}

// growBuf is a read buffer that doubles while reads fill it.
type growBuf struct{ b []byte }

func (g *growBuf) grow(n int) {
	if n == len(g.b) && len(g.b) < maxBuf {
		g.b = make([]byte, 2*len(g.b))
	}
}

// copyOut relays the target's output (stdout or stderr) to the client: masked, recorded, then
// forwarded. Bulk output that is not masked (reads that fill the largest buffer: a cat of a big
// file, a dump) goes on through pipeOut: each read is still recorded before it is forwarded, but
// the forwarding (encryption, the write to the client) of one read runs while the next is read
// and recorded.
func (ch *channel) copyOut(src io.Reader, ms *maskStream) {
	buf := growBuf{make([]byte, minBuf)}
	for {
		if len(buf.b) == maxBuf && ms.ms == nil && ch.xfer.Load() == nil && ch.sftp.Load() == nil {
			ch.pipeOut(src, ms, buf.b)
			return
		}
		n, err := src.Read(buf.b)
		if n > 0 {
			data := buf.b[:n]
			if xf := ch.xfer.Load(); xf != nil && ms.stream == "" {
				if werr := ch.rawOut(data); werr != nil {
					ch.uc.Close()
					drain(src)
					return
				}
				xf.toClient.Add(int64(n))
			} else if ch.sftp.Load() != nil && ms.stream == "" {
				if werr := ch.sftpOut(data); werr != nil {
					ch.uc.Close()
					drain(src)
					return
				}
			} else if werr := ms.write(data); werr != nil {
				ch.uc.Close()
				drain(src)
				return
			}
			buf.grow(n)
		}
		if err != nil {
			ms.end()
			return
		}
	}
}

func drain(r io.Reader) { io.Copy(io.Discard, r) }

// pipeBufs is how many reads pipeOut holds at once: one being read and recorded, the others
// recorded and being forwarded or waiting to be (4 measured a little better than 2).
const pipeBufs = 4

// pipeOut is copyOut for bulk unmasked output: this goroutine reads and records, and a second
// one forwards what was recorded, pipeBufs buffers of maxBuf circulating between them. Order
// is kept (one forwarder, in the order recorded), and every byte is in the recording before it
// is forwarded, as in copyOut.
func (ch *channel) pipeOut(src io.Reader, ms *maskStream, first []byte) {
	full := make(chan []byte, pipeBufs)
	free := make(chan []byte, pipeBufs)
	free <- first
	for range pipeBufs - 1 {
		free <- make([]byte, maxBuf)
	}
	ch.s.log.Debug("output pipelined", "channel", ch.id, "stream", ms.stream)
	var failed atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range full {
			if !failed.Load() {
				if err := ms.forward(b); err != nil {
					failed.Store(true)
					ch.uc.Close()
				}
			}
			free <- b[:cap(b)]
		}
	}()
	defer func() { close(full); <-done; ms.end() }()
	for {
		b := <-free
		if failed.Load() {
			drain(src)
			return
		}
		n, err := src.Read(b)
		if n > 0 {
			if werr := ms.record(b[:n], nil); werr != nil {
				failed.Store(true)
				ch.uc.Close()
				drain(src)
				return
			}
			full <- b[:n]
		}
		if err != nil {
			return
		}
	}
}

// rawOut forwards the target's output as it is (a file copy's protocol).
func (ch *channel) rawOut(data []byte) error {
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	if _, err := ch.cc.Write(data); err != nil {
		return err
	}
	ch.s.addTo(len(data))
	return nil
}

// sftpOut observes the target's sftp packets, records the operations they complete, and
// forwards them.
func (ch *channel) sftpOut(data []byte) error {
	ch.sftp.Load().fromServer(data)
	if err := ch.s.rec.Commit(); err != nil {
		ch.s.fail(endState{reason: "error", err: err})
		return err
	}
	return ch.rawOut(data)
}

// promptRE matches the end of an output line that asks for a secret the terminal will not echo.
var promptRE = regexp.MustCompile(`(?i)(password|passphrase|passcode|pin|verification code|token)( for [^:\r\n]*)?: *$`)

// watchPrompt follows the output's current line; at a password prompt, input is withheld from
// the recording until the next Enter.
func (ch *channel) watchPrompt(out []byte) {
	if !ch.pty.Load() {
		return
	}
	if i := lastLineBreak(out); i >= 0 {
		ch.line = append(ch.line[:0], out[i+1:]...)
	} else {
		ch.line = append(ch.line, out...)
	}
	if len(ch.line) > 256 {
		ch.line = append(ch.line[:0], ch.line[len(ch.line)-256:]...)
	}
	if len(ch.line) > 0 && promptRE.Match(ch.line) {
		ch.noEcho.Store(true)
	}
}

func lastLineBreak(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' || b[i] == '\r' {
			return i
		}
	}
	return -1
}

// copyIn relays the client's input to the target: recorded, then forwarded. EOF is passed on.
func (ch *channel) copyIn() {
	s := ch.s
	<-ch.ready
	buf := growBuf{make([]byte, minBuf)}
	for {
		n, err := ch.cc.Read(buf.b)
		if n > 0 {
			data := buf.b[:n]
			if xf := ch.xfer.Load(); xf != nil {
				xf.fromClient.Add(int64(n))
			} else if sf := ch.sftp.Load(); sf != nil {
				sf.fromClient(data)
				if bad := sf.malformed(); bad != "" {
					// The target would run a request other than the one the observer read.
					s.denied(ch.id, "sftp", bad, "a malformed sftp request is not relayed: what the target would do with it could not be recorded")
					ch.abort("airlock: the gateway ends this sftp session: the client sent " + bad)
					return
				}
				if cerr := s.rec.Commit(); cerr != nil {
					s.fail(endState{reason: "error", err: cerr})
					ch.uc.Close()
					return
				}
			} else {
				d := event.TerminalData{Channel: ch.id, Bytes: n}
				raw := data
				if ch.noEcho.Load() {
					d.Withheld, raw = true, nil
					for _, c := range data {
						if c == '\r' || c == '\n' {
							ch.noEcho.Store(false)
							break
						}
					}
				}
				if s.recordInput(d, raw, data) != nil {
					ch.uc.Close()
					return
				}
				ch.typed(data)
			}
			if _, werr := ch.uc.Write(data); werr != nil {
				drain(ch.cc)
				return
			}
			s.addFrom(n)
			buf.grow(n)
		}
		if err != nil {
			ch.uc.CloseWrite()
			return
		}
	}
}

// maskStream masks one output stream of a channel across read boundaries (masking.Stream): a
// tail that could be the first part of a value to mask is held back until the next read, a
// short timer (the target paused there), or the end of the stream, whichever comes first; the
// exit status is sent only after the stream's end, so it always follows all output.
type maskStream struct {
	ch     *channel
	stream string // "" stdout, "stderr"

	mu    sync.Mutex
	ms    *masking.Stream // nil: no masking
	timer *time.Timer
	ended bool
}

func newMaskStream(ch *channel, stream string) *maskStream {
	m := &maskStream{ch: ch, stream: stream}
	if mk := ch.s.masker; mk != nil {
		m.ms = mk.NewStream()
	}
	return m
}

func (m *maskStream) writer() io.Writer {
	if m.stream == "stderr" {
		return m.ch.cc.Stderr()
	}
	return m.ch.cc
}

// write masks, records and forwards data, holding back a tail that may be the start of a value
// to mask. The echo of what the user just typed is never held: it tells them nothing new, and
// holding it would make typing lag.
func (m *maskStream) write(data []byte) error {
	if m.ms == nil {
		return m.emit(data, nil)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timer != nil {
		m.timer.Stop()
	}
	hold := !(m.stream == "" && m.ch.echoed(data))
	out, hits := m.ms.Next(data, hold)
	err := m.emit(out, hits)
	if err == nil && m.ms.Held() > 0 && !m.ended {
		d := masking.HoldFor(m.ch.pty.Load())
		if m.timer == nil {
			m.timer = time.AfterFunc(d, m.flush)
		} else {
			m.timer.Reset(d)
		}
	}
	return err
}

// flush sends what is held back (the timer, or a session that ends).
func (m *maskStream) flush() {
	if m.ms == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ms.Held() == 0 {
		return
	}
	m.emit(m.ms.Flush())
}

// end flushes at the end of the stream; nothing is held after it.
func (m *maskStream) end() {
	if m.ms == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ended = true
	if m.timer != nil {
		m.timer.Stop()
	}
	if m.ms.Held() > 0 {
		m.emit(m.ms.Flush())
	}
}

// emit records masked data and forwards it to the client.
func (m *maskStream) emit(data []byte, hits []masking.Hit) error {
	if len(data) == 0 {
		return nil
	}
	if err := m.record(data, hits); err != nil {
		return err
	}
	return m.forward(data)
}

// record records output about to be forwarded (emit's first half).
func (m *maskStream) record(data []byte, hits []masking.Hit) error {
	ch := m.ch
	s := ch.s
	d := event.TerminalData{Channel: ch.id, Stream: m.stream, Bytes: len(data)}
	if len(hits) > 0 {
		d.Masked = map[string]int{}
		for _, h := range hits {
			d.Masked[h.Detector]++
		}
	}
	if m.stream == "" {
		ch.watchPrompt(data)
	}
	return s.record(event.TerminalOutput, d, data)
}

// forward sends recorded output to the client (emit's second half).
func (m *maskStream) forward(data []byte) error {
	ch := m.ch
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	if ch.closed.Load() {
		return errors.New("channel closed")
	}
	if _, err := m.writer().Write(data); err != nil {
		return err
	}
	ch.s.addTo(len(data))
	return nil
}

// maxEcho bounds the typed bytes kept to recognise their echo; echoTTL is how long they wait.
const (
	maxEcho = 64
	echoTTL = time.Second
)

// typed notes what the client typed on a terminal, so that its echo is not held back.
func (ch *channel) typed(data []byte) {
	if !ch.pty.Load() {
		return
	}
	ch.echoMu.Lock()
	defer ch.echoMu.Unlock()
	now := time.Now()
	if now.Sub(ch.echoAt) > echoTTL {
		ch.echo = ch.echo[:0]
	}
	ch.echo = append(ch.echo, data...)
	if len(ch.echo) > maxEcho {
		ch.echo = append(ch.echo[:0], ch.echo[len(ch.echo)-maxEcho:]...)
	}
	ch.echoAt = now
}

// echoed reports whether out is the echo of bytes the client just typed, and takes them and
// what was typed before them off (a terminal does not echo everything as typed: Enter comes
// back as \r\n, a password not at all).
func (ch *channel) echoed(out []byte) bool {
	if !ch.pty.Load() || len(out) == 0 {
		return false
	}
	ch.echoMu.Lock()
	defer ch.echoMu.Unlock()
	if len(ch.echo) == 0 || time.Since(ch.echoAt) > echoTTL {
		return false
	}
	i := bytes.Index(ch.echo, out)
	if i < 0 {
		return false
	}
	ch.echo = append(ch.echo[:0], ch.echo[i+len(out):]...)
	return true
}
