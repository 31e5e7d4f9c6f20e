package filestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/storetest"
)

var start = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// recorded writes n events to a new session in a store in dir, closes the store and returns the
// recording's path and the record offsets (plus the file size as a last element).
func recorded(t *testing.T, dir, id string, n int) (path string, offsets []int64) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(context.Background(), store.Session{ID: id, User: "u", Target: "pg", Type: "postgres", StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	c := &storetest.Chain{Session: id}
	if err := w.Append(c.NextN(n)...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "recordings", "2026", "03", "14", id+".alr")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(len(appendHeader(nil, id)))
	for off < int64(len(b)) {
		offsets = append(offsets, off)
		off += frameLen + int64(binary.BigEndian.Uint32(b[off:]))
	}
	return path, append(offsets, off)
}

// readBack reopens the store in dir and reads id, returning how many events came and the error.
func readBack(t *testing.T, dir, id string) (int, error) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	err = s.Events(context.Background(), id, 0, func(e *event.Event) error {
		n++
		if e.Seq != uint64(n) || !e.Verify() {
			t.Fatalf("event %d: seq %d, verifies %v", n, e.Seq, e.Verify())
		}
		return nil
	})
	return n, err
}

func TestTornTail(t *testing.T) {
	tests := []struct {
		name   string
		cut    func(offsets []int64) int64 // new file size
		events int
		at     int // index into offsets of the torn record
		zeros  int // zero bytes appended after the cut
	}{
		{"inside last payload", func(o []int64) int64 { return o[5] - 3 }, 4, 4, 0},
		{"inside last frame", func(o []int64) int64 { return o[4] + 5 }, 4, 4, 0},
		{"only the header", func(o []int64) int64 { return o[0] + 1 }, 0, 0, 0},
		{"zeros after a cut", func(o []int64) int64 { return o[3] }, 3, 3, 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, offsets := recorded(t, dir, "torn", 5)
			if err := os.Truncate(path, tt.cut(offsets)); err != nil {
				t.Fatal(err)
			}
			if tt.zeros > 0 {
				f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				f.Write(make([]byte, tt.zeros))
				f.Close()
			}
			n, err := readBack(t, dir, "torn")
			var torn *TornTailError
			if !errors.As(err, &torn) {
				t.Fatalf("Events = %v, want *TornTailError", err)
			}
			if n != tt.events || torn.Offset != offsets[tt.at] || torn.Session != "torn" {
				t.Fatalf("got %d events and %+v; want %d events and offset %d", n, torn, tt.events, offsets[tt.at])
			}
		})
	}
}

// TestTornCopy: the process dies while a record is being copied into the recording's mapped,
// reserved window: the file holds the records before it, a prefix of it, and zeros to the end
// of the window. Whatever the prefix, that is a torn tail at the record, and recovery cuts it.
func TestTornCopy(t *testing.T) {
	dir := t.TempDir()
	path, offsets := recorded(t, dir, "copy", 5)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	last := offsets[4]
	for k := int64(0); k < int64(len(whole))-last; k++ {
		b := append(append([]byte(nil), whole[:last+k]...), make([]byte, 64<<10)...)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := readBack(t, dir, "copy")
		var torn *TornTailError
		if !errors.As(err, &torn) || n != 4 || torn.Offset != last {
			t.Fatalf("%d of %d bytes of the last record copied: %d events, %v; want 4 events and a torn tail at %d",
				k, len(whole)-int(last), n, err, last)
		}
	}
	// A changed byte in the last record, followed by the window's zeros, is still corruption.
	b := append(append([]byte(nil), whole...), make([]byte, 64<<10)...)
	b[last+frameLen+20] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if n, err := readBack(t, dir, "copy"); !errors.As(err, &ce) || n != 4 {
		t.Fatalf("a changed last record: %d events, %v; want *CorruptError", n, err)
	}
}

