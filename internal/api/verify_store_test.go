package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/filestore"
	"github.com/airlock-gw/airlock/internal/verify"
)

// These tests tamper with a recording where it is kept (the file store's file, the PostgreSQL
// store's rows) and check that GET /verify names each problem with its typed finding, as
// offline verification of an export does: one finding per problem, not a refusal to read on.

// recordSigned records alice's session into st through the real recorder: session.start (1),
// select 0 (2), checkpoint (3), select 1 (4), select 2 (5), checkpoint (6), then, when end,
// session.end (7) and the final checkpoint (8); otherwise select 3 (7) and the session keeps
// running (its recorder session is returned).
func recordSigned(t *testing.T, f *fixture, st store.Store, end bool) (string, *recorder.Session) {
	t.Helper()
	keys, _, err := signing.Open(t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SigningKeys = keys
	f.srv.Store = st
	r := &recorder.Recorder{Store: st, Signer: keys, CheckpointEvents: 2, CheckpointInterval: time.Hour}
	s, err := r.Start(context.Background(), recorder.Info{Protocol: "postgres", Target: "pg", User: "alice",
		Start: event.SessionStartData{User: "alice", Target: "pg", TargetType: "postgres"}})
	if err != nil {
		t.Fatal(err)
	}
	n := 3
	if !end {
		n = 4
	}
	for i := 0; i < n; i++ {
		s.Record(event.Query, event.QueryData{Text: "select " + string(rune('0'+i)), Protocol: "simple"}, nil)
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if end {
		if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
			t.Fatal(err)
		}
		return s.ID(), nil
	}
	t.Cleanup(func() { s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}) })
	return s.ID(), s
}

// recFile is a file store recording split into its header and records (frames included).
type recFile struct {
	path    string
	header  []byte
	records [][]byte
}

func openRecFile(t *testing.T, dir, id string) *recFile {
	t.Helper()
	var path string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == id+".alr" {
			path = p
		}
		return nil
	})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hl := 5 + 1 + 2 + len(id) + 4
	rf := &recFile{path: path, header: b[:hl]}
	for b = b[hl:]; len(b) > 0; {
		n := 8 + int(binary.BigEndian.Uint32(b))
		rf.records = append(rf.records, b[:n])
		b = b[n:]
	}
	return rf
}

// write replaces the file's content in place (a running session's writer keeps its descriptor).
func (rf *recFile) write(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(rf.path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(slices.Concat(append([][]byte{rf.header}, rf.records...)...)); err != nil {
		t.Fatal(err)
	}
}

// frame returns the record of e, as the file store writes it.
func frame(e *event.Event) []byte {
	payload := append(e.Canonical(nil), e.Hash[:]...)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, payload...)
}

// replaceText changes one query text inside record i; with fixCRC the record's checksum is
// recomputed (someone who knows the format), otherwise left stale.
func (rf *recFile) replaceText(t *testing.T, i int, old, new string, fixCRC bool) {
	t.Helper()
	r := slices.Clone(rf.records[i])
	if !bytes.Contains(r, []byte(old)) || len(old) != len(new) {
		t.Fatalf("record %d does not hold %q", i, old)
	}
	r = bytes.Replace(r, []byte(old), []byte(new), 1)
	if fixCRC {
		binary.BigEndian.PutUint32(r[4:], crc32.Checksum(r[8:], crc32.MakeTable(crc32.Castagnoli)))
	}
	rf.records[i] = r
}

// foreign returns a record for seq, chained to record prev, as someone who knows the format
// but not the signing key would forge it.
func (rf *recFile) foreign(t *testing.T, id string, seq uint64, prev int, text string) []byte {
	t.Helper()
	var h [32]byte
	copy(h[:], rf.records[prev][len(rf.records[prev])-32:])
	e := &event.Event{Session: id, Seq: seq, Type: event.Query, Time: time.Now().UTC(),
		Data: mustJSON(event.QueryData{Text: text, Protocol: "simple"})}
	e.Seal(h, nil)
	return frame(e)
}

type finding struct {
	Kind verify.Kind
	Seq  uint64
}

func verifyFindings(t *testing.T, f *fixture, id string) (verify.Result, []finding) {
	t.Helper()
	res, b := f.do(t, "GET", "/api/v1/sessions/"+id+"/verify", "alice", "")
	var r verify.Result
	if res.StatusCode != 200 || json.Unmarshal(b, &r) != nil {
		t.Fatalf("verify: %d %s", res.StatusCode, b)
	}
	got := []finding{}
	for _, x := range r.Findings {
		got = append(got, finding{x.Kind, x.Seq})
	}
	return r, got
}

