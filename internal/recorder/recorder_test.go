package recorder

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/filestore"
	"github.com/airlock-gw/airlock/internal/verify"
)

// clock is a manual clock: tests move it, nothing sleeps.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)} }

func openStore(t *testing.T, dir string) *filestore.Store {
	t.Helper()
	st, err := filestore.Open(dir, filestore.Options{Fsync: filestore.FsyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func keyring(t *testing.T, dir string) *signing.Keyring {
	t.Helper()
	k, _, err := signing.Open(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func readAll(t *testing.T, st store.Recordings, id string) []*event.Event {
	t.Helper()
	var out []*event.Event
	err := st.Events(context.Background(), id, 0, func(e *event.Event) error {
		c := *e
		c.Data = append([]byte(nil), e.Data...)
		c.Raw = append([]byte(nil), e.Raw...)
		out = append(out, &c)
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return out
}

func verifyEvents(keys *signing.Keyring, events []*event.Event) verify.Result {
	v := &verify.Verifier{Keys: keys.Public()}
	for _, e := range events {
		v.Add(e)
	}
	return v.Finish()
}

func TestCheckpoints(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	defer st.Close()
	keys := keyring(t, t.TempDir())
	clk := newClock()
	r := &Recorder{Store: st, Now: clk.Now, Signer: keys, CheckpointEvents: 4, CheckpointInterval: 5 * time.Second}
	s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ { // with session.start: 6 events, a checkpoint after the 4th
		s.Record(event.Query, event.QueryData{Text: "select 1"}, nil)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	clk.Add(5 * time.Second) // the next event is the first one 5s after the last checkpoint
	s.Record(event.Query, event.QueryData{Text: "select 2"}, nil)
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}
	events := readAll(t, st, s.ID())
	var got []string
	for _, e := range events {
		got = append(got, string(e.Type))
	}
	want := []string{"session.start", "query", "query", "query", "checkpoint", "query", "query", "query", "checkpoint", "session.end", "checkpoint"}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	var last event.CheckpointData
	json.Unmarshal(events[len(events)-1].Data, &last)
	if !last.Final || last.Seq != 10 || last.KeyID != keys.KeyID() {
		t.Fatalf("final checkpoint %+v", last)
	}
	if res := verifyEvents(keys, events); !res.Intact || res.Checkpoints != 3 {
		t.Fatalf("verify: %+v", res)
	}
	sess, err := st.Session(context.Background(), s.ID())
	if err != nil || sess.Events != uint64(len(events)) || sess.EndReason != "client_terminated" {
		t.Fatalf("index: %+v, %v", sess, err)
	}
}

func TestNoSignerNoCheckpoints(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	r := &Recorder{Store: st, CheckpointEvents: 1}
	s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	s.Record(event.Query, event.QueryData{Text: "select 1"}, nil)
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}
	for _, e := range readAll(t, st, s.ID()) {
		if e.Type == event.Checkpoint {
			t.Fatalf("checkpoint without a signer: %+v", e)
		}
	}
}

func BenchmarkRecordWithCheckpoints(b *testing.B) {
	st, err := filestore.Open(b.TempDir(), filestore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	keys, _, err := signing.Open(b.TempDir(), "", nil)
	if err != nil {
		b.Fatal(err)
	}
	r := &Recorder{Store: st, Signer: keys}
	s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", User: "alice"})
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"text":"select 1","protocol":"simple"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Record(event.Query, data, nil)
		if i%64 == 63 {
			s.Commit()
		}
	}
	s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"})
}
