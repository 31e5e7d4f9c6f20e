package verify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
)

// Kind classifies a finding. The names are part of the API and of the CLI's --json output.
type Kind string

const (
	// Altered: an event's hash does not recompute from its content and its prev, the store
	// found its record damaged, or a checkpoint signs a head that is not the chain's.
	Altered Kind = "altered"
	// Missing: sequence numbers skip, and no later event fills the gap: the events are gone.
	Missing Kind = "missing"
	// Inserted: an event that does not chain to its predecessor (prev differs), belongs to
	// another session, repeats a sequence number, or follows the final checkpoint.
	Inserted Kind = "inserted"
	// Reordered: an event comes after a later one: it fills a gap an event further on left.
	Reordered Kind = "reordered"
	// Truncated: the recording does not end with a valid final checkpoint; the events after the
	// last valid checkpoint are not covered by any signature.
	Truncated Kind = "truncated"
	// BadSignature: a checkpoint's signature does not verify with its key.
	BadSignature Kind = "bad_signature"
	// UnknownKey: a checkpoint names a key that is not among the trusted public keys.
	UnknownKey Kind = "unknown_key"
	// Unreadable: the recording could not be read to its end (bytes the store cannot frame as a
	// record, or a line of an export that does not parse).
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
//
// Events are placed by sequence number: the event after the highest one so far continues the
// chain; one further on leaves a gap (missing, unless a later event fills it: reordered); one
// that repeats a number is inserted. Each kind of damage is reported once, at the event
// concerned, not again at every event after it.
type Verifier struct {
	// Keys are the trusted public keys by key id.
	Keys map[string]ed25519.PublicKey
	// Session, when set, is the session every event must belong to; otherwise the first
	// event's.
	Session string
	// Live: the session is still running, so a missing final checkpoint is not a finding.
	Live bool
	// NoPrev: the events come straight from a store, which keeps no prev per event (an event's
	// prev is the stored hash of the event before it in sequence), so the verifier chains each
	// event to its predecessor itself. An event whose predecessor is missing or out of place
	// then cannot be checked by its hash, only by its position. Export lines carry their prev.
	NoPrev bool

	n, checkpoints int
	started        bool
	head           uint64       // the highest sequence number placed
	headHash       [32]byte     // its hash as stored: a single edit yields one finding, not a cascade
	headTrue       [32]byte     // as recomputed
	headPrev       [32]byte     // the stored hash of the event before it
	headType       event.Type   // its type
	dup            bool         // another event repeated head's number...
	dupHash        [32]byte     // ...with this stored hash
	dupTrue        [32]byte     // and this one recomputed
	gaps           []gap        // sequence numbers skipped and not (yet) seen, in order
	holders        map[int]bool // indexes in findings that stand for gaps (Finish fills them in)
	signed         uint64       // covered by the last valid checkpoint
	final          bool         // a valid final checkpoint was seen
	afterFinal     bool
	findings       []Finding
	scratch        []byte
	start          *event.SessionStartData // of the first session.start
	startAt        time.Time               // its time
	end            *event.SessionEndData   // of the last session.end
	endAt          time.Time               // its time
}

// gap is a run of missing sequence numbers; at is the index in findings where it is reported.
type gap struct {
	lo, hi uint64
	at     int
}

func (v *Verifier) add(k Kind, seq uint64, format string, args ...any) {
	v.findings = append(v.findings, Finding{Kind: k, Seq: seq, Message: fmt.Sprintf(format, args...)})
}

// seal returns e's hash recomputed over prev.
func (v *Verifier) seal(e *event.Event, prev [32]byte) [32]byte {
	c := *e
	v.scratch = c.Seal(prev, v.scratch)
	return c.Hash
}

// Add checks one event. e is not retained.
func (v *Verifier) Add(e *event.Event) { v.add1(e, "") }

// AddDamaged checks one event that the store read but found damaged in itself (damage says how:
// a checksum that does not match the record's bytes). Unless the event's hash already shows
// the change, the damage is reported as altered.
func (v *Verifier) AddDamaged(e *event.Event, damage string) { v.add1(e, damage) }

// Undecodable records an event that the store holds but cannot decode: reported as altered, at
// the sequence number after the highest so far. hash is the hash stored with it, which the next
// event chains to.
func (v *Verifier) Undecodable(hash [32]byte, damage string) {
	v.n++
	seq := v.head + 1
	v.add(Altered, seq, "event %d: the stored record is damaged (%s): its content was changed", seq, damage)
	v.started = true
	v.headPrev, v.head, v.headHash, v.headTrue, v.headType, v.dup = v.headHash, seq, hash, hash, "", false
}

func (v *Verifier) add1(e *event.Event, damage string) {
	v.n++
	if v.Session == "" {
		v.Session = e.Session
	}
	if e.Session != v.Session {
		v.add(Inserted, e.Seq, "event %d belongs to session %q, not %q", e.Seq, e.Session, v.Session)
	}
	if v.final && !v.afterFinal {
		v.afterFinal = true
		v.add(Inserted, e.Seq, "event %d follows the final checkpoint", e.Seq)
	}
	altered := false
	check := func(prev [32]byte) [32]byte {
		h := v.seal(e, prev)
		if h != e.Hash {
			altered = true
			v.add(Altered, e.Seq, "event %d (%s) does not hash to its stored hash: its content was changed", e.Seq, e.Type)
		}
		return h
	}
	switch {
	case e.Seq == 0:
		v.add(Inserted, 0, "an event (%s) has sequence number 0, which no recorded event has", e.Type)
	case e.Seq > v.head:
		next := e.Seq == v.head+1
		if !next {
			v.gap(v.head+1, e.Seq-1)
		}
		prev, known := e.Prev, true
		switch {
		case v.NoPrev && next:
			prev = v.headHash
			if v.dup && v.seal(e, prev) != e.Hash && v.seal(e, v.dupHash) == e.Hash {
				// The chain goes on from the other event with head's number: that one is
				// the original, and the first was put in front of it (reported as the repeat).
				prev = v.dupHash
				v.headHash, v.headTrue = v.dupHash, v.dupTrue
			}
		case v.NoPrev:
			known = false // its predecessor is missing: nothing to hash it over
		case next && e.Prev != v.headHash:
			switch {
			case v.dup && e.Prev == v.dupHash:
				v.headHash, v.headTrue = v.dupHash, v.dupTrue // as above
			case v.started:
				v.add(Inserted, e.Seq, "event %d does not chain to event %d (prev differs): an event was replaced or inserted here", e.Seq, v.head)
			default:
				v.add(Inserted, e.Seq, "the first event has a non-zero prev: events before it are not this chain's")
			}
		}
		h := e.Hash
		if known {
			h = check(prev)
		}
		if e.Type == event.Checkpoint {
			v.checkpoint(e, next && v.started)
		}
		switch e.Type {
		case event.SessionStart:
			if v.start == nil {
				v.start, v.startAt = &event.SessionStartData{}, e.Time
				json.Unmarshal(e.Data, v.start)
			}
		case event.SessionEnd:
			v.end, v.endAt = &event.SessionEndData{}, e.Time
			json.Unmarshal(e.Data, v.end)
		}
		v.started = true
		v.headPrev, v.head, v.headHash, v.headTrue, v.headType, v.dup = v.headHash, e.Seq, e.Hash, h, e.Type, false
	case v.fill(e.Seq):
		v.add(Reordered, e.Seq, "event %d comes after event %d: it is out of place", e.Seq, v.head)
		if !v.NoPrev {
			check(e.Prev)
		}
		if e.Type == event.Checkpoint {
			v.checkpoints++
		}
	default:
		v.add(Inserted, e.Seq, "event %d appears twice", e.Seq)
		prev := e.Prev
		if v.NoPrev {
			prev = v.headPrev
		}
		h := e.Hash
		if !v.NoPrev || e.Seq == v.head {
			h = check(prev)
		}
		if e.Seq == v.head {
			v.dup, v.dupHash, v.dupTrue = true, e.Hash, h
		}
		if e.Type == event.Checkpoint {
			v.checkpoints++
		}
	}
	if damage != "" && !altered {
		v.add(Altered, e.Seq, "event %d: %s: the stored record was changed", e.Seq, damage)
	}
}

// gap notes that lo..hi were skipped. It is reported where it was found, as what is still
// missing when Finish runs.
func (v *Verifier) gap(lo, hi uint64) {
	if v.holders == nil {
		v.holders = map[int]bool{}
	}
	at := len(v.findings)
	v.add(Missing, lo, "")
	v.holders[at] = true
	v.gaps = append(v.gaps, gap{lo: lo, hi: hi, at: at})
}

// fill takes seq out of the gaps; false when it was in none.
func (v *Verifier) fill(seq uint64) bool {
	i, ok := slices.BinarySearchFunc(v.gaps, seq, func(g gap, s uint64) int {
		switch {
		case g.hi < s:
			return -1
		case g.lo > s:
			return 1
		}
		return 0
	})
	if !ok {
		return false
	}
	g := v.gaps[i]
	switch {
	case g.lo == g.hi:
		v.gaps = slices.Delete(v.gaps, i, i+1)
	case seq == g.lo:
		v.gaps[i].lo++
	case seq == g.hi:
		v.gaps[i].hi--
	default:
		v.gaps[i].hi = seq - 1
		v.gaps = slices.Insert(v.gaps, i+1, gap{lo: seq + 1, hi: g.hi, at: g.at})
	}
	return true
}

// checkpoint checks a checkpoint event. inPlace: it directly follows the chain's head, whose
// hash it must sign; otherwise (it follows missing events) only its signature is checked.
func (v *Verifier) checkpoint(e *event.Event, inPlace bool) {
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
	// the stored hash still fails here. When that event's own hash already showed the edit
	// (reported), the checkpoint signing its stored hash is not a second problem, but it does
	// not cover the event either.
	covers := inPlace
	switch {
	case !v.started:
		covers = false
		fallthrough
	case inPlace && (d.Seq != v.head || !bytes.Equal(head, v.headTrue[:])):
		if v.started && d.Seq == v.head && bytes.Equal(head, v.headHash[:]) && v.headHash != v.headTrue || v.has(Altered, e.Seq) {
			covers = false // one finding per event
			break
		}
		v.add(Altered, e.Seq, "checkpoint %d signs event %d with head %.16s…, but the chain before it is event %d with hash %.16s…",
			e.Seq, d.Seq, d.Head, v.head, hex.EncodeToString(v.headTrue[:]))
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
	if !covers {
		// Genuine, but what it signs is missing or altered here: it covers nothing read. A
		// final one still says where the recording ended.
		v.final = v.final || d.Final
		return
	}
	v.signed = d.Seq
	if d.Final {
		if v.headType != event.SessionEnd {
			v.add(Inserted, e.Seq, "final checkpoint %d does not follow session.end", e.Seq)
		}
		v.final = true
	}
}

// ReadError records that reading the recording stopped with err after the events fed so far.
func (v *Verifier) ReadError(err error) {
	v.add(Unreadable, v.head+1, "reading stopped after event %d: %v", v.head, err)
}

// ExpectEnd compares the last event with what the store's index recorded when the session
// ended: the number of events and the head (hex). A difference means the recording was cut or
// extended after it ended. Call it after the last Add.
func (v *Verifier) ExpectEnd(events uint64, head string) {
	switch {
	case events > v.head:
		v.add(Truncated, v.head+1, "the index recorded %d events at the session's end; the recording holds %d", events, v.head)
	case events < v.head:
		if !v.has(Inserted, events+1) {
			v.add(Inserted, events+1, "the index recorded %d events at the session's end; the recording holds %d", events, v.head)
		}
	case head != "" && head != hex.EncodeToString(v.headTrue[:]):
		v.add(Altered, v.head, "the index recorded head %.16s… at the session's end; the last event hashes to %.16s…", head, hex.EncodeToString(v.headTrue[:]))
	}
}

// has reports whether a finding of kind k at seq was made.
func (v *Verifier) has(k Kind, seq uint64) bool {
	for _, f := range v.findings {
		if f.Kind == k && f.Seq == seq {
			return true
		}
	}
	return false
}

func (v *Verifier) hasKind(k Kind) bool {
	for _, f := range v.findings {
		if f.Kind == k {
			return true
		}
	}
	return false
}

// Finish returns the result.
func (v *Verifier) Finish() Result {
	switch {
	case v.n == 0:
		v.add(Truncated, 0, "the recording holds no events")
	case !v.final && !v.Live && !v.hasKind(Truncated): // ExpectEnd may have said it better
		if v.signed == 0 {
			v.add(Truncated, 1, "no valid final checkpoint, and no valid checkpoint at all: nothing in this recording is signed")
		} else {
			v.add(Truncated, v.signed+1, "no valid final checkpoint: events after %d (the last signed one) may have been removed or added", v.signed)
		}
	}
	// The gaps that no later event filled, each where it was found.
	out := make([]Finding, 0, len(v.findings))
	for i, f := range v.findings {
		if !v.holders[i] {
			out = append(out, f)
			continue
		}
		for _, g := range v.gaps {
			switch {
			case g.at != i:
			case g.lo == g.hi:
				out = append(out, Finding{Kind: Missing, Seq: g.lo, Message: fmt.Sprintf("event %d is missing", g.lo)})
			default:
				out = append(out, Finding{Kind: Missing, Seq: g.lo, Message: fmt.Sprintf("events %d to %d are missing", g.lo, g.hi)})
			}
		}
	}
	return Result{Intact: len(out) == 0, Events: v.n, Checkpoints: v.checkpoints, Findings: out, Signed: v.signed}
}