// fileTampering is what the file store tests do to a recording (records[i] is event i+1) and
// the findings verify must give, for an ended and for a running session.
var fileTampering = []struct {
	name   string
	tamper func(t *testing.T, rf *recFile, id string)
	want   []finding
}{
	{"intact", func(*testing.T, *recFile, string) {}, []finding{}},
	{"altered", func(t *testing.T, rf *recFile, _ string) { rf.replaceText(t, 3, "select 1", "select 9", false) },
		[]finding{{verify.Altered, 4}}},
	{"altered with its checksum fixed", func(t *testing.T, rf *recFile, _ string) { rf.replaceText(t, 3, "select 1", "select 9", true) },
		[]finding{{verify.Altered, 4}}},
	{"deleted", func(t *testing.T, rf *recFile, _ string) { rf.records = slices.Delete(rf.records, 3, 4) },
		[]finding{{verify.Missing, 4}}},
	{"inserted copy", func(t *testing.T, rf *recFile, _ string) { rf.records = slices.Insert(rf.records, 4, rf.records[3]) },
		[]finding{{verify.Inserted, 4}}},
	{"inserted forgery", func(t *testing.T, rf *recFile, id string) {
		rf.records = slices.Insert(rf.records, 3, rf.foreign(t, id, 4, 2, "drop table t"))
	}, []finding{{verify.Inserted, 4}}},
	{"reordered", func(t *testing.T, rf *recFile, _ string) { rf.records[3], rf.records[4] = rf.records[4], rf.records[3] },
		[]finding{{verify.Reordered, 4}}},
	{"altered and deleted", func(t *testing.T, rf *recFile, _ string) {
		rf.replaceText(t, 1, "select 0", "select 8", false)
		rf.records = slices.Delete(rf.records, 3, 4)
	}, []finding{{verify.Altered, 2}, {verify.Missing, 4}}},
}

func TestVerifyFileStoreTampered(t *testing.T) {
	for _, ended := range []bool{true, false} {
		name := "ended"
		if !ended {
			name = "running"
		}
		t.Run(name, func(t *testing.T) {
			for _, tt := range fileTampering {
				t.Run(tt.name, func(t *testing.T) {
					f := newFixture(t)
					st, dir := fileStore(t)
					id, _ := recordSigned(t, f, st, ended)
					rf := openRecFile(t, dir, id)
					if len(rf.records) != 7+btoi(ended) {
						t.Fatalf("%d records", len(rf.records))
					}
					tt.tamper(t, rf, id)
					rf.write(t)
					r, got := verifyFindings(t, f, id)
					if !slices.Equal(got, tt.want) || r.Intact != (len(tt.want) == 0) {
						t.Fatalf("findings %v, want %v: %+v", got, tt.want, r)
					}
				})
			}
		})
	}
}

// fileStore opens a file store in a directory of its own, closed when the test ends.
func fileStore(t *testing.T) (*filestore.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := filestore.Open(dir, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dir
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestVerifyFileStoreTruncated(t *testing.T) {
	f := newFixture(t)
	st, dir := fileStore(t)
	id, _ := recordSigned(t, f, st, true)
	rf := openRecFile(t, dir, id)
	// Cut after the last intermediate checkpoint: session.end and the final checkpoint gone.
	rf.records = rf.records[:6]
	rf.write(t)
	if _, got := verifyFindings(t, f, id); !slices.Equal(got, []finding{{verify.Truncated, 7}}) {
		t.Fatalf("cut at a checkpoint: %v", got)
	}
	// Cut inside a record: the piece cannot be framed.
	rf.records = append(rf.records, rf.records[5][:10])
	rf.write(t)
	if _, got := verifyFindings(t, f, id); !slices.Equal(got, []finding{{verify.Unreadable, 7}, {verify.Truncated, 7}}) {
		t.Fatalf("cut inside a record: %v", got)
	}
}

// A store read that fails after the response began must not look like a complete export.
func TestExportAbortsOnDamage(t *testing.T) {
	f := newFixture(t)
	st, dir := fileStore(t)
	id, _ := recordSigned(t, f, st, true)
	rf := openRecFile(t, dir, id)
	rf.replaceText(t, 3, "select 1", "select 9", false)
	rf.write(t)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	for _, format := range []string{"jsonl", "asciicast"} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/sessions/"+id+"/export?format="+format, nil)
		req.Header.Set("Authorization", "Bearer "+f.tokens["alice"])
		res, err := srv.Client().Do(req)
		if err != nil {
			continue // aborted before the status line: also a failure the client sees
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil {
			t.Fatalf("%s: export of a damaged recording read as complete (%d lines)", format, strings.Count(string(b), "\n"))
		}
	}
}
