package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/metrics"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/filestore"
	"github.com/airlock-gw/airlock/internal/target"
	"github.com/airlock-gw/airlock/internal/verify"
)

// flakyStore wraps a real store so a test can make it refuse sessions, stall appends (until the
// gate is opened) or fail them, and then recover.
type flakyStore struct {
	store.Recordings
	mu         sync.Mutex
	failCreate bool
	failAppend bool
	gate       chan struct{} // non-nil: Append waits until it is closed
	failed     chan struct{} // non-nil: told (without waiting) of each failed Append
}

func (f *flakyStore) Create(ctx context.Context, s store.Session) (store.Writer, error) {
	f.mu.Lock()
	fail := f.failCreate
	f.mu.Unlock()
	if fail {
		return nil, errors.New("store down")
	}
	w, err := f.Recordings.Create(ctx, s)
	if err != nil {
		return nil, err
	}
	return &flakyWriter{Writer: w, f: f}, nil
}

// SetDropped passes the count of dropped events to the real store's index: the store does not
// fail it (a store whose event writes stall may still take index writes).
func (f *flakyStore) SetDropped(ctx context.Context, id string, n uint64) error {
	return f.Recordings.(DropCounter).SetDropped(ctx, id, n)
}

func (f *flakyStore) set(fn func(f *flakyStore)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

type flakyWriter struct {
	store.Writer
	f *flakyStore
}

func (w *flakyWriter) Append(events ...*event.Event) error {
	w.f.mu.Lock()
	gate := w.f.gate
	w.f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	w.f.mu.Lock()
	fail := w.f.failAppend
	w.f.mu.Unlock()
	if fail {
		select {
		case w.f.failed <- struct{}{}:
		default:
		}
		return errors.New("disk on fire")
	}
	return w.Writer.Append(events...)
}

func TestStrictFailsClosed(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	f := &flakyStore{Recordings: st}
	r := &Recorder{Store: f, Signer: keyring(t, t.TempDir())}
	for _, mode := range []string{"", target.RecordingStrict, target.RecordingBestEffort} {
		f.set(func(f *flakyStore) { f.failCreate = true })
		if _, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", Mode: mode}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("mode %q: start without a store: %v, want ErrUnavailable", mode, err)
		}
	}
	f.set(func(f *flakyStore) { f.failCreate = false })
	s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", Mode: target.RecordingStrict})
	if err != nil {
		t.Fatal(err)
	}
	f.set(func(f *flakyStore) { f.failAppend = true })
	s.Record(event.Query, event.QueryData{Text: "select 1"}, nil)
	if err := s.Commit(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("commit to a failing store: %v, want ErrUnavailable", err)
	}
	f.set(func(f *flakyStore) { f.failAppend = false })
	if err := s.Commit(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a store error must stay: %v", err)
	}
}

