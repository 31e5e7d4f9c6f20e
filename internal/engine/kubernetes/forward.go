package kubernetes

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/spdystream/spdy"

	"github.com/airlock-gw/airlock/internal/event"
)

// A port-forward (kubectl port-forward) carries TCP connections to a pod's ports. Each is
// recorded as an SSH -L forward is (forward events when it opens and when it closes, with the
// bytes each way), and its content too: every piece that crosses, each way, is a forward.data
// event recorded before it is passed on, up to the engine's forward limit per direction; the
// closing forward event has the length and SHA-256 of all that crossed each way, and the
// message of the connection's error stream (why the kubelet could not connect, say).
//
// The gateway reads the port-forward protocols as they pass, without changing a byte:
//   - SPDY/3.1 (kubectl before 1.31, or KUBECTL_PORT_FORWARD_WEBSOCKETS=false): the client
//     opens a pair of streams per connection, an error stream and a data stream, whose headers
//     name the port and the connection (requestID); their data frames carry the bytes.
//   - the same SPDY tunnelled in WebSocket binary messages (SPDY/3.1+portforward.k8s.io,
//     kubectl 1.31+).
//   - the kubelet's WebSocket channel protocol (v4.channel.k8s.io and its base64 variant,
//     for other clients): one connection per requested port, channel 2i its data and 2i+1 its
//     error, the first message of each channel from the target prefixed with the port number
//     (two bytes, little-endian).
//
// SPDY control frames (whose headers are zlib-compressed across the connection) are decoded
// with the SPDY framer that k8s.io/streaming uses (github.com/moby/spdystream/spdy); data
// frames, an 8-byte header and the payload, are followed as they arrive so that bulk data is
// never buffered whole.

// forwards records the connections of one port-forward request.
type forwards struct {
	s     *session
	req   uint64   // the upgraded request's id
	pod   string   // namespace/name
	ports []string // the request's ports parameters (the channel protocol's connections)
	limit int64    // bytes kept per direction of a connection

	mu      sync.Mutex // the two directions' taps run in goroutines of their own
	conns   map[string]*fwdConn
	order   []*fwdConn
	streams map[uint32]fwdStream // SPDY stream id -> its connection and role
}

type fwdStream struct {
	c    *fwdConn
	data bool // the data stream (else the error stream)
}

// fwdConn is one forwarded connection.
type fwdConn struct {
	d      event.ForwardData
	n      [2]int64 // bytes each way: [0] from the client, [1] to the client
	sum    [2]hash.Hash
	errMsg []byte
	done   [2]bool
	// errStream: the connection has an error stream of its own (SPDY), which the target ends
	// after writing why the connection failed, if it did; errDone: it has.
	errStream, errDone bool
	closed             bool
}

// maxErrorMessage bounds what of a connection's error stream is kept.
const maxErrorMessage = 4 << 10

func newForwards(s *session, req uint64, namespace, name string, ports []string) *forwards {
	pod := name
	if namespace != "" {
		pod = namespace + "/" + name
	}
	var ps []string
	for _, p := range ports {
		ps = append(ps, strings.Split(p, ",")...)
	}
	return &forwards{s: s, req: req, pod: pod, ports: ps, limit: s.eng.forwardLimit,
		conns: map[string]*fwdConn{}, streams: map[uint32]fwdStream{}}
}

func way(from string) int {
	if from == "client" {
		return 0
	}
	return 1
}

// open returns the connection named key, recording its opening the first time.
func (f *forwards) open(key, port string) *fwdConn {
	if c, ok := f.conns[key]; ok {
		return c
	}
	c := &fwdConn{d: event.ForwardData{Channel: uint32(f.s.nextID.Add(1)), Kind: "portforward",
		Destination: f.pod + ":" + port, Request: f.req}}
	c.sum[0], c.sum[1] = sha256.New(), sha256.New()
	f.conns[key] = c
	f.order = append(f.order, c)
	f.s.record(event.Forward, c.d, nil)
	return c
}

// data records bytes that crossed c one way.
func (f *forwards) data(c *fwdConn, from string, p []byte) {
	if len(p) == 0 || c.closed {
		return
	}
	i := way(from)
	before := c.n[i]
	c.n[i] += int64(len(p))
	c.sum[i].Write(p)
	if before >= f.limit {
		return // past the limit: the closing event has the length and hash
	}
	kept := p[:min(int64(len(p)), f.limit-before)]
	f.s.record(event.ForwardBytes, event.ForwardBytesData{Channel: c.d.Channel, From: from, Bytes: len(p), Truncated: len(kept) < len(p)}, kept)
}

