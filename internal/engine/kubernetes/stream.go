package kubernetes

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
)

// Kubernetes remote-command channels (k8s.io/apimachinery's remotecommand constants): the
// first byte of each WebSocket message of the channel.k8s.io protocols.
var channelNames = map[byte]string{0: "stdin", 1: "stdout", 2: "stderr", 3: "error", 4: "resize", 255: "close"}

// maxFrame bounds one WebSocket frame (and message) the recorder follows; a larger one ends
// the stream (errUnrecordable).
const maxFrame = 16 << 20

// errUnrecordable is a tap that can no longer follow its stream (a frame over maxFrame, bytes
// that are not the protocol it reads). The gateway then ends the stream, both ways, rather than
// pass on what it would not record (or, on a masked terminal, not mask), whatever the recording
// mode; kube.response.end says why.
var errUnrecordable = errors.New("the stream was ended because the gateway could not record it")

func unrecordable(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUnrecordable}, a...)...)
}

// streamRecorder records what crosses an upgraded connection. For the WebSocket protocols of
// exec, attach and port-forward (v4/v5.channel.k8s.io, and their base64 variants) it reads the
// frames as they pass and records each message before the last byte of that message is
// forwarded: for exec and attach, stdin, stdout, stderr and resize as the terminal events an
// SSH session has (terminal.input, terminal.output, terminal.resize, on the channel numbered
// by the request's id) and the error channel's Status as exec.exit, so that the stream exports
// to asciicast and replays like an SSH terminal; for port-forward, the forwarded connections
// (forward.go); other messages (close) as kube.stream events. A port-forward over SPDY, plain
// or tunnelled in WebSocket (SPDY/3.1+portforward.k8s.io), is followed frame by frame
// (forward.go); an exec or attach over SPDY is relayed stream by stream (spdy.go).
type streamRecorder struct {
	s        *session
	id       uint64
	ws       bool
	base64   bool
	terminal bool      // exec or attach: messages are terminal events
	tty      bool      // on a terminal (tty=true): masking holds a tail briefly
	fwd      *forwards // port-forward: its connections
	spdy     bool      // SPDY (port-forward): plain, or tunnelled when ws
	// out, when set, is where the target's frames go: the tap writes them itself, re-encoded,
	// because stdout and stderr are masked (masked holds a maskedOutput per channel).
	out    *frameOut
	masked map[byte]*maskedOutput

	// stop, when set, closes both sides of the stream (abort).
	stop func()

	mu   sync.Mutex
	fail error
}

func newStreamRecorder(s *session, id uint64, ri requestInfo, query map[string][]string, upgrade, subprotocol string) *streamRecorder {
	r := &streamRecorder{s: s, id: id}
	ws := strings.EqualFold(upgrade, "websocket")
	if ri.Subresource == "portforward" {
		r.fwd = newForwards(s, id, ri.Namespace, ri.Name, query["ports"])
	}
	switch {
	case ws && (strings.Contains(subprotocol, "channel.k8s.io") || subprotocol == ""):
		// No subprotocol: the kubelet's default, binary channels numbered as in the others.
		r.ws = true
		r.base64 = strings.Contains(subprotocol, "base64.")
		r.terminal = ri.Subresource == "exec" || ri.Subresource == "attach"
		r.tty = len(query["tty"]) > 0 && isTrue(query["tty"][0])
		if r.terminal && s.masker != nil {
			r.masked = map[byte]*maskedOutput{}
		}
	case ws && r.fwd != nil && strings.HasPrefix(subprotocol, "SPDY/3.1+"):
		r.ws, r.spdy = true, true
	case isSPDY(upgrade) && r.fwd != nil:
		r.spdy = true
	}
	return r
}

// upgradeRefused is what a client is told when the gateway refuses a protocol upgrade whose
// stream it could not record.
const upgradeRefused = "airlock records only the streams of exec, attach and port-forward, so it does not relay " +
	"other protocol upgrades (a watch over WebSocket, a proxy's upgrade); watches work over plain HTTP, which kubectl uses"

