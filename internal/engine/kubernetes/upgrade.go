package kubernetes

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/event"
)

// serveUpgrade relays a request that switches protocols (exec, attach, port-forward over
// WebSocket or SPDY): the API server's 101 goes to the client, then bytes flow both ways
// until either side closes.
func (s *session) serveUpgrade(c *clientConn, w http.ResponseWriter, r *http.Request, out *http.Request, id uint64, began time.Time, ri requestInfo) {
	if r.ProtoMajor != 1 {
		s.respondGateway(w, id, began, http.StatusBadRequest, "BadRequest", "protocol upgrades need HTTP/1.1")
		return
	}
	// The connection under the API server's TLS, for reading the stream in bulk (bulkio.go).
	var ahead *readAheadConn
	out = out.WithContext(httptrace.WithClientTrace(out.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { ahead, _ = netConn(i.Conn).(*readAheadConn) },
	}))
	resp, err := s.up.h1.RoundTrip(out)
	if err != nil {
		if lost := s.agentLost(err); lost != nil {
			s.respondGateway(w, id, began, http.StatusServiceUnavailable, "ServiceUnavailable", s.lostMessage(lost))
			return
		}
		s.eng.d.Metrics.Error("dial")
		s.respondGateway(w, id, began, http.StatusBadGateway, "ServiceUnavailable", fmt.Sprintf("the gateway could not reach target %s: %v", s.t.Name, err))
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		s.relayResponse(w, resp, id, began, false)
		return
	}
	if up, sub := resp.Header.Get("Upgrade"), resp.Header.Get("Sec-WebSocket-Protocol"); !recordable(ri, up, sub) {
		// The target chose a protocol the gateway cannot follow: the client gets none of it.
		resp.Body.Close()
		s.eng.d.Metrics.Error("upgrade_refused")
		s.respondGateway(w, id, began, http.StatusForbidden, "Forbidden",
			fmt.Sprintf("airlock: %s: the target chose protocol %q %q: %s", describe(ri), up, sub, upgradeRefused))
		return
	}
	upConn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		s.respondGateway(w, id, began, http.StatusBadGateway, "ServiceUnavailable", "the target's upgraded connection is not writable")
		return
	}
	defer upConn.Close()
	rd := event.KubeResponseData{ID: id, Status: resp.StatusCode, DurationNS: int64(time.Since(began)), Source: "target", Streamed: true}
	s.record(event.KubeResponse, rd, nil)
	if ri.Subresource == "exec" || ri.Subresource == "attach" {
		// The program the stream runs (exec) or joins (attach), as an SSH channel's exec.
		q := r.URL.Query()
		cmd := ri.Subresource
		if c := q["command"]; len(c) > 0 {
			cmd = strings.Join(c, " ")
		}
		s.record(event.Exec, event.ExecData{Channel: uint32(id), Kind: ri.Subresource, Command: cmd, PTY: isTrue(q.Get("tty"))}, nil)
	}
	if err := s.commit(); err != nil {
		s.respondGateway(w, id, began, http.StatusServiceUnavailable, "ServiceUnavailable", "the recording failed: "+err.Error())
		return
	}
	copyHeader(w.Header(), resp.Header)
	w.Header().Set("Connection", "Upgrade")
	w.Header().Set("Upgrade", resp.Header.Get("Upgrade"))
	w.WriteHeader(http.StatusSwitchingProtocols)
	cliConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.log.Warn("cannot take over the client connection for an upgrade", "err", err)
		return
	}
	defer cliConn.Close()
	if err := brw.Flush(); err != nil {
		return
	}
	var toUp, toCli atomic.Int64
	var cliReader io.Reader = cliConn
	if brw.Reader.Buffered() > 0 {
		cliReader = io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), cliConn)
	}
	var streamErr error
	if isSPDY(resp.Header.Get("Upgrade")) && (ri.Subresource == "exec" || ri.Subresource == "attach") {
		// SPDY streams are followed stream by stream (spdy.go); the session's end closes them.
		upNet := rwcConn{ReadWriteCloser: upConn, local: cliConn.LocalAddr(), remote: cliConn.RemoteAddr()}
		u, cl, err := s.relaySPDY(bufferedConn{Conn: cliConn, r: cliReader}, upNet, id, isTrue(r.URL.Query().Get("tty")))
		toUp.Add(u)
		toCli.Add(cl)
		streamErr = err
		if lost := s.agentLost(err); lost != nil {
			streamErr = errors.New(lostEnd(lost))
		}
	} else {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		go func() { // the session ends (max duration, shutdown): cut the stream
			select {
			case <-s.ctx.Done():
				cliConn.Close()
				upConn.Close()
			case <-stop:
			}
		}()
		rec := newStreamRecorder(s, id, ri, r.URL.Query(), resp.Header.Get("Upgrade"), resp.Header.Get("Sec-WebSocket-Protocol"))
		rec.stop = func() { cliConn.Close(); upConn.Close() }
		wg.Add(2)
		go func() { // clientToTarget
			defer wg.Done()
			n, _ := io.Copy(upConn, rec.fromClient(cliReader))
			toUp.Add(n)
			closeWrite(upConn)
		}()
		// lost: the target's side ended with its agent.
		var lost *connector.LostError
		go func() { // targetToClient
			defer wg.Done()
			drain := &drainReader{r: bufio.NewReader(upConn), ra: ahead}
			src := rec.fromTarget(drain)
			var err error
			if rec.rewrites() {
				// Masked output: the tap writes the target's frames, re-encoded, itself.
				rec.writeTo(cliConn)
				_, err = io.Copy(io.Discard, src)
				rec.endOutput()
			} else {
				hc, _ := netConn(cliConn).(*holdConn)
				var n int64
				n, err = copyBulk(heldWriter{cliConn, hc}, src)
				toCli.Add(n)
			}
			if lost = s.agentLost(err); lost != nil {
				rec.tellLost(cliConn, s.lostMessage(lost))
			}
			if rec.rewrites() {
				toCli.Add(rec.sent())
			}
			s.log.Debug("upgraded stream: target side ended", "id", id, "bytes", toCli.Load(), "drained_reads", drain.drained)
			closeWrite(cliConn)
		}()
		wg.Wait()
		close(stop)
		rec.end()
		streamErr = rec.err()
		if lost != nil {
			streamErr = errors.New(lostEnd(lost))
		}
	}
	s.fromCli.Add(toUp.Load())
	s.toCli.Add(toCli.Load())
	end := event.KubeResponseEndData{ID: id, DurationNS: int64(time.Since(began)), Body: event.BodyInfo{Bytes: toCli.Load()}}
	if streamErr != nil {
		end.Error = streamErr.Error()
		if errors.Is(streamErr, errUnrecordable) {
			s.log.Warn("upgraded stream ended: the gateway could not record it", "id", id, "err", streamErr)
		}
	}
	s.record(event.KubeResponseEnd, end, nil)
	s.commit()
}

// netConn is the connection under c's TLS, or c.
func netConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

func closeWrite(c any) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	if cl, ok := c.(io.Closer); ok {
		cl.Close()
	}
}
