package filestore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// benchEvents returns n reusable events of about 200 bytes of data, the size of a short query
// or a small result row.
func benchEvents(n int) []*event.Event {
	data := []byte(`{"text":"SELECT id, name, email FROM users WHERE id = $1","protocol":"extended","params":[{"text":"42"}]}`)
	data = append(data, bytes.Repeat([]byte(" "), 200-len(data))...)
	out := make([]*event.Event, n)
	for i := range out {
		out[i] = &event.Event{Session: "bench", Type: event.Query, Data: data}
	}
	return out
}

// BenchmarkAppend measures what the recorder pays per commit: sealing the events into the chain
// and appending them.
func BenchmarkAppend(b *testing.B) {
	for _, fsync := range []string{FsyncInterval, FsyncAlways} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("fsync=%s/batch=%d", fsync, batch), func(b *testing.B) {
				s, err := Open(b.TempDir(), Options{Fsync: fsync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				w, err := s.Create(context.Background(), store.Session{ID: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				events := benchEvents(batch)
				var (
					seq     uint64
					prev    [32]byte
					scratch []byte
					t0      = time.Now()
				)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					for _, e := range events {
						seq++
						e.Seq = seq
						e.Offset = time.Duration(seq)
						e.Time = t0
						scratch = e.Seal(prev, scratch)
						prev = e.Hash
					}
					if err := w.Append(events...); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/append")
			})
		}
	}
}

// BenchmarkSQLiteInsert is the alternative we did not take, for docs/storage.md: each Append as
// one SQLite transaction inserting one row per event (WAL; synchronous=NORMAL is the analogue of
// the interval policy, FULL of always).
func BenchmarkSQLiteInsert(b *testing.B) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("synchronous=%s/batch=%d", sync, batch), func(b *testing.B) {
				dsn := "file:" + filepath.Join(b.TempDir(), "ev.db") +
					"?_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_txlock=immediate"
				db, err := sql.Open("sqlite", dsn)
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				db.SetMaxOpenConns(1)
				if _, err := db.Exec(`CREATE TABLE events (session TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
					offset_ns INTEGER NOT NULL, time_ns INTEGER NOT NULL, data BLOB NOT NULL, raw BLOB, hash BLOB NOT NULL,
					PRIMARY KEY (session, seq)) WITHOUT ROWID`); err != nil {
					b.Fatal(err)
				}
				insert, err := db.Prepare(`INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
				if err != nil {
					b.Fatal(err)
				}
				defer insert.Close()
				events := benchEvents(batch)
				var (
					seq     uint64
					prev    [32]byte
					scratch []byte
					t0      = time.Now()
				)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					tx, err := db.Begin()
					if err != nil {
						b.Fatal(err)
					}
					stmt := tx.Stmt(insert)
					for _, e := range events {
						seq++
						e.Seq, e.Offset, e.Time = seq, time.Duration(seq), t0
						scratch = e.Seal(prev, scratch)
						prev = e.Hash
						if _, err := stmt.Exec(e.Session, int64(e.Seq), string(e.Type), int64(e.Offset), e.Time.UnixNano(), e.Data, e.Raw, e.Hash[:]); err != nil {
							b.Fatal(err)
						}
					}
					stmt.Close()
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/append")
			})
		}
	}
}

// BenchmarkEvents measures reading back with full verification.
func BenchmarkEvents(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w, err := s.Create(context.Background(), store.Session{ID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	events := benchEvents(1)
	var prev [32]byte
	for i := 1; i <= n; i++ {
		e := events[0]
		e.Seq, e.Time = uint64(i), time.Now()
		e.Seal(prev, nil)
		prev = e.Hash
		if err := w.Append(e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.Events(context.Background(), "bench", 0, func(*event.Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendBulk is bulk output (ssh cat, kubectl exec): one event of 256 KiB per commit,
// sealed and appended; it reports the bytes per second.
func BenchmarkAppendBulk(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w, err := s.Create(context.Background(), store.Session{ID: "bulk"})
	if err != nil {
		b.Fatal(err)
	}
	raw := make([]byte, 256<<10)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	e := &event.Event{Session: "bulk", Type: event.TerminalOutput, Data: []byte(`{"channel":1,"bytes":262144}`), Raw: raw}
	var (
		seq     uint64
		prev    [32]byte
		scratch []byte
		t0      = time.Now()
	)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		seq++
		e.Seq, e.Offset, e.Time = seq, time.Duration(seq), t0
		scratch = e.Seal(prev, scratch)
		prev = e.Hash
		if err := w.Append(e); err != nil {
			b.Fatal(err)
		}
	}
}