// streamed reports whether an upgrade of this request (before the target has chosen a
// protocol) is one the gateway follows: exec, attach or port-forward of a pod, over WebSocket
// or SPDY. Any other upgrade (a watch over WebSocket, a proxy's) is refused before the target
// is contacted: its bytes would pass unrecorded.
func streamed(ri requestInfo, upgrade string) bool {
	if ri.Group != "" || ri.Resource != "pods" || ri.Name == "" {
		return false
	}
	switch ri.Subresource {
	case "exec", "attach", "portforward":
		return strings.EqualFold(upgrade, "websocket") || isSPDY(upgrade)
	}
	return false
}

// recordable reports whether the gateway follows the stream of such a request in the protocol
// the target chose (its Upgrade and Sec-WebSocket-Protocol): the cases of newStreamRecorder,
// and SPDY exec and attach (relaySPDY). The gateway refuses any other.
func recordable(ri requestInfo, upgrade, subprotocol string) bool {
	switch {
	case !streamed(ri, upgrade):
		return false
	case isSPDY(upgrade):
		return true
	case subprotocol == "" || strings.Contains(subprotocol, "channel.k8s.io"):
		return true
	}
	return ri.Subresource == "portforward" && strings.HasPrefix(subprotocol, "SPDY/3.1+")
}

func (r *streamRecorder) fromClient(src io.Reader) io.Reader { return r.tap(src, "client") }

func (r *streamRecorder) fromTarget(src io.Reader) io.Reader { return r.tap(src, "target") }

func (r *streamRecorder) tap(src io.Reader, dir string) io.Reader {
	switch {
	case r.ws:
		t := &frameTap{r: r, src: src, dir: dir}
		if r.spdy {
			t.spdy = newSPDYTap(r.fwd, dir)
		}
		return t
	case r.spdy:
		return &spdyReader{r: r, tap: newSPDYTap(r.fwd, dir), src: src}
	}
	return src
}

// rewrites reports whether the target's frames are re-encoded (masked terminal output): the
// caller then gives the tap the client's writer with writeTo, and discards what it reads.
func (r *streamRecorder) rewrites() bool { return r.masked != nil }

// writeTo makes w the writer of the target's frames.
func (r *streamRecorder) writeTo(w io.Writer) { r.out = &frameOut{w: w} }

// sent is how many bytes the tap wrote to the client itself.
func (r *streamRecorder) sent() int64 {
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	return r.out.n
}

// endOutput sends what masking still holds back, once the target's side has ended.
func (r *streamRecorder) endOutput() {
	for _, mo := range r.masked {
		mo.end()
	}
}

// flushOutput sends what masking holds back, before a message that must follow all output
// (the exit status, a close).
func (r *streamRecorder) flushOutput() {
	for _, mo := range r.masked {
		mo.flush()
	}
}

// end records the end of what is still open (a port-forward's connections).
func (r *streamRecorder) end() {
	if r.fwd != nil {
		r.fwd.closeAll()
	}
}

// frameOut writes WebSocket frames to the client (unmasked, as a server's are), one at a time.
type frameOut struct {
	mu  sync.Mutex
	w   io.Writer
	n   int64
	buf []byte
	err error
}

// frame writes one frame whose payload is the parts joined.
func (o *frameOut) frame(fin bool, op byte, parts ...[]byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	b := o.buf[:0]
	if fin {
		op |= 0x80
	}
	b = append(b, op)
	switch {
	case size < 126:
		b = append(b, byte(size))
	case size < 1<<16:
		b = append(b, 126, byte(size>>8), byte(size))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(size))
	}
	for _, p := range parts {
		b = append(b, p...)
	}
	o.buf = b
	if cap(o.buf) > 1<<20 {
		o.buf = nil
	}
	return o.write(b)
}

func (o *frameOut) write(b []byte) error {
	n, err := o.w.Write(b)
	o.n += int64(n)
	if err != nil {
		o.err = errClientGone
	}
	return o.err
}

func (r *streamRecorder) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fail
}

func (r *streamRecorder) setErr(err error) {
	r.mu.Lock()
	if r.fail == nil {
		r.fail = err
	}
	r.mu.Unlock()
}