// errorText keeps what the target wrote on c's error stream.
func (f *forwards) errorText(c *fwdConn, p []byte) {
	if n := maxErrorMessage - len(c.errMsg); n > 0 {
		c.errMsg = append(c.errMsg, p[:min(n, len(p))]...)
	}
}

// end notes that one way of c's data is over; once both are, and the target has ended c's
// error stream if it has one, c is closed. The error's message may come after the data's ends.
func (f *forwards) end(c *fwdConn, from string) {
	c.done[way(from)] = true
	f.closeIfOver(c)
}

// errorEnd notes that the target ended c's error stream.
func (f *forwards) errorEnd(c *fwdConn) {
	c.errDone = true
	f.closeIfOver(c)
}

func (f *forwards) closeIfOver(c *fwdConn) {
	if c.done[0] && c.done[1] && (!c.errStream || c.errDone) {
		f.close(c)
	}
}

func (f *forwards) close(c *fwdConn) {
	if c.closed {
		return
	}
	c.closed = true
	d := c.d
	d.Closed = true
	d.BytesFromClient, d.BytesToClient = c.n[0], c.n[1]
	d.SHA256FromClient = hex.EncodeToString(c.sum[0].Sum(nil))
	d.SHA256ToClient = hex.EncodeToString(c.sum[1].Sum(nil))
	d.Truncated = c.n[0] > f.limit || c.n[1] > f.limit
	d.Error = strings.TrimSpace(string(c.errMsg))
	f.s.record(event.Forward, d, nil)
}

// closeAll closes the connections still open when the port-forward ends.
func (f *forwards) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.order {
		f.close(c)
	}
}

// channelMessage records one message of the WebSocket channel protocol (v4.channel.k8s.io):
// channel 2i is the data of the i-th requested port, 2i+1 its error stream. The target's first
// message on each channel starts with the port number; prefixed says it is that one.
func (f *forwards) channelMessage(ch byte, from string, data []byte, prefixed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx := int(ch / 2)
	port := ""
	if idx < len(f.ports) {
		port = f.ports[idx]
	}
	if prefixed {
		if len(data) < 2 {
			return
		}
		if port == "" {
			port = strconv.Itoa(int(binary.LittleEndian.Uint16(data)))
		}
		data = data[2:]
	}
	c := f.open(strconv.Itoa(idx), port)
	switch {
	case ch%2 == 0:
		f.data(c, from, data)
	case from == "target":
		f.errorText(c, data)
	}
}

// spdyTap follows one direction of a SPDY connection that carries a port-forward.
type spdyTap struct {
	f   *forwards
	dir string // client | target

	hdr    []byte // the header of the frame being read, then (control) the whole frame
	ctl    bool   // reading a control frame's payload into hdr
	need   int    // payload bytes of the current frame still to come
	stream uint32 // the data frame's stream
	fin    bool   // the data frame ends its stream (this way)

	framer  *spdy.Framer
	src     frameSource
	stopped bool
}

// maxControlFrame bounds a SPDY control frame the tap decodes (a port-forward's are a few
// hundred bytes); a larger one ends the stream (errUnrecordable).
const maxControlFrame = 1 << 20

func newSPDYTap(f *forwards, dir string) *spdyTap {
	t := &spdyTap{f: f, dir: dir}
	// Header blocks are compressed across the whole connection (one zlib stream per
	// direction): the framer reads every control frame of this direction, in order.
	t.framer, _ = spdy.NewFramerWithOptions(io.Discard, &t.src, spdy.WithMaxControlFramePayloadSize(maxControlFrame))
	return t
}

// frameSource hands the framer one control frame at a time.
type frameSource struct{ b []byte }

