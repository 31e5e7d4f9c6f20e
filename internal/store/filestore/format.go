package filestore

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// A recording file is a header followed by records, FileVersion 1:
//
//	header: "ALREC" | u8 version | u16 len + session id | u32 CRC-32C of the preceding header bytes
//	record: u32 len(payload) | u32 CRC-32C(payload) | payload
//	payload: event.Canonical bytes | 32-byte event hash
//
// Integers are big-endian. Prev is not stored: it is the previous record's hash (zero for the
// first), so a record can be neither removed nor reordered without breaking the next one's hash.
// A reader that meets a version it does not know refuses the file rather than guessing.
const (
	FileVersion = 1
	magic       = "ALREC"

	frameLen = 8 // u32 length + u32 CRC
	hashLen  = sha256.Size
	// minPayload is the smallest canonical event (empty session, type, data and raw) plus its hash.
	minPayload = 1 + 2 + 8 + 2 + 8 + 8 + 4 + 4 + hashLen
	// MaxRecord bounds one record's payload. Append refuses a bigger event, and a reader treats a
	// bigger length as corruption instead of trying to allocate it. Engines chunk rows and COPY
	// data far below this.
	MaxRecord = 64 << 20
	// maxSessionID keeps ids usable as file names everywhere.
	maxSessionID = store.MaxSessionID
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendHeader appends a file header for session id.
func appendHeader(dst []byte, id string) []byte {
	start := len(dst)
	dst = append(dst, magic...)
	dst = append(dst, FileVersion)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(id)))
	dst = append(dst, id...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// appendRecord frames e (already sealed) onto dst.
func appendRecord(dst []byte, e *event.Event) ([]byte, error) {
	dst, _, err := appendRecordSplit(dst, e, false)
	return dst, err
}

// appendRecordSplit frames e (already sealed) onto dst. With split, e.Raw is left out: the
// record is dst up to the returned offset, then e.Raw, then the rest of dst (the hash), for a
// writev that sends Raw from where it is instead of copying it into dst. Without, at is -1.
func appendRecordSplit(dst []byte, e *event.Event, split bool) (_ []byte, at int, _ error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = e.CanonicalHead(dst)
	at = -1
	if split {
		at = len(dst)
	} else {
		dst = append(dst, e.Raw...)
	}
	crc := crc32.Checksum(dst[start+frameLen:], castagnoli)
	n := len(dst) - start - frameLen + len(e.Hash)
	if split {
		crc = crc32.Update(crc, castagnoli, e.Raw)
		n += len(e.Raw)
	}
	crc = crc32.Update(crc, castagnoli, e.Hash[:])
	if n > MaxRecord {
		return dst[:start], -1, fmt.Errorf("event %d is %d bytes, more than the %d a record holds", e.Seq, n, MaxRecord)
	}
	dst = append(dst, e.Hash[:]...)
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	binary.BigEndian.PutUint32(dst[start+4:], crc)
	return dst, at, nil
}

// TornTailError reports a recording that ends inside a record: the process writing it stopped
// mid-write (kill -9, power loss). Every event before Offset was read and verified.
type TornTailError struct {
	Session string
	Offset  int64 // where the incomplete record starts
}

func (e *TornTailError) Error() string {
	return fmt.Sprintf("recording %s ends with an incomplete record at offset %d", e.Session, e.Offset)
}

// CorruptError reports bytes that are not what was written: a checksum mismatch, a broken hash
// chain or an undecodable record. Seq is the sequence number the bad record should have had.
type CorruptError struct {
	Session string
	Seq     uint64
	Offset  int64
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("recording %s is corrupt at offset %d (event %d): %s", e.Session, e.Offset, e.Seq, e.Reason)
}

// readOptions tune ReadRecording for the store's own use.
type readOptions struct {
	// live: the file is being appended to by this store, and r ends where the writer's last
	// completed write ended (Store.open). An incomplete record there is a write that failed
	// part way (the writer refuses to go on after it), not a torn tail; any other damage before
	// that offset is damage, never a write in progress.
	live bool
	// ctxErr is polled between records.
	ctxErr func() error
	// records, when set, gets every record as stored instead of fn getting verified events:
	// only the framing is checked (store.RecordReader).
	records func(*store.Record) error
}

// ReadRecording reads a recording file from r, verifying every record's checksum, its sequence
// number and the hash chain, and calls fn with each event whose Seq is greater than after. The
// event (its Data and Raw) is valid only during the call. sessionID, when not empty, must match
// the file's header.
//
// It returns nil when the file ends cleanly, *TornTailError when it ends inside a record, and
// *CorruptError when a record is not what was written; events before the problem have been passed
// to fn. It never skips a record.
func ReadRecording(r io.Reader, sessionID string, after uint64, fn func(*event.Event) error) error {
	return readRecording(r, sessionID, after, fn, readOptions{})
}

func readRecording(r io.Reader, sessionID string, after uint64, fn func(*event.Event) error, o readOptions) error {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	id, off, err := readHeader(br, sessionID, o)
	if err != nil {
		return err
	}
	var (
		prev    [32]byte
		seq     uint64
		frame   [frameLen]byte
		payload []byte
		h       = sha256.New()
	)
	torn := func(at int64) error {
		if o.live {
			return nil
		}
		return &TornTailError{Session: id, Offset: at}
	}
	for {
		if o.ctxErr != nil {
			if err := o.ctxErr(); err != nil {
				return err
			}
		}
		n, err := io.ReadFull(br, frame[:])
		if err == io.EOF {
			return nil
		}
		if err == io.ErrUnexpectedEOF {
			return torn(off)
		}
		if err != nil {
			return fmt.Errorf("read recording %s: %w", id, err)
		}
		_ = n
		length := binary.BigEndian.Uint32(frame[:4])
		sum := binary.BigEndian.Uint32(frame[4:])
		bad := func(reason string) error {
			// A file system may extend a file before its data reaches the disk, and a power
			// loss then leaves zeros where the last records were going: that is a torn tail,
			// not tampering. Anything else is corruption. A live recording is read only up to
			// what its writer completed, so zeros there are damage too.
			if !o.live && bytes.Equal(frame[:], make([]byte, frameLen)) && restIsZero(br) {
				return torn(off)
			}
			return &CorruptError{Session: id, Seq: seq + 1, Offset: off, Reason: reason}
		}
		if length < minPayload || length > MaxRecord {
			return bad(fmt.Sprintf("record length %d out of range", length))
		}
		payload, err = readPayload(br, payload, int(length))
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return torn(off)
		}
		if err != nil {
			return fmt.Errorf("read recording %s: %w", id, err)
		}
		damage := ""
		if crc32.Checksum(payload, castagnoli) != sum {
			// A record that was being copied into a mapped recording (as the store appended
			// before it wrote every batch with write(2)) when the process died is complete up
			// to some byte and zero from there to the end of the reserved window: torn. Its
			// last byte (of its hash, the last copied) is then still zero.
			if !o.live && payload[len(payload)-1] == 0 && restIsZero(br) {
				return torn(off)
			}
			if o.records == nil {
				return bad("checksum mismatch")
			}
			damage = "checksum mismatch"
		}
		canon, stored := payload[:len(payload)-hashLen], payload[len(payload)-hashLen:]
		if o.records != nil {
			rec := store.Record{Damage: damage}
			copy(rec.Hash[:], stored)
			if e, err := event.DecodeCanonical(canon); err != nil {
				rec.Damage = strings.TrimPrefix(damage+", ", ", ") + "does not decode: " + err.Error()
			} else {
				e.Hash = rec.Hash
				rec.Event = e
			}
			if err := o.records(&rec); err != nil {
				return err
			}
			off += frameLen + int64(length)
			continue
		}
		e, err := event.DecodeCanonical(canon)
		if err != nil {
			return &CorruptError{Session: id, Seq: seq + 1, Offset: off, Reason: err.Error()}
		}
		switch {
		case e.Session != id:
			return &CorruptError{Session: id, Seq: seq + 1, Offset: off, Reason: fmt.Sprintf("event of session %q", e.Session)}
		case e.Seq != seq+1:
			return &CorruptError{Session: id, Seq: seq + 1, Offset: off, Reason: fmt.Sprintf("sequence %d follows %d", e.Seq, seq)}
		}
		h.Reset()
		h.Write(prev[:])
		h.Write(canon)
		h.Sum(e.Hash[:0])
		if !bytes.Equal(e.Hash[:], stored) {
			return &CorruptError{Session: id, Seq: e.Seq, Offset: off, Reason: "hash chain broken"}
		}
		e.Prev = prev
		if e.Seq > after {
			if err := fn(e); err != nil {
				return err
			}
		}
		prev, seq = e.Hash, e.Seq
		off += frameLen + int64(length)
	}
}