// abort ends the stream, both ways, because a tap cannot follow it (err is errUnrecordable):
// the caller forwards nothing more.
func (r *streamRecorder) abort(err error) error {
	r.setErr(err)
	if r.stop != nil {
		r.stop()
	}
	return err
}

// frameTap passes bytes through while parsing them as WebSocket frames (RFC 6455 section 5.2).
type frameTap struct {
	r   *streamRecorder
	src io.Reader
	dir string // client | target

	buf   []byte // bytes of the frame being read
	back  []byte // buf's memory, reused from read to read
	msg   []byte // payload of the message being assembled (fragments)
	msgOp byte

	spdy     *spdyTap      // a tunnelled SPDY port-forward: the messages' bytes are SPDY
	prefixed map[byte]bool // port-forward channels whose port prefix came already
}

func (t *frameTap) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 {
		t.grow(n)
		t.buf = append(t.buf, p[:n]...)
		if perr := t.parse(); perr != nil {
			// The client went away, the recording failed, or the tap cannot follow the
			// stream: none of these bytes goes on, nor anything after them.
			t.buf, t.msg = nil, nil
			if errors.Is(perr, errUnrecordable) {
				return 0, t.r.abort(perr)
			}
			return 0, perr
		}
		// Every message completed by these bytes is recorded, and durable, before they go on.
		if cerr := t.r.s.commit(); cerr != nil {
			return 0, cerr
		}
		t.compact()
	}
	return n, err
}

// compact lets the next read start at the front of the tap's buffer when nothing of a frame
// is left in it: the recorder let go of the payloads it was given at Commit, so the memory is
// reused from read to read instead of a new array per read.
func (t *frameTap) compact() {
	if len(t.buf) > 0 {
		return // grow moves the incomplete frame when it needs the room
	}
	if cap(t.back) > 32*maxTapBuffer { // grown for a very large frame: let it go
		t.back = nil
	}
	t.buf = t.back[:0]
}

// grow makes room in t.buf for n more bytes: at its end if there is room there, else by moving
// the incomplete frame to the front of t.back (once per filling of the buffer, so that a frame
// longer than a read is not moved at every read), else in a larger buffer.
func (t *frameTap) grow(n int) {
	if len(t.buf)+n <= cap(t.buf) {
		return
	}
	if len(t.buf)+n <= cap(t.back) && len(t.buf) <= cap(t.back)/2 {
		// t.buf is the end of t.back (grow put it there; parse only moves its start).
		t.buf = t.back[:copy(t.back[:cap(t.back)], t.buf)]
		return
	}
	nb := make([]byte, len(t.buf), max(2*(len(t.buf)+n), maxTapBuffer/4, cap(t.back)))
	copy(nb, t.buf)
	t.buf, t.back = nb, nb
}

// maxTapBuffer is the size of buffer the tap keeps between reads (frames up to it, plus a read).
const maxTapBuffer = 256 << 10

// rewrite returns where the tap writes the frames it read, when it re-encodes them (the
// target's frames of a masked terminal).
func (t *frameTap) rewrite() *frameOut {
	if t.dir == "target" && t.r.out != nil {
		return t.r.out
	}
	return nil
}

