package agent

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// The tunnel's own messages are JSON frames behind a 4-byte big-endian length; after an open
// or dial answer, a stream carries the session's bytes as they are. Frames are read exactly,
// with no read-ahead, so that nothing of the session is consumed with them.

// maxFrame bounds one frame: a hello with many targets, a handshake state.
const maxFrame = 1 << 20

// hello is the agent's first frame on the control stream.
type hello struct {
	Name    string      `json:"name"`
	Secret  string      `json:"secret"`
	Version string      `json:"version"`
	Targets []Announced `json:"targets"`
}

// Announced is a target an agent serves, as the gateway knows it: never its address or
// credentials.
type Announced struct {
	Name   string            `json:"name"`
	Type   string            `json:"type"`
	Labels map[string]string `json:"labels,omitempty"`
	// Impersonate is a kubernetes target's impersonate setting from the agent's config: the
	// gateway then forwards requests as its user and groups (the agent's credential needs the
	// right to impersonate), so the cluster's RBAC applies to each user.
	Impersonate bool `json:"impersonate,omitempty"`
}

// welcome answers a hello.
type welcome struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Code says why a hello was refused: unknown, revoked, bad_secret; the agent stops
	// retrying on any of them.
	Code string `json:"code,omitempty"`
}

// control is a later frame on the control stream, from the agent.
type control struct {
	Type     string `json:"type"` // heartbeat | drain | bye
	Sessions int64  `json:"sessions,omitempty"`
}

// openReq is the gateway's first frame on a session stream.
type openReq struct {
	Op     string `json:"op"` // open (run Proto's handshake) | dial (a plain byte stream)
	Target string `json:"target"`
	Proto  string `json:"proto,omitempty"`
	Req    []byte `json:"req,omitempty"`
}

// openResp answers an openReq; after an OK one the stream is the target's.
type openResp struct {
	OK    bool   `json:"ok"`
	State []byte `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"` // the protocol's error code (a SQLSTATE), when it had one
	// Refused says why the agent refused the stream itself, before touching any target:
	// refusedDraining when it is shutting down. The gateway then tries another agent.
	Refused string `json:"refused,omitempty"`
}

// refusedDraining is openResp.Refused of an agent that is draining.
const refusedDraining = "draining"

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("agent tunnel: frame of %d bytes exceeds %d", len(b), maxFrame)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("agent tunnel: frame of %d bytes exceeds %d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("agent tunnel: short frame: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("agent tunnel: bad frame: %w", err)
	}
	return nil
}