func readHeader(br *bufio.Reader, want string, o readOptions) (id string, off int64, err error) {
	torn := func() error {
		if o.live {
			return nil
		}
		return &TornTailError{Session: want, Offset: 0}
	}
	corrupt := func(reason string) error {
		return &CorruptError{Session: want, Offset: 0, Reason: reason}
	}
	var fixed [len(magic) + 1 + 2]byte
	if _, err := io.ReadFull(br, fixed[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return "", 0, torn()
		}
		return "", 0, fmt.Errorf("read recording header: %w", err)
	}
	if string(fixed[:len(magic)]) != magic {
		return "", 0, corrupt("not a recording file (bad magic)")
	}
	if v := fixed[len(magic)]; v != FileVersion {
		return "", 0, corrupt(fmt.Sprintf("unsupported file format version %d", v))
	}
	n := int(binary.BigEndian.Uint16(fixed[len(magic)+1:]))
	if n == 0 || n > maxSessionID {
		return "", 0, corrupt(fmt.Sprintf("session id length %d out of range", n))
	}
	rest := make([]byte, n+4)
	if _, err := io.ReadFull(br, rest); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return "", 0, torn()
		}
		return "", 0, fmt.Errorf("read recording header: %w", err)
	}
	crc := crc32.Update(crc32.Checksum(fixed[:], castagnoli), castagnoli, rest[:n])
	if crc != binary.BigEndian.Uint32(rest[n:]) {
		return "", 0, corrupt("header checksum mismatch")
	}
	id = string(rest[:n])
	if want != "" && id != want {
		return "", 0, corrupt(fmt.Sprintf("header names session %q", id))
	}
	return id, int64(len(fixed) + n + 4), nil
}

// readPayload reads n bytes into buf, growing it as bytes arrive so that a huge length at the end
// of a torn file does not allocate what was never written.
func readPayload(br *bufio.Reader, buf []byte, n int) ([]byte, error) {
	const step = 1 << 20
	if n <= cap(buf) || n <= step {
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		_, err := io.ReadFull(br, buf)
		return buf, err
	}
	buf = buf[:0]
	for len(buf) < n {
		k := min(step, n-len(buf))
		buf = append(buf, make([]byte, k)...)
		if _, err := io.ReadFull(br, buf[len(buf)-k:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// restIsZero reports whether everything left in br is zero bytes.
func restIsZero(br *bufio.Reader) bool {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return errors.Is(err, io.EOF)
		}
		if b != 0 {
			return false
		}
	}
}
