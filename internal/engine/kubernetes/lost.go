package kubernetes

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/airlock-gw/airlock/internal/connector"
)

// agentLost reports whether err says that the agent carrying a request was lost (its tunnel
// went away under the request's stream). If so, the session remembers it and its recording
// ends agent_lost (endSessions), whatever its later requests do.
func (s *session) agentLost(err error) *connector.LostError {
	var lost *connector.LostError
	if err == nil || !errors.As(err, &lost) {
		return nil
	}
	s.lost.CompareAndSwap(nil, lost)
	return lost
}

// lostMessage is what the client is told of a request cut by the loss of its agent.
func (s *session) lostMessage(lost *connector.LostError) string {
	return fmt.Sprintf("airlock: the connection to target %s was lost with the agent serving it: %v; retry to be served by another agent (`airlock agents list`)",
		s.t.Name, lost)
}

// lostEnd is what kube.response.end records of a stream cut by the loss of its agent.
func lostEnd(lost *connector.LostError) string { return "agent_lost: " + lost.Error() }

// tellLost ends an exec or attach over WebSocket whose agent was lost the way the API server
// ends one that failed: a Status on the error channel, then a normal closure (client-go reads
// the error channel only after a normal closure, and kubectl prints the Status's message).
// Other streams are only closed.
func (r *streamRecorder) tellLost(w io.Writer, msg string) {
	if !r.ws || !r.terminal {
		return
	}
	body, _ := json.Marshal(status(http.StatusServiceUnavailable, "ServiceUnavailable", msg))
	out := r.out // masked output: the tap's writer
	if out == nil {
		out = &frameOut{w: w}
	}
	if r.base64 {
		out.frame(true, 0x1, []byte{'3'}, []byte(base64.StdEncoding.EncodeToString(body)))
	} else {
		out.frame(true, 0x2, []byte{3}, body)
	}
	out.frame(true, 0x8, []byte{0x03, 0xe8}) // close, 1000: normal closure
}

// tellLostSPDY writes, on an exec's or attach's SPDY error stream, the Status the API server
// writes there when a command fails, when the target's side was lost with its agent.
func (s *session) tellLostSPDY(errStream io.Writer, lc *connector.LostConn) {
	if lost := lc.Lost(); lost != nil {
		body, _ := json.Marshal(status(http.StatusServiceUnavailable, "ServiceUnavailable", s.lostMessage(lost)))
		errStream.Write(body)
	}
}

// cutLost ends a streamed response (a watch, a followed log, a long body) whose agent was lost,
// once its kube.response.end is recorded, so that the client sees the stream fail instead of
// end as if the API server had finished it (kubectl logs -f would exit 0). A followed log, read
// by a person, gets the gateway's message as its last line first (text: its writer). Nothing
// happens when lost is nil.
func (s *session) cutLost(text io.Writer, lost *connector.LostError) {
	if lost == nil {
		return
	}
	if text != nil {
		io.WriteString(text, "\n"+s.lostMessage(lost)+"\n")
	}
	panic(http.ErrAbortHandler)
}
