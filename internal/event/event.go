package event

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Type names what an event describes. The names are part of the stored format and of the API:
// never rename one.
type Type string

const (
	SessionStart Type = "session.start" // Data: SessionStartData
	SessionEnd   Type = "session.end"   // Data: SessionEndData
	Query        Type = "query"         // Data: QueryData; a statement sent to the target
	Columns      Type = "columns"       // Data: ColumnsData; the shape of the rows that follow
	Rows         Type = "rows"          // Data: RowsData; Raw: rows packed with AppendRow
	Result       Type = "result"        // Data: ResultData; a statement finished
	Error        Type = "error"         // Data: MessageData; an error the client saw
	Notice       Type = "notice"        // Data: MessageData
	Notification Type = "notification"  // Data: NotificationData (LISTEN/NOTIFY)
	CopyIn       Type = "copy.in"       // Data: CopyData; Raw: bytes the client sent to the target
	CopyOut      Type = "copy.out"      // Data: CopyData; Raw: bytes the target sent to the client
	Cancel       Type = "cancel"        // Data: CancelData; the client asked to cancel a statement
	Mask         Type = "mask"          // Data: MaskData; values were masked in what the client saw
	Guardrail    Type = "guardrail"     // Data: GuardrailData; a statement was classified and acted on
	// RowsOriginal follows a rows event some of whose values were masked: Data:
	// RowsOriginalData; Raw: the rows as the target sent them (packed like rows), sealed with
	// AES-256-GCM (internal/sealbox), the session id as additional data. Never in clear.
	RowsOriginal Type = "rows.original"
	// Original follows an error, notice, notification or copy.out event whose content masking
	// changed (only checkpoints may come between): Data: OriginalData; Raw: what the target
	// sent, sealed like rows.original. For error, notice and notification the plaintext is the
	// event's Data as it would have been without masking (JSON); for copy.out, the bytes.
	Original Type = "original"
	// Checkpoint signs the chain head: Data: CheckpointData. It is an ordinary event of the
	// chain, so the next event's hash covers it.
	Checkpoint Type = "checkpoint"
	// RecordingGap stands in the chain where a best-effort recording dropped events (its buffer
	// was full because the store stalled or failed): Data: GapData. Dropped events were never
	// sealed, so the chain around the gap verifies; the gap says what is missing.
	RecordingGap Type = "recording.gap"
	// Audit is one entry of the gateway's audit log, a recording of its own (type "audit"):
	// Data: AuditData.
	Audit Type = "audit"
)

// FormatVersion is the version of the canonical encoding below. A reader that meets a higher
// version refuses the event rather than guessing.
const FormatVersion = 1

// Event is one entry of a session's recording.
type Event struct {
	Session string        // session id
	Seq     uint64        // 1-based, gapless within a session
	Type    Type          //
	Offset  time.Duration // monotonic time since the session started
	Time    time.Time     // wall clock, UTC
	Data    []byte        // JSON object, shape given by Type
	Raw     []byte        // optional binary attachment (rows, COPY bytes)
	Prev    [32]byte      // hash of the previous event; zero for the first
	Hash    [32]byte      // SHA-256(Prev || Canonical())
}

// Canonical returns the bytes that the hash covers. The layout is fixed for FormatVersion 1:
//
//	u8 version | u16 len + session | u64 seq | u16 len + type | i64 offset ns | i64 unix ns |
//	u32 len + data | u32 len + raw
//
// All integers are big-endian. Prev is not part of it: it enters the hash separately.
func (e *Event) Canonical(dst []byte) []byte {
	return append(e.CanonicalHead(dst), e.Raw...)
}

// CanonicalHead is Canonical without the raw bytes at its end: Canonical(dst) is
// append(e.CanonicalHead(dst), e.Raw...). Sealing and the file store use it to hash and write
// a large Raw where it is instead of copying it.
func (e *Event) CanonicalHead(dst []byte) []byte {
	dst = append(dst, FormatVersion)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(e.Session)))
	dst = append(dst, e.Session...)
	dst = binary.BigEndian.AppendUint64(dst, e.Seq)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(e.Type)))
	dst = append(dst, e.Type...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Offset))
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Time.UnixNano()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.Data)))
	dst = append(dst, e.Data...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.Raw)))
	return dst
}

// ErrCorrupt reports bytes that do not decode as an event.
var ErrCorrupt = errors.New("event: corrupt canonical encoding")

// DecodeCanonical parses the output of Canonical. Data and Raw alias src.
func DecodeCanonical(src []byte) (*Event, error) {
	e := &Event{}
	r := reader{b: src}
	if v := r.u8(); v != FormatVersion {
		if r.err != nil {
			return nil, ErrCorrupt
		}
		return nil, fmt.Errorf("event: unsupported format version %d", v)
	}
	e.Session = string(r.bytes(int(r.u16())))
	e.Seq = r.u64()
	e.Type = Type(r.bytes(int(r.u16())))
	e.Offset = time.Duration(r.u64())
	e.Time = time.Unix(0, int64(r.u64())).UTC()
	e.Data = r.bytes(int(r.u32()))
	e.Raw = r.bytes(int(r.u32()))
	if r.err != nil || len(r.b) != 0 {
		return nil, ErrCorrupt
	}
	if len(e.Raw) == 0 {
		e.Raw = nil
	}
	return e, nil
}

// Seal sets e.Prev to prev and computes e.Hash. buf is scratch space that may be reused by the
// caller; the grown buffer is returned.
func (e *Event) Seal(prev [32]byte, buf []byte) []byte {
	e.Prev = prev
	buf = e.CanonicalHead(buf[:0])
	h := sha256.New()
	h.Write(prev[:])
	h.Write(buf)
	h.Write(e.Raw) // the canonical bytes end with Raw: hashed where it is, not copied
	h.Sum(e.Hash[:0])
	return buf
}

// Verify recomputes e.Hash from e.Prev and the event's content.
func (e *Event) Verify() bool {
	var c Event = *e
	c.Seal(e.Prev, nil)
	return c.Hash == e.Hash
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = ErrCorrupt
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}
func (r *reader) u8() uint8 {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}
func (r *reader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}
func (r *reader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}
