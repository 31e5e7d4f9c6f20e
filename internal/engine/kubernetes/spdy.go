package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
)

// An exec or attach over SPDY (kubectl before 1.30, or with KUBECTL_REMOTE_COMMAND_WEBSOCKETS
// off) is a SPDY/3.1 connection whose streams the client creates, one per channel, named by
// their streamType header: error, stdin, stdout, stderr, resize. The gateway ends SPDY on both
// sides (k8s.io/streaming's SPDY connections): for each stream the client creates it creates
// the same stream to the API server, then copies each stream's bytes both ways, recording
// them as the WebSocket protocols' are (terminal.input, terminal.output, terminal.resize,
// exec.exit) before they go on.

// isSPDY reports whether an Upgrade header names SPDY/3.1.
func isSPDY(upgrade string) bool {
	return strings.HasPrefix(strings.ToLower(upgrade), "spdy/")
}

// relaySPDY relays the streams of an upgraded SPDY connection until either side closes it,
// and returns the bytes each way.
func (s *session) relaySPDY(cliRaw net.Conn, upRaw net.Conn, id uint64, tty bool) (toUp, toCli int64, err error) {
	var up, cli httpstream.Connection
	lc := &connector.LostConn{Conn: upRaw}
	up, err = spdy.NewClientConnection(lc)
	if err != nil {
		return 0, 0, err
	}
	var n struct{ up, cli atomic.Int64 }
	var wg, toClient sync.WaitGroup // every copier; those from the target
	var failOnce sync.Once
	var fail error
	setFail := func(e error) { failOnce.Do(func() { fail = e }) }
	handler := func(cs httpstream.Stream, replySent <-chan struct{}) error {
		hdr := cs.Headers().Clone()
		us, err := up.CreateStream(hdr)
		if err != nil {
			return err
		}
		kind := hdr.Get("streamType")
		wg.Add(2)
		toClient.Add(1)
		go func() { // clientToTarget
			defer wg.Done()
			m, err := s.copyStream(us, cs, kind, "client", id, tty, nil)
			n.up.Add(m)
			if err != nil {
				setFail(err)
			}
			us.Close() // half-close: the client is done writing
		}()
		go func() { // targetToClient
			defer wg.Done()
			defer toClient.Done()
			m, err := s.copyStream(cs, us, kind, "target", id, tty, replySent)
			n.cli.Add(m)
			if err != nil {
				setFail(err)
			}
			if kind == "error" {
				<-replySent
				s.tellLostSPDY(cs, lc)
			}
			cs.Close()
		}()
		return nil
	}
	cli, err = spdy.NewServerConnection(cliRaw, handler)
	if err != nil {
		up.Close()
		return 0, 0, err
	}
	delivered := make(chan struct{})
	go func() { toClient.Wait(); close(delivered) }()
	select {
	case <-cli.CloseChan():
		// The client is gone: nothing more can reach it.
	case <-up.CloseChan():
		// What the target sent before it closed is copied when its streams end (EOF), and
		// each stream is then half-closed. The client closes the connection once it has read
		// the error stream; closing it first would reset streams whose last data it may not
		// have taken yet (kubectl then misses the exit status).
		grace := time.After(5 * time.Second)
		select {
		case <-delivered:
			select {
			case <-cli.CloseChan():
			case <-grace:
			}
		case <-grace:
		}
	case <-s.ctx.Done():
	}
	cli.Close()
	up.Close()
	wg.Wait()
	if lost := lc.Lost(); lost != nil {
		fail = lost // the end of the target's side, whatever the copiers saw
	}
	return n.up.Load(), n.cli.Load(), fail
}

