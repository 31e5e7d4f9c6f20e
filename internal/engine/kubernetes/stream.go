package kubernetes

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/airlock-gw/airlock/internal/event"
)

// Kubernetes remote-command channels (k8s.io/apimachinery's remotecommand constants): the
// first byte of each WebSocket message of the channel.k8s.io protocols.
var channelNames = map[byte]string{0: "stdin", 1: "stdout", 2: "stderr", 3: "error", 4: "resize", 255: "close"}

// maxFrame bounds one WebSocket frame the recorder follows; a larger one stops the recording
// of the stream's content (the bytes still pass) and is said in kube.response.end.
const maxFrame = 16 << 20

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
	fwd      *forwards // port-forward: its connections
	spdy     bool      // SPDY (port-forward): plain, or tunnelled when ws

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
	case ws && strings.Contains(subprotocol, "channel.k8s.io"):
		r.ws = true
		r.base64 = strings.Contains(subprotocol, "base64.")
		r.terminal = ri.Subresource == "exec" || ri.Subresource == "attach"
	case ws && r.fwd != nil && subprotocol == "": // the kubelet's default: binary channels
		r.ws = true
	case ws && r.fwd != nil && strings.HasPrefix(subprotocol, "SPDY/3.1+"):
		r.ws, r.spdy = true, true
	case isSPDY(upgrade) && r.fwd != nil:
		r.spdy = true
	}
	return r
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

// end records the end of what is still open (a port-forward's connections).
func (r *streamRecorder) end() {
	if r.fwd != nil {
		r.fwd.closeAll()
	}
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

// frameTap passes bytes through while parsing them as WebSocket frames (RFC 6455 section 5.2).
type frameTap struct {
	r   *streamRecorder
	src io.Reader
	dir string // client | target

	buf     []byte // bytes of the frame being read
	msg     []byte // payload of the message being assembled (fragments)
	msgOp   byte
	stopped bool // parsing gave up (oversized or malformed); bytes still pass

	spdy     *spdyTap      // a tunnelled SPDY port-forward: the messages' bytes are SPDY
	prefixed map[byte]bool // port-forward channels whose port prefix came already
}

func (t *frameTap) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 && !t.stopped {
		t.buf = append(t.buf, p[:n]...)
		if perr := t.parse(); perr != nil {
			t.stopped, t.buf, t.msg = true, nil, nil
			t.r.setErr(perr)
		}
		// Every message completed by these bytes is recorded, and durable, before they go on.
		if cerr := t.r.s.commit(); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
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
			return errors.New("a WebSocket frame over 16 MiB: the rest of the stream is not recorded")
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
			continue
		case op != 0 && fin: // a whole message
			t.msgOp, t.msg = op, payload
		case op != 0: // first frame of a message: assembled in a buffer of its own
			t.msgOp, t.msg = op, append([]byte(nil), payload...)
		default: // continuation
			t.msg = append(t.msg, payload...)
		}
		if len(t.msg) > maxFrame {
			return errors.New("a WebSocket message over 16 MiB: the rest of the stream is not recorded")
		}
		if fin {
			t.message(t.msg)
			t.msg = nil
		}
	}
}

// message records one channel message.
func (t *frameTap) message(m []byte) {
	if len(m) == 0 {
		return
	}
	if t.spdy != nil {
		if t.msgOp == 0x2 { // binary: SPDY bytes
			if err := t.spdy.feed(m); err != nil {
				t.r.setErr(err)
			}
		}
		return
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
		return
	}
	t.record(name, data)
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
