package verify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/airlock-gw/airlock/internal/event"
)

// Kind classifies a finding. The names are part of the API and of the CLI's --json output.
type Kind string

const (
	// Altered: an event's hash does not recompute from its content and its prev, or a
	// checkpoint signs a head that is not the chain's.
	Altered Kind = "altered"
	// Missing: sequence numbers skip; the events in between are gone.
	Missing Kind = "missing"
	// Inserted: an event that does not chain to its predecessor (prev differs), belongs to
	// another session, repeats a sequence number, or follows the final checkpoint.
	Inserted Kind = "inserted"
	// Reordered: an event's sequence number is lower than its predecessor's.
	Reordered Kind = "reordered"
	// Truncated: the recording does not end with a valid final checkpoint; the events after the
	// last valid checkpoint are not covered by any signature.
	Truncated Kind = "truncated"
	// BadSignature: a checkpoint's signature does not verify with its key.
	BadSignature Kind = "bad_signature"
	// UnknownKey: a checkpoint names a key that is not among the trusted public keys.
	UnknownKey Kind = "unknown_key"
	// Unreadable: the recording could not be read to its end (the store refused a record, or a
	// line of an export does not parse).
	Unreadable Kind = "unreadable"
)

// Finding is one problem.
type Finding struct {
	Kind    Kind   `json:"kind"`
	Seq     uint64 `json:"seq"` // the event concerned (0: the recording as a whole)
	Message string `json:"message"`
}

// Result is a verification's outcome.
type Result struct {
	Intact      bool      `json:"intact"`
	Events      int       `json:"events"`
	Checkpoints int       `json:"checkpoints"`
	Findings    []Finding `json:"findings"`
	// Signed is the last sequence number covered by a valid checkpoint.
	Signed uint64 `json:"signed"`
}

// Verifier checks events fed one at a time, in the order they were read. The zero value is not
// usable: set Keys.
type Verifier struct {
	// Keys are the trusted public keys by key id.
	Keys map[string]ed25519.PublicKey
	// Session, when set, is the session every event must belong to; otherwise the first
	// event's.
	Session string
	// Live: the session is still running, so a missing final checkpoint is not a finding.
	Live bool

	n, checkpoints int
	started        bool
	lastSeq        uint64
	lastHash       [32]byte // as stored: a single edit yields one finding, not a cascade
	lastTrue       [32]byte // as recomputed
	lastType       event.Type
	signed         uint64 // covered by the last valid checkpoint
	final          bool   // a valid final checkpoint was seen
	afterFinal     bool
	findings       []Finding
	scratch        []byte
	start          *event.SessionStartData // of the first session.start
	end            *event.SessionEndData   // of the last session.end
}

func (v *Verifier) add(k Kind, seq uint64, format string, args ...any) {
	v.findings = append(v.findings, Finding{Kind: k, Seq: seq, Message: fmt.Sprintf(format, args...)})
}

// Add checks one event. e is not retained.
func (v *Verifier) Add(e *event.Event) {
	v.n++
	if v.Session == "" {
		v.Session = e.Session
	}
	if e.Session != v.Session {
		v.add(Inserted, e.Seq, "event %d belongs to session %q, not %q", e.Seq, e.Session, v.Session)
	}
	c := *e
	v.scratch = c.Seal(e.Prev, v.scratch)
	if c.Hash != e.Hash {
		v.add(Altered, e.Seq, "event %d (%s) does not hash to its stored hash: its content was changed", e.Seq, e.Type)
	}
	if v.final && !v.afterFinal {
		v.afterFinal = true
		v.add(Inserted, e.Seq, "event %d follows the final checkpoint", e.Seq)
	}
	want := v.lastSeq + 1
	switch {
	case e.Seq == want:
		if e.Prev != v.lastHash {
			if v.started {
				v.add(Inserted, e.Seq, "event %d does not chain to event %d (prev differs): an event was replaced or inserted here", e.Seq, v.lastSeq)
			} else {
				v.add(Inserted, e.Seq, "the first event has a non-zero prev: events before it are not this chain's")
			}
		}
	case e.Seq > want:
		if want == e.Seq-1 {
			v.add(Missing, want, "event %d is missing", want)
		} else {
			v.add(Missing, want, "events %d to %d are missing", want, e.Seq-1)
		}
	case e.Seq == v.lastSeq:
		v.add(Inserted, e.Seq, "event %d appears twice", e.Seq)
	default:
		v.add(Reordered, e.Seq, "event %d comes after event %d", e.Seq, v.lastSeq)
	}
	switch e.Type {
	case event.Checkpoint:
		v.checkpoint(e)
	case event.SessionStart:
		if v.start == nil {
			v.start = &event.SessionStartData{}
			json.Unmarshal(e.Data, v.start)
		}
	case event.SessionEnd:
		v.end = &event.SessionEndData{}
		json.Unmarshal(e.Data, v.end)
	}
	v.started = true
	v.lastSeq, v.lastHash, v.lastTrue, v.lastType = e.Seq, e.Hash, c.Hash, e.Type
}