// copyStream copies one SPDY stream's bytes from src to dst, recording each piece by the
// stream's type before it goes on. Pieces from the target wait for the stream's reply to the
// client (replySent). stdout and stderr are masked when the policy says so (mask.go). The
// target's error stream (the exit Status) is held until it is a whole JSON value (or ends, or
// reaches maxStatus), recorded as exec.exit, and only then forwarded: client-go reads that
// stream to its end before it decodes it, so holding it back delays nothing.
func (s *session) copyStream(dst io.Writer, src io.Reader, kind, from string, id uint64, tty bool, replySent <-chan struct{}) (int64, error) {
	ch := uint32(id)
	buf := make([]byte, 32<<10)
	var total int64
	var resize, status []byte
	exited := false // exec.exit is recorded: the error stream's later bytes are kube.stream
	forward := func(p []byte) error {
		if replySent != nil {
			<-replySent
			replySent = nil
		}
		if _, err := dst.Write(p); err != nil {
			return errClientGone
		}
		total += int64(len(p))
		return nil
	}
	// sendStatus records the Status held so far as exec.exit and, once that is durable,
	// forwards it.
	sendStatus := func() error {
		exited = true
		s.record(event.ExecExit, exitData(ch, status), nil)
		if err := s.commit(); err != nil {
			return err
		}
		if err := forward(status); err != nil {
			return nil // the other side went away
		}
		status = nil
		return nil
	}
	var mo *maskedOutput
	if s.masker != nil && from == "target" && (kind == "stdout" || kind == "stderr") {
		stream := ""
		if kind == "stderr" {
			stream = "stderr"
		}
		mo = newMaskedOutput(s.masker, masking.HoldFor(tty), func(out []byte, hits []masking.Hit) error {
			s.record(event.TerminalOutput, terminalOutput(ch, stream, out, hits), out)
			if err := s.commit(); err != nil {
				return err
			}
			return forward(out)
		})
	}
	for {
		m, rerr := src.Read(buf)
		if m > 0 && mo != nil {
			if err := mo.write(buf[:m]); err != nil {
				mo.end()
				return total, ignoreGone(err)
			}
		} else if m > 0 && kind == "error" && from == "target" && !exited {
			status = append(status, buf[:m]...)
			if json.Valid(status) || len(status) >= maxStatus {
				if err := sendStatus(); err != nil {
					return total, err
				}
			}
		} else if m > 0 {
			p := buf[:m]
			switch {
			case kind == "stdin" && from == "client":
				s.record(event.TerminalInput, event.TerminalData{Channel: ch, Bytes: m}, p)
			case kind == "stdout" && from == "target":
				s.record(event.TerminalOutput, event.TerminalData{Channel: ch, Bytes: m}, p)
			case kind == "stderr" && from == "target":
				s.record(event.TerminalOutput, event.TerminalData{Channel: ch, Stream: "stderr", Bytes: m}, p)
			case kind == "resize" && from == "client":
				resize = s.recordResizes(ch, append(resize, p...))
			default:
				s.record(event.KubeStream, event.KubeStreamData{ID: id, From: from, Channel: kind, Bytes: m}, nil)
			}
			if err := s.commit(); err != nil {
				return total, err
			}
			if err := forward(p); err != nil {
				return total, nil // the other side went away
			}
		}
		if rerr != nil {
			// EOF, or the stream was reset: the connection's end says why.
			if len(status) > 0 && !exited { // a Status that is not JSON: recorded as it is
				return total, sendStatus()
			}
			if mo != nil {
				return total, ignoreGone(mo.end())
			}
			return total, nil
		}
	}
}

// maxStatus bounds the exit Status held back to be recorded (a Status is a few hundred bytes).
const maxStatus = 64 << 10

// errClientGone is a write to the client that failed: the client went away, which is no error
// of the recording's.
var errClientGone = errors.New("the client went away")

func ignoreGone(err error) error {
	if errors.Is(err, errClientGone) {
		return nil
	}
	return err
}

// recordResizes records each complete line of b, a JSON TerminalSize ({"Width":W,"Height":H}
// and a newline, as client-go's json.Encoder writes them), and returns what is left of b.
func (s *session) recordResizes(ch uint32, b []byte) []byte {
	for {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			if len(b) > 4096 { // not sizes: stop collecting
				return nil
			}
			return b
		}
		b = rest
		var sz struct{ Width, Height uint16 }
		if json.Unmarshal(line, &sz) == nil && sz.Width > 0 && sz.Height > 0 {
			s.record(event.TerminalResize, event.TerminalSizeData{Channel: ch, Cols: uint32(sz.Width), Rows: uint32(sz.Height)}, nil)
		}
	}
}

// rwcConn makes the upgraded body of an HTTP response (an io.ReadWriteCloser) a net.Conn,
// which the SPDY connection wants; it sets no deadlines.
type rwcConn struct {
	io.ReadWriteCloser
	local, remote net.Addr
}

func (c rwcConn) LocalAddr() net.Addr                { return c.local }
func (c rwcConn) RemoteAddr() net.Addr               { return c.remote }
func (c rwcConn) SetDeadline(t time.Time) error      { return nil }
func (c rwcConn) SetReadDeadline(t time.Time) error  { return nil }
func (c rwcConn) SetWriteDeadline(t time.Time) error { return nil }

// bufferedConn is a hijacked connection whose first bytes were read into a buffer already.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