// TestWindowCut: while a session is recorded its file is longer than the recording (the
// reserved window); once it ends, the file is exactly the recording.
func TestWindowCut(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	w, err := s.Create(ctx, store.Session{ID: "win", User: "u", Target: "pg", Type: "postgres", StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	c := &storetest.Chain{Session: "win"}
	for range 3000 { // past the first window, so that it moves
		if err := w.Append(c.Next()); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := s.Events(ctx, "win", 0, func(*event.Event) error { n++; return nil }); err != nil || n != 3000 {
		t.Fatalf("reading while recorded: %d events, %v", n, err)
	}
	if err := w.End(ctx, store.SessionEnd{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "recordings", "2026", "03", "14", "win.alr")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b[len(b)-1] == 0 && bytes.HasSuffix(b, make([]byte, 64)) {
		t.Fatalf("the ended recording ends in zeros: the window was not cut (%d bytes)", len(b))
	}
	if err := ReadRecording(bytes.NewReader(b), "win", 0, func(*event.Event) error { return nil }); err != nil {
		t.Fatalf("the ended recording: %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(b []byte, o []int64)
		events int
		seq    uint64
		at     int // index into offsets; -1 for the header
	}{
		{"flipped payload byte", func(b []byte, o []int64) { b[o[2]+frameLen+20] ^= 0x40 }, 2, 3, 2},
		{"flipped checksum byte", func(b []byte, o []int64) { b[o[1]+5] ^= 1 }, 1, 2, 1},
		{"flipped hash byte", func(b []byte, o []int64) { b[o[3]-1] ^= 1 }, 2, 3, 2}, // last byte of event 3
		{"length too large", func(b []byte, o []int64) { binary.BigEndian.PutUint32(b[o[3]:], MaxRecord+1) }, 3, 4, 3},
		{"length too small", func(b []byte, o []int64) { binary.BigEndian.PutUint32(b[o[0]:], 3) }, 0, 1, 0},
		{"zero frame mid-file", func(b []byte, o []int64) { clear(b[o[2] : o[2]+frameLen]) }, 2, 3, 2},
		{"bad magic", func(b []byte, o []int64) { b[0] = 'X' }, 0, 0, -1},
		{"future version", func(b []byte, o []int64) { b[5] = 2 }, 0, 0, -1},
		{"header checksum", func(b []byte, o []int64) { b[9] ^= 1 }, 0, 0, -1},
		{
			// Someone edits event 3 and fixes up its checksum and its own hash: event 4 no longer
			// chains to it.
			"rewritten event", func(b []byte, o []int64) {
				rec := b[o[2]+frameLen : o[3]]
				canon := rec[:len(rec)-32]
				canon[len(canon)-10] ^= 1 // inside Data
				prev := [32]byte(b[o[2]-32 : o[2]])
				h := sha256.Sum256(append(prev[:], canon...))
				copy(rec[len(rec)-32:], h[:])
				binary.BigEndian.PutUint32(b[o[2]+4:], crc32.Checksum(rec, castagnoli))
			}, 3, 4, 3,
		},
		{
			"removed event", func(b []byte, o []int64) {
				copy(b[o[1]:], b[o[2]:])
			}, 1, 2, 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, offsets := recorded(t, dir, "bad", 5)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(b, offsets)
			if tt.name == "removed event" {
				b = b[:len(b)-int(offsets[2]-offsets[1])]
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := readBack(t, dir, "bad")
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Events = %v (after %d events), want *CorruptError", err, n)
			}
			wantOff := int64(0)
			if tt.at >= 0 {
				wantOff = offsets[tt.at]
			}
			if n != tt.events || ce.Seq != tt.seq || ce.Offset != wantOff {
				t.Fatalf("got %d events and %v; want %d events, seq %d, offset %d", n, ce, tt.events, tt.seq, wantOff)
			}
		})
	}
}

func TestFsyncAlways(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Fsync: FsyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, err := s.Create(context.Background(), store.Session{ID: "always", StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	c := &storetest.Chain{Session: "always"}
	for range 3 {
		if err := w.Append(c.NextN(2)...); err != nil {
			t.Fatal(err)
		}
		if fw := w.(*writer); fw.dirty.Load() || !fw.dirsSynced {
			t.Fatalf("after Append in always mode: dirty %v, directories synced %v", fw.dirty.Load(), fw.dirsSynced)
		}
	}
}

func TestGroupCommit(t *testing.T) {
	s, err := Open(t.TempDir(), Options{FsyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, err := s.Create(context.Background(), store.Session{ID: "group", StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	c := &storetest.Chain{Session: "group"}
	if err := w.Append(c.NextN(2)...); err != nil {
		t.Fatal(err)
	}
	fw := w.(*writer)
	deadline := time.Now().Add(10 * time.Second)
	for fw.dirty.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the group commit never synced the recording")
		}
		time.Sleep(time.Millisecond)
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if !fw.dirsSynced {
		t.Fatal("directories not synced")
	}
}

func TestOptions(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{Fsync: "sometimes"}); err == nil {
		t.Fatal("Open accepted an unknown fsync policy")
	}
}

func TestPermissionsAndIDs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"", "../x", "a/b", ".hidden", "-x", string(bytes.Repeat([]byte("a"), 129))} {
		if _, err := s.Create(context.Background(), store.Session{ID: id}); err == nil {
			t.Fatalf("Create accepted id %q", id)
		}
	}
	if _, err := s.Create(context.Background(), store.Session{ID: "perm", StartedAt: start}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		dir:                              0o700 | os.ModeDir,
		filepath.Join(dir, "airlock.db"): 0o600,
		filepath.Join(dir, "recordings", "2026", "03", "14"):             0o700 | os.ModeDir,
		filepath.Join(dir, "recordings", "2026", "03", "14", "perm.alr"): 0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

// The index refuses, at its own level, what no code path of the store does.
func TestIndexIsAppendOnly(t *testing.T) {
	dir := t.TempDir()
	recorded(t, dir, "kept", 1)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`DELETE FROM sessions`,
		`UPDATE sessions SET user = 'mallory'`,
		`UPDATE sessions SET path = 'elsewhere'`,
	} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s succeeded", q)
		}
	}
	if _, err := db.Exec(`UPDATE sessions SET ended_at = 1, end_reason = 'x'`); err != nil {
		t.Fatalf("ending a session: %v", err)
	}
	if _, err := db.Exec(`UPDATE sessions SET end_reason = 'y'`); err == nil {
		t.Error("changing an ended session succeeded")
	}
	// An ended session is deleted only through the expiry gate, and not when held.
	for _, q := range []string{
		`DELETE FROM sessions`,
		`BEGIN; INSERT INTO expiry_gate (id, target, cutoff) SELECT 1, target || 'x', 2 FROM sessions; DELETE FROM sessions; COMMIT`,
		`BEGIN; INSERT INTO expiry_gate (id, target, cutoff) SELECT 1, target, 1 FROM sessions; DELETE FROM sessions; COMMIT`,
		`BEGIN; INSERT INTO holds (session_id, held) VALUES ('kept', 1); INSERT INTO expiry_gate (id, target, cutoff) SELECT 1, target, 2 FROM sessions; DELETE FROM sessions; COMMIT`,
	} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s succeeded", q)
		}
		db.Exec(`ROLLBACK`)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sessions`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("sessions after refused deletes: %d, %v", n, err)
	}
}

// A data directory whose path holds URI characters still gets its index inside it.
func TestIndexPathEscaped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a#b?c%d")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(context.Background(), store.Session{ID: "x", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, err := os.Stat(filepath.Join(dir, "airlock.db"))
	if err != nil || fi.Size() == 0 {
		t.Fatalf("index not in the data directory: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "a")); err == nil {
		t.Fatal("the index went to a truncated path")
	}
}

// A recording being written is read up to where its writer's last completed write ended: bytes
// after that (a write in progress) are not read, and damage before it is damage, not the end.
func TestLiveReadStopsAtTheWriterEnd(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const id = "live"
	w, err := s.Create(context.Background(), store.Session{ID: id, StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	c := &storetest.Chain{Session: id}
	evs := c.NextN(6)
	if err := w.Append(evs...); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "recordings", "2026", "03", "14", id+".alr")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	count := func() (int, error) {
		n := 0
		err := s.Events(context.Background(), id, 0, func(*event.Event) error { n++; return nil })
		return n, err
	}
	// Half of a next record, as a write in progress leaves it: not read, no error.
	next, err := appendRecord(nil, c.Next())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(next[:len(next)/2])
	f.Close()
	if n, err := count(); n != 6 || err != nil {
		t.Fatalf("live read with a write in progress: %d events, %v", n, err)
	}
	// A byte changed in the third record: corrupt, even though the session is running.
	third := int64(len(appendHeader(nil, id)))
	for i := 0; i < 2; i++ {
		third += frameLen + int64(binary.BigEndian.Uint32(b[third:]))
	}
	b[third+frameLen+20] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if n, err := count(); n != 2 || !errors.As(err, &ce) || ce.Seq != 3 {
		t.Fatalf("live read of a damaged recording: %d events, %v; want 2 and corruption at event 3", n, err)
	}
	// Records hands every record over, the damaged one with what is wrong with it.
	var damage []string
	if err := s.Records(context.Background(), id, func(r *store.Record) error {
		damage = append(damage, r.Damage)
		return nil
	}); err != nil || len(damage) != 6 || damage[2] == "" || damage[1] != "" || damage[3] != "" {
		t.Fatalf("Records: %q, %v", damage, err)
	}
}