func TestBestEffortDropsCountsAndVerifies(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	f := &flakyStore{Recordings: st, failed: make(chan struct{}, 1)}
	keys := keyring(t, t.TempDir())
	clk := newClock()
	m := metrics.New()
	data := []byte(fmt.Sprintf(`{"text":%q,"protocol":"simple"}`, "select 1 -- padded to a round size ......"))
	const kept = 10
	r := &Recorder{Store: f, Now: clk.Now, Signer: keys, Metrics: m, CheckpointEvents: 8, BestEffortBuffer: kept * len(data)}
	s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", User: "alice", Mode: target.RecordingBestEffort})
	if err != nil {
		t.Fatal(err)
	}

	// The store stalls: Commit must not wait for it; the first `kept` events fit in the
	// buffer and the rest are dropped.
	gate := make(chan struct{})
	f.set(func(f *flakyStore) { f.gate = gate })
	record := func(n int) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			for range n {
				clk.Add(time.Millisecond)
				s.Record(event.Query, data, nil)
				if err := s.Commit(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("best-effort commit failed: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("best-effort Commit blocked on a stalled store")
		}
	}
	record(100)
	if got := s.Dropped(); got != 100-kept {
		t.Fatalf("dropped %d while the store stalled, want %d", got, 100-kept)
	}
	// The count shows in the index while the session runs.
	waitFor(t, "the index to count the drops of the running session", func() bool {
		sess, err := st.Session(context.Background(), s.ID())
		return err == nil && sess.EndedAt == nil && sess.DroppedEvents == 100-kept
	})

	// Then it fails: still nothing is written, so 5 more are dropped and the gap names the error.
	f.set(func(f *flakyStore) { f.failAppend, f.gate = true, nil })
	close(gate)
	<-f.failed
	<-f.failed // the writer noted the first failure before it retried
	record(5)
	// It recovers: the writer's retry writes the buffered events, and the next event is kept
	// behind a gap that stands for all 95 drops.
	f.set(func(f *flakyStore) { f.failAppend = false })
	s.waitDrained()
	record(3)
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}

	events := readAll(t, st, s.ID())
	if res := verifyEvents(keys, events); !res.Intact || res.Checkpoints == 0 {
		t.Fatalf("verify after recovery: %+v", res)
	}
	var queries, gaps int
	for i, e := range events {
		switch e.Type {
		case event.Query:
			queries++
		case event.RecordingGap:
			gaps++
			var g event.GapData
			if err := json.Unmarshal(e.Data, &g); err != nil {
				t.Fatal(err)
			}
			if g.Events != 95 || g.Bytes != uint64(95*len(data)) || g.StoreError == "" || g.FirstOffsetNS >= g.LastOffsetNS {
				t.Fatalf("gap %+v", g)
			}
			if queries != kept || events[i+1].Type != event.Query {
				t.Fatalf("gap at %d after %d queries, want it after the %d kept ones and before the next", i, queries, kept)
			}
		case event.SessionEnd:
			var d event.SessionEndData
			json.Unmarshal(e.Data, &d)
			if d.DroppedEvents != 95 {
				t.Fatalf("session.end dropped_events %d, want 95", d.DroppedEvents)
			}
		}
	}
	if queries != kept+3 || gaps != 1 {
		t.Fatalf("%d queries and %d gaps recorded, want %d and 1", queries, gaps, kept+3)
	}
	if got := counter(t, m, "airlock_events_dropped_total"); got != 95 {
		t.Fatalf("airlock_events_dropped_total = %v, want 95", got)
	}
	sess, err := st.Session(context.Background(), s.ID())
	if err != nil || sess.Events != uint64(len(events)) || sess.EndReason != "client_terminated" || sess.DroppedEvents != 95 {
		t.Fatalf("index: %+v, %v", sess, err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous deadline: what it waits
// for happens on another goroutine, timers included, on a machine that may be slow.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestBestEffortEndGivesUpCountsEverything: End gives up on a store that keeps failing. Every
// event the store did not take, session.end included, is counted (Dropped, the metric, the
// index), and the index entry is ended as incomplete at the last event the store took.
func TestBestEffortEndGivesUpCountsEverything(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	f := &flakyStore{Recordings: st, failed: make(chan struct{}, 1)}
	m := metrics.New()
	keys := keyring(t, t.TempDir())
	r := &Recorder{Store: f, Signer: keys, Metrics: m, DrainTimeout: 20 * time.Millisecond}
	s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", Mode: target.RecordingBestEffort})
	if err != nil {
		t.Fatal(err)
	}
	f.set(func(f *flakyStore) { f.failAppend = true })
	const n = 50
	for i := range n {
		s.Record(event.Query, event.QueryData{Text: fmt.Sprintf("select %d", i)}, nil)
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	<-f.failed // the writer holds events it cannot write
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("end on a failing store: %v, want ErrUnavailable", err)
	}
	<-s.be.done
	if err := s.be.err; err != nil {
		t.Fatalf("ending the incomplete recording: %v", err)
	}
	if got := s.Dropped(); got != n+1 {
		t.Fatalf("Dropped() = %d, want %d (the queries and session.end)", got, n+1)
	}
	if got := counter(t, m, "airlock_events_dropped_total"); got != n+1 {
		t.Fatalf("airlock_events_dropped_total = %v, want %d", got, n+1)
	}
	sess, err := st.Session(context.Background(), s.ID())
	if err != nil || sess.EndedAt == nil || sess.EndReason != EndIncomplete || sess.DroppedEvents != n+1 || sess.Events != 1 {
		t.Fatalf("index: %+v, %v; want ended %s with %d dropped and session.start alone", sess, err, EndIncomplete, n+1)
	}
	events := readAll(t, st, s.ID())
	if len(events) != 1 || events[0].Type != event.SessionStart {
		t.Fatalf("recording holds %d events, want session.start alone", len(events))
	}
	// Without session.end and its final checkpoint it verifies as what it is: truncated.
	if res := verifyEvents(keys, events); res.Intact || len(res.Findings) != 1 || res.Findings[0].Kind != verify.Truncated {
		t.Fatalf("verify the incomplete recording: %+v", res)
	}
}

// TestCheckpointTimerSignsIdleHead: a session that goes idle after an event gets its head signed
// by the checkpoint timer, not only at its next event or its end. The recorder's clock stands
// still, so that no event is recorded late enough to trigger a checkpoint itself.
func TestCheckpointTimerSignsIdleHead(t *testing.T) {
	for _, mode := range []string{target.RecordingStrict, target.RecordingBestEffort} {
		t.Run(mode, func(t *testing.T) {
			st := openStore(t, t.TempDir())
			defer st.Close()
			keys := keyring(t, t.TempDir())
			r := &Recorder{Store: st, Now: newClock().Now, Signer: keys, CheckpointInterval: 5 * time.Millisecond}
			s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			s.Record(event.Query, event.QueryData{Text: "select 1"}, nil)
			if err := s.Commit(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a checkpoint of the idle session's head", func() bool {
				for _, e := range readAll(t, st, s.ID()) {
					var d event.CheckpointData
					if e.Type == event.Checkpoint && json.Unmarshal(e.Data, &d) == nil && d.Seq >= 2 && !d.Final {
						return true
					}
				}
				return false
			})
			if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
				t.Fatal(err)
			}
			if res := verifyEvents(keys, readAll(t, st, s.ID())); !res.Intact {
				t.Fatalf("verify: %+v", res)
			}
		})
	}
}

func TestBestEffortEndGivesUpOnStalledStore(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	f := &flakyStore{Recordings: st}
	r := &Recorder{Store: f, DrainTimeout: 20 * time.Millisecond}
	s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", Mode: target.RecordingBestEffort})
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	f.set(func(f *flakyStore) { f.gate = gate })
	s.Record(event.Query, event.QueryData{Text: "select 1"}, nil)
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("end on a stalled store: %v, want ErrUnavailable", err)
	}
	close(gate)
	<-s.be.done // the writer finishes once the store answers
}