func (r *frameSource) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// feed follows the bytes p of the connection, recording what they complete. An error
// (errUnrecordable) means the bytes are not SPDY the tap understands: it stops, and the
// caller ends the stream.
func (t *spdyTap) feed(p []byte) error {
	if t.stopped {
		return nil
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for len(p) > 0 {
		switch {
		case t.need > 0 && !t.ctl: // in a data frame's payload
			k := min(t.need, len(p))
			t.dataBytes(p[:k])
			t.need -= k
			p = p[k:]
			if t.need == 0 {
				t.dataEnd()
			}
		case t.ctl: // in a control frame
			k := min(t.need, len(p))
			t.hdr = append(t.hdr, p[:k]...)
			t.need -= k
			p = p[k:]
			if t.need == 0 {
				if err := t.control(); err != nil {
					return t.stop(err)
				}
			}
		default: // a frame's header
			k := min(8-len(t.hdr), len(p))
			t.hdr = append(t.hdr, p[:k]...)
			p = p[k:]
			if len(t.hdr) < 8 {
				return nil
			}
			word := binary.BigEndian.Uint32(t.hdr[4:])
			length, flags := int(word&0xffffff), byte(word>>24)
			if t.hdr[0]&0x80 != 0 {
				if length > maxControlFrame {
					return t.stop(fmt.Errorf("a SPDY control frame of %d bytes", length))
				}
				t.ctl, t.need = true, length
				if length == 0 {
					if err := t.control(); err != nil {
						return t.stop(err)
					}
				}
				continue
			}
			t.stream = binary.BigEndian.Uint32(t.hdr) & 0x7fffffff
			t.fin = flags&byte(spdy.DataFlagFin) != 0
			t.need = length
			t.hdr = t.hdr[:0]
			if length == 0 {
				t.dataEnd()
			}
		}
	}
	return nil
}

func (t *spdyTap) stop(err error) error {
	t.stopped = true
	t.hdr, t.src.b = nil, nil
	return unrecordable("port-forward: %v", err)
}

func (t *spdyTap) dataBytes(p []byte) {
	st, ok := t.f.streams[t.stream]
	switch {
	case !ok:
	case st.data:
		t.f.data(st.c, t.dir, p)
	case t.dir == "target":
		t.f.errorText(st.c, p)
	}
}

func (t *spdyTap) dataEnd() {
	if t.fin {
		t.finish(t.stream)
	}
}

// finish notes the end of a stream this way (FIN).
func (t *spdyTap) finish(id uint32) {
	st, ok := t.f.streams[id]
	switch {
	case !ok:
	case st.data:
		t.f.end(st.c, t.dir)
	case t.dir == "target":
		t.f.errorEnd(st.c)
	}
}

// control decodes the control frame in t.hdr.
func (t *spdyTap) control() error {
	t.src.b = t.hdr
	fr, err := t.framer.ReadFrame()
	t.src.b, t.hdr, t.ctl, t.need = nil, t.hdr[:0], false, 0
	if err != nil {
		return err
	}
	switch fr := fr.(type) {
	case *spdy.SynStreamFrame:
		if t.dir != "client" {
			return nil // kubectl opens every stream
		}
		h := fr.Headers
		key := h.Get("requestID")
		if key == "" { // protocol v1 has no request id: one connection per stream pair at a time
			key = "port " + h.Get("port")
		}
		c := t.f.open(key, h.Get("port"))
		data := h.Get("streamType") == "data"
		c.errStream = c.errStream || !data
		t.f.streams[uint32(fr.StreamId)] = fwdStream{c: c, data: data}
		if fr.CFHeader.Flags&spdy.ControlFlagFin != 0 {
			t.finish(uint32(fr.StreamId))
		}
	case *spdy.SynReplyFrame:
		if fr.CFHeader.Flags&spdy.ControlFlagFin != 0 {
			t.finish(uint32(fr.StreamId))
		}
	case *spdy.HeadersFrame:
		if fr.CFHeader.Flags&spdy.ControlFlagFin != 0 {
			t.finish(uint32(fr.StreamId))
		}
	case *spdy.RstStreamFrame:
		if st, ok := t.f.streams[uint32(fr.StreamId)]; ok && st.data {
			t.f.close(st.c)
		} else if ok {
			t.f.errorEnd(st.c)
		}
	}
	return nil
}

// spdyReader passes a SPDY port-forward connection's bytes on, recording what they carry
// before the caller forwards them.
type spdyReader struct {
	r   *streamRecorder
	tap *spdyTap
	src io.Reader
}

func (s *spdyReader) Read(p []byte) (int, error) {
	n, err := s.src.Read(p)
	if n > 0 {
		if ferr := s.tap.feed(p[:n]); ferr != nil {
			return 0, s.r.abort(ferr)
		}
		if cerr := s.r.s.commit(); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}