// parse consumes the complete frames at the front of t.buf.
func (t *frameTap) parse() error {
	for {
		b := t.buf
		if len(b) < 2 {
			return nil
		}
		fin, op := b[0]&0x80 != 0, b[0]&0x0f
		masked := b[1]&0x80 != 0
		length := uint64(b[1] & 0x7f)
		hdr := 2
		switch length {
		case 126:
			if len(b) < 4 {
				return nil
			}
			length, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return nil
			}
			length, hdr = binary.BigEndian.Uint64(b[2:]), 10
		}
		if length > maxFrame {
			return unrecordable("a WebSocket frame of %d bytes from the %s, over the 16 MiB the gateway follows", length, t.dir)
		}
		var key []byte
		if masked {
			if len(b) < hdr+4 {
				return nil
			}
			key, hdr = b[hdr:hdr+4], hdr+4
		}
		if uint64(len(b)-hdr) < length {
			return nil
		}
		// The payload is recorded from t.buf itself (the bytes forwarded are the caller's): the
		// recorder keeps it until Commit, and t.buf's consumed bytes are never written again
		// (appends go past its end). A client's frames are unmasked in place.
		payload := b[hdr : hdr+int(length) : hdr+int(length)]
		if masked {
			unmask(payload, key)
		}
		t.buf = b[hdr+int(length):]
		if len(t.buf) == 0 {
			t.buf = nil
		}
		switch {
		case op >= 0x8: // control: close, ping, pong
			if op == 0x8 {
				t.record("close", payload)
			}
			if out := t.rewrite(); out != nil {
				t.r.flushOutput()
				if err := t.r.s.commit(); err != nil {
					return err
				}
				if err := out.frame(fin, op, payload); err != nil {
					return err
				}
			}
			continue
		case op != 0 && fin: // a whole message
			t.msgOp, t.msg = op, payload
		case op != 0: // first frame of a message: assembled in a buffer of its own
			t.msgOp, t.msg = op, append([]byte(nil), payload...)
		default: // continuation
			t.msg = append(t.msg, payload...)
		}
		if len(t.msg) > maxFrame {
			return unrecordable("a WebSocket message over 16 MiB from the %s, more than the gateway follows", t.dir)
		}
		if fin {
			if err := t.message(t.msg); err != nil {
				return err
			}
			t.msg = nil
		}
	}
}

// message records one channel message (and, when the tap re-encodes, sends it).
func (t *frameTap) message(m []byte) error {
	if out := t.rewrite(); out != nil {
		return t.rewriteMessage(out, m)
	}
	if len(m) > 0 {
		return t.messageRecord(m)
	}
	return nil
}

// messageRecord records one message; an error is a tunnelled SPDY stream the tap cannot follow.
func (t *frameTap) messageRecord(m []byte) error {
	if t.spdy != nil {
		if t.msgOp == 0x2 { // binary: SPDY bytes
			return t.spdy.feed(m)
		}
		return nil
	}
	ch := m[0]
	data := m[1:]
	if t.r.base64 {
		ch -= '0'
	}
	name, ok := channelNames[ch]
	if !ok {
		name = "channel-" + string(rune('0'+ch%10))
	}
	if t.r.base64 && name != "close" {
		if dec, err := decodeBase64(data); err == nil {
			data = dec
		}
	}
	if t.r.fwd != nil && name != "close" {
		first := false
		if t.dir == "target" {
			if t.prefixed == nil {
				t.prefixed = map[byte]bool{}
			}
			first = !t.prefixed[ch]
			t.prefixed[ch] = true
		}
		t.r.fwd.channelMessage(ch, t.dir, data, first)
		return nil
	}
	t.record(name, data)
	return nil
}

// rewriteMessage sends a message of the target on a masked terminal: stdout and stderr masked
// (each by its maskedOutput, which records and sends what it does not hold back), anything
// else after the output held back, as it came.
func (t *frameTap) rewriteMessage(out *frameOut, m []byte) error {
	if len(m) > 0 {
		ch := m[0]
		if t.r.base64 {
			ch -= '0'
		}
		if ch == 1 || ch == 2 {
			return t.maskedOutput(out, m[0], ch).write(t.payload(m))
		}
	}
	t.r.flushOutput()
	if len(m) > 0 {
		if err := t.messageRecord(m); err != nil {
			return err
		}
	}
	if err := t.r.s.commit(); err != nil {
		return err
	}
	return out.frame(true, t.msgOp, m)
}