// BenchmarkIngest measures the recorder's ingest rate on the embedded store: sealing (SHA-256
// chain), signed checkpoints every 1000 events and group commit (fsync every 50ms), with a
// Commit per 16 events as a busy relay does. Reported as events/s.
func BenchmarkIngest(b *testing.B) {
	for _, mode := range []string{target.RecordingStrict, target.RecordingBestEffort} {
		b.Run(mode, func(b *testing.B) {
			st, err := filestore.Open(b.TempDir(), filestore.Options{Fsync: filestore.FsyncInterval})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			keys, _, err := signing.Open(b.TempDir(), "", nil)
			if err != nil {
				b.Fatal(err)
			}
			r := &Recorder{Store: st, Signer: keys, BestEffortBuffer: 64 << 20}
			s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", User: "alice", Mode: mode})
			if err != nil {
				b.Fatal(err)
			}
			data := []byte(`{"text":"select abalance from pgbench_accounts where aid = $1","protocol":"extended","params":[{"text":"42"}]}`)
			b.ReportAllocs()
			b.ResetTimer()
			t0 := time.Now()
			for i := 0; i < b.N; i++ {
				s.Record(event.Query, data, nil)
				if i%16 == 15 {
					if err := s.Commit(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
			b.ReportMetric(float64(s.Dropped()), "dropped")
		})
	}
}

// counter returns the sum of a counter's series.
func counter(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, s := range mf.GetMetric() {
				v += s.GetCounter().GetValue()
			}
		}
	}
	return v
}