func (v *Verifier) checkpoint(e *event.Event) {
	v.checkpoints++
	var d event.CheckpointData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		v.add(Altered, e.Seq, "checkpoint %d does not decode: %v", e.Seq, err)
		return
	}
	head, err := hex.DecodeString(d.Head)
	if err != nil || len(head) != 32 {
		v.add(Altered, e.Seq, "checkpoint %d: head %q is not a SHA-256 hash", e.Seq, d.Head)
		return
	}
	// A checkpoint signs the event right before it, as recomputed: an edit there that kept
	// the stored hash still fails here.
	if d.Seq != v.lastSeq || !bytes.Equal(head, v.lastTrue[:]) || v.n == 1 {
		v.add(Altered, e.Seq, "checkpoint %d signs event %d with head %.16s…, but the chain before it is event %d with hash %.16s…",
			e.Seq, d.Seq, d.Head, v.lastSeq, hex.EncodeToString(v.lastTrue[:]))
		return
	}
	key, ok := v.Keys[d.KeyID]
	if !ok {
		v.add(UnknownKey, e.Seq, "checkpoint %d is signed with key %q, which is not among the trusted keys", e.Seq, d.KeyID)
		return
	}
	sig, err := base64.StdEncoding.DecodeString(d.Signature)
	if err != nil || !ed25519.Verify(key, event.CheckpointMessage(v.Session, d.Seq, [32]byte(head), d.Final), sig) {
		v.add(BadSignature, e.Seq, "checkpoint %d: the signature by key %s does not verify", e.Seq, d.KeyID)
		return
	}
	v.signed = d.Seq
	if d.Final {
		if v.lastType != event.SessionEnd {
			v.add(Inserted, e.Seq, "final checkpoint %d does not follow session.end", e.Seq)
		}
		v.final = true
	}
}

// ReadError records that reading the recording stopped with err after the events fed so far.
func (v *Verifier) ReadError(err error) {
	v.add(Unreadable, v.lastSeq+1, "reading stopped after event %d: %v", v.lastSeq, err)
}

// ExpectEnd compares the last event with what the store's index recorded when the session
// ended: the number of events and the head (hex). A difference means the recording was cut or
// extended after it ended. Call it after the last Add.
func (v *Verifier) ExpectEnd(events uint64, head string) {
	switch {
	case events > v.lastSeq:
		v.add(Truncated, v.lastSeq+1, "the index recorded %d events at the session's end; the recording holds %d", events, v.lastSeq)
	case events < v.lastSeq:
		v.add(Inserted, events+1, "the index recorded %d events at the session's end; the recording holds %d", events, v.lastSeq)
	case head != "" && head != hex.EncodeToString(v.lastTrue[:]):
		v.add(Altered, v.lastSeq, "the index recorded head %.16s… at the session's end; the last event hashes to %.16s…", head, hex.EncodeToString(v.lastTrue[:]))
	}
}

// Finish returns the result.
func (v *Verifier) Finish() Result {
	switch {
	case v.n == 0:
		v.add(Truncated, 0, "the recording holds no events")
	case !v.final && !v.Live:
		if v.signed == 0 {
			v.add(Truncated, 1, "no valid final checkpoint, and no valid checkpoint at all: nothing in this recording is signed")
		} else {
			v.add(Truncated, v.signed+1, "no valid final checkpoint: events after %d (the last signed one) may have been removed or added", v.signed)
		}
	}
	return Result{Intact: len(v.findings) == 0, Events: v.n, Checkpoints: v.checkpoints,
		Findings: append([]Finding{}, v.findings...), Signed: v.signed}
}