// maskedOutput returns the masked stream of channel ch (1 stdout, 2 stderr), whose frames
// start with the byte lead.
func (t *frameTap) maskedOutput(out *frameOut, lead, ch byte) *maskedOutput {
	if mo := t.r.masked[ch]; mo != nil {
		return mo
	}
	stream, op, id, s := "", t.msgOp, uint32(t.r.id), t.r.s
	if ch == 2 {
		stream = "stderr"
	}
	b64 := t.r.base64
	mo := newMaskedOutput(s.masker, masking.HoldFor(t.r.tty), func(data []byte, hits []masking.Hit) error {
		s.record(event.TerminalOutput, terminalOutput(id, stream, data, hits), data)
		if err := s.commit(); err != nil {
			return err
		}
		if b64 {
			return out.frame(true, op, []byte{lead}, []byte(base64.StdEncoding.EncodeToString(data)))
		}
		return out.frame(true, op, []byte{lead}, data)
	})
	t.r.masked[ch] = mo
	return mo
}

// payload is a channel message's data: after the channel byte, base64-decoded in the base64
// protocols.
func (t *frameTap) payload(m []byte) []byte {
	data := m[1:]
	if t.r.base64 {
		if dec, err := decodeBase64(data); err == nil {
			data = dec
		}
	}
	return data
}

func (t *frameTap) record(channel string, data []byte) {
	if t.r.terminal && t.recordTerminal(channel, data) {
		return
	}
	sd := event.KubeStreamData{ID: t.r.id, From: t.dir, Channel: channel, Bytes: len(data)}
	if channel == "resize" {
		var sz struct{ Width, Height uint16 }
		if json.Unmarshal(data, &sz) == nil {
			sd.Cols, sd.Rows = sz.Width, sz.Height
		}
	}
	raw := data
	if lim := t.r.s.eng.bodyLimit; len(raw) > lim {
		raw, sd.Truncated = raw[:lim], true
	}
	t.r.s.record(event.KubeStream, sd, raw)
}

// unmask undoes the masking of a client's frame payload (RFC 6455 section 5.3).
func unmask(p, key []byte) {
	var k [4]byte
	copy(k[:], key)
	for i := range p {
		p[i] ^= k[i&3]
	}
}

func decodeBase64(b []byte) ([]byte, error) {
	return base64.StdEncoding.DecodeString(string(b))
}

// recordTerminal records a message of an exec or attach as a terminal event, and reports
// whether it did.
func (t *frameTap) recordTerminal(channel string, data []byte) bool {
	ch := uint32(t.r.id)
	s := t.r.s
	switch {
	case channel == "stdin" && t.dir == "client":
		s.record(event.TerminalInput, event.TerminalData{Channel: ch, Bytes: len(data)}, data)
	case channel == "stdout" && t.dir == "target":
		s.record(event.TerminalOutput, event.TerminalData{Channel: ch, Bytes: len(data)}, data)
	case channel == "stderr" && t.dir == "target":
		s.record(event.TerminalOutput, event.TerminalData{Channel: ch, Stream: "stderr", Bytes: len(data)}, data)
	case channel == "resize" && t.dir == "client":
		var sz struct{ Width, Height uint16 }
		if json.Unmarshal(data, &sz) != nil || sz.Width == 0 || sz.Height == 0 {
			return false
		}
		s.record(event.TerminalResize, event.TerminalSizeData{Channel: ch, Cols: uint32(sz.Width), Rows: uint32(sz.Height)}, nil)
	case channel == "error" && t.dir == "target":
		s.record(event.ExecExit, exitData(ch, data), nil)
	default:
		return false
	}
	return true
}

// exitData reads the Status that the error channel of an exec carries when the command ends:
// Success, or Failure with reason NonZeroExitCode and the code in details.causes, or another
// failure (the command could not run) whose message is kept.
func exitData(ch uint32, data []byte) event.ExitData {
	var st struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
		Details struct {
			Causes []struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	}
	d := event.ExitData{Channel: ch}
	if err := json.Unmarshal(data, &st); err != nil {
		d.Message = string(data)
		return d
	}
	if st.Status == "Success" {
		code := 0
		d.Status = &code
		return d
	}
	for _, c := range st.Details.Causes {
		if c.Reason == "ExitCode" {
			if code, err := strconv.Atoi(c.Message); err == nil {
				d.Status = &code
			}
		}
	}
	if d.Status == nil || st.Reason != "NonZeroExitCode" {
		d.Message = st.Message
	}
	return d
}
