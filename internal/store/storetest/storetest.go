// Package storetest is the suite every store backend must pass.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// Opener opens the backend under test on dir. Each subtest passes a fresh directory; opening the
// same dir again after Close must reach the same data (a backend on a server can derive a
// database or schema name from dir). The suite closes what it opens.
type Opener func(t *testing.T, dir string) store.Store

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"AppendAndRead", testAppendAndRead},
		{"AppendRejectsBrokenChain", testAppendRejects},
		{"ConcurrentSessions", testConcurrent},
		{"ReadWhileWriting", testReadWhileWriting},
		{"Filter", testFilter},
		{"FilterStatusTextPages", testFilterStatusTextPages},
		{"NotFound", testNotFound},
		{"CreateDuplicate", testCreateDuplicate},
		{"EndOnce", testEndOnce},
		{"Reopen", testReopen},
		{"Resume", testResume},
		{"Targets", testTargets},
		{"KV", testKV},
		{"Closed", testClosed},
		{"EventsCallbackError", testCallbackError},
		{"Hold", testHold},
		{"Expire", testExpire},
		{"DroppedEvents", testDroppedEvents},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

// Chain builds a session's sealed events the way the recorder does.
type Chain struct {
	Session string
	seq     uint64
	prev    [32]byte
	buf     []byte
}

// Next returns the next sealed event, with data and raw derived from its sequence number.
func (c *Chain) Next() *event.Event {
	c.seq++
	e := &event.Event{
		Session: c.Session, Seq: c.seq, Type: event.Query,
		Offset: time.Duration(c.seq) * time.Millisecond,
		Time:   t0.Add(time.Duration(c.seq) * time.Millisecond),
		Data:   fmt.Appendf(nil, `{"text":"select %d"}`, c.seq),
	}
	if c.seq%3 == 0 {
		e.Type = event.Rows
		e.Raw = event.AppendRow(nil, [][]byte{fmt.Appendf(nil, "%d", c.seq), nil})
	}
	c.buf = e.Seal(c.prev, c.buf)
	c.prev = e.Hash
	return e
}

// NextN returns n events.
func (c *Chain) NextN(n int) []*event.Event {
	out := make([]*event.Event, n)
	for i := range out {
		out[i] = c.Next()
	}
	return out
}

func session(id string, start time.Time) store.Session {
	return store.Session{ID: id, User: "alice", Target: "pg", Type: "postgres", ClientAddr: "127.0.0.1:5555", StartedAt: start}
}

func mustOpen(t *testing.T, open Opener, dir string) store.Store {
	t.Helper()
	s := open(t, dir)
	t.Cleanup(func() { s.Close() })
	return s
}

func create(t *testing.T, s store.Store, sess store.Session) store.Writer {
	t.Helper()
	w, err := s.Create(context.Background(), sess)
	if err != nil {
		t.Fatalf("Create(%s): %v", sess.ID, err)
	}
	return w
}

func appendOK(t *testing.T, w store.Writer, events ...*event.Event) {
	t.Helper()
	if err := w.Append(events...); err != nil {
		t.Fatalf("Append(%d events from %d): %v", len(events), events[0].Seq, err)
	}
}

// readAll returns copies of the events of id after seq `after`, checking order and the chain.
func readAll(t *testing.T, s store.Store, id string, after uint64) []*event.Event {
	t.Helper()
	var out []*event.Event
	err := s.Events(context.Background(), id, after, func(e *event.Event) error {
		c := *e
		c.Data = bytes.Clone(e.Data)
		c.Raw = bytes.Clone(e.Raw)
		out = append(out, &c)
		return nil
	})
	if err != nil {
		t.Fatalf("Events(%s, %d): %v", id, after, err)
	}
	checkChain(t, out, after)
	return out
}

func checkChain(t *testing.T, got []*event.Event, after uint64) {
	t.Helper()
	for i, e := range got {
		if e.Seq != after+uint64(i)+1 {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, after+uint64(i)+1)
		}
		if !e.Verify() {
			t.Fatalf("event %d does not verify", e.Seq)
		}
		if i > 0 && e.Prev != got[i-1].Hash {
			t.Fatalf("event %d does not chain to %d", e.Seq, got[i-1].Seq)
		}
		if e.Seq == 1 && e.Prev != ([32]byte{}) {
			t.Fatalf("first event has non-zero prev")
		}
	}
}

func sameEvents(t *testing.T, got, want []*event.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Session != w.Session || g.Seq != w.Seq || g.Type != w.Type || g.Offset != w.Offset ||
			!g.Time.Equal(w.Time) || !bytes.Equal(g.Data, w.Data) || !bytes.Equal(g.Raw, w.Raw) ||
			g.Prev != w.Prev || g.Hash != w.Hash {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func testAppendAndRead(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	w := create(t, s, session("s-read", t0))
	c := &Chain{Session: "s-read"}
	want := c.NextN(10)
	appendOK(t, w, want[0])
	appendOK(t, w, want[1:4]...)
	appendOK(t, w, want[4:]...)
	if err := w.Append(); err != nil {
		t.Fatalf("empty Append: %v", err)
	}
	if err := w.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	sameEvents(t, readAll(t, s, "s-read", 0), want)
	sameEvents(t, readAll(t, s, "s-read", 4), want[4:])
	sameEvents(t, readAll(t, s, "s-read", 10), nil)
	sameEvents(t, readAll(t, s, "s-read", 99), nil)

	// A large event (a big COPY chunk) goes through too.
	big := c.Next()
	big.Raw = bytes.Repeat([]byte("x"), 3<<20)
	c.buf = big.Seal(big.Prev, c.buf)
	c.prev = big.Hash
	appendOK(t, w, big)
	got := readAll(t, s, "s-read", 10)
	sameEvents(t, got, []*event.Event{big})
}

func testAppendRejects(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	w := create(t, s, session("s-rej", t0))
	c := &Chain{Session: "s-rej"}
	e1, e2, e3 := c.Next(), c.Next(), c.Next()
	appendOK(t, w, e1)

	tests := []struct {
		name   string
		events func() []*event.Event
	}{
		{"gap", func() []*event.Event { return []*event.Event{e3} }},
		{"repeat", func() []*event.Event { return []*event.Event{e1} }},
		{"gap inside batch", func() []*event.Event { return []*event.Event{e2, e2} }},
		{"wrong prev", func() []*event.Event {
			bad := *e2
			bad.Prev[0] ^= 1
			return []*event.Event{&bad}
		}},
		{"other session", func() []*event.Event {
			other := (&Chain{Session: "s-other"}).NextN(2)
			return other[1:]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := w.Append(tt.events()...); err == nil {
				t.Fatal("Append accepted events that break the chain")
			}
		})
	}
	// The writer is still usable, and nothing of the rejected batches was written.
	appendOK(t, w, e2, e3)
	sameEvents(t, readAll(t, s, "s-rej", 0), []*event.Event{e1, e2, e3})
}

func testConcurrent(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	const sessions, perSession = 16, 300
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("s-conc-%02d", i)
			w, err := s.Create(context.Background(), session(id, t0.Add(time.Duration(i)*time.Second)))
			if err != nil {
				errs <- err
				return
			}
			c := &Chain{Session: id}
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for n := 0; n < perSession; {
				k := min(1+rng.IntN(20), perSession-n)
				if err := w.Append(c.NextN(k)...); err != nil {
					errs <- err
					return
				}
				n += k
			}
			errs <- w.End(context.Background(), store.SessionEnd{EndedAt: t0.Add(time.Hour), Reason: "client_terminated", Events: c.seq, Head: c.prev})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range sessions {
		id := fmt.Sprintf("s-conc-%02d", i)
		if got := readAll(t, s, id, 0); len(got) != perSession {
			t.Fatalf("%s: %d events, want %d", id, len(got), perSession)
		}
		sess, err := s.Session(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if sess.Events != perSession || sess.EndedAt == nil {
			t.Fatalf("%s: %+v", id, sess)
		}
	}
}

func testReadWhileWriting(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	w := create(t, s, session("s-live", t0))
	c := &Chain{Session: "s-live"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			if err := w.Append(c.NextN(5)...); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Readers see a growing prefix of the chain, never an error.
	for {
		select {
		case <-done:
			got := readAll(t, s, "s-live", 0)
			if len(got) != 1000 {
				t.Fatalf("%d events, want 1000", len(got))
			}
			return
		default:
			readAll(t, s, "s-live", 0)
		}
	}
}

func testFilter(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	type spec struct {
		id, user, target, typ string
		start, end            int // hours from t0; end -1: running
	}
	specs := []spec{
		{"a", "alice", "pg", "postgres", 0, 1},
		{"b", "bob", "pg", "postgres", 2, 5},
		{"c", "alice", "mysql", "mysql", 3, -1},
		{"d", "carol", "ssh1", "ssh", 6, 7},
		{"e", "alice", "pg", "postgres", 8, 8}, // zero length
	}
	for _, sp := range specs {
		w := create(t, s, store.Session{ID: sp.id, User: sp.user, Target: sp.target, Type: sp.typ, ClientAddr: "10.0.0.1:1", StartedAt: h(sp.start)})
		if sp.end >= 0 {
			if err := w.End(ctx, store.SessionEnd{EndedAt: h(sp.end), Reason: "client_terminated"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		f    store.Filter
		want string
	}{
		{"all newest first", store.Filter{}, "edcba"},
		{"limit", store.Filter{Limit: 2}, "ed"},
		{"user", store.Filter{User: "alice"}, "eca"},
		{"target", store.Filter{Target: "pg"}, "eba"},
		{"type", store.Filter{Type: "ssh"}, "d"},
		{"user and target", store.Filter{User: "alice", Target: "pg"}, "ea"},
		{"nothing", store.Filter{User: "mallory"}, ""},
		// [4h, 6h): b ended at 5 (overlaps), c runs, d starts at 6 (excluded: To is exclusive).
		{"window", store.Filter{From: h(4), To: h(6)}, "cb"},
		// From is inclusive of an end exactly at From.
		{"ended at from", store.Filter{From: h(1), To: h(2)}, "a"},
		{"from only", store.Filter{From: h(7)}, "edc"},
		{"to only", store.Filter{To: h(3)}, "ba"},
		{"window and user", store.Filter{From: h(4), To: h(9), User: "alice"}, "ec"},
		{"window before everything", store.Filter{From: h(-5), To: h(-1)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Sessions(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			ids := ""
			for _, g := range got {
				ids += g.ID
			}
			if ids != tt.want {
				t.Fatalf("Sessions(%+v) = %q, want %q", tt.f, ids, tt.want)
			}
		})
	}
	got, err := s.Session(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := store.Session{ID: "c", User: "alice", Target: "mysql", Type: "mysql", ClientAddr: "10.0.0.1:1", StartedAt: h(3)}
	if got.ID != want.ID || got.User != want.User || got.Target != want.Target || got.Type != want.Type ||
		got.ClientAddr != want.ClientAddr || !got.StartedAt.Equal(want.StartedAt) || got.EndedAt != nil {
		t.Fatalf("Session(c) = %+v, want %+v", got, want)
	}
}

// testFilterStatusTextPages: Filter.Status, Filter.Text (a statement's words, case-insensitive,
// wildcards taken literally) and keyset pages through Filter.Before.
func testFilterStatusTextPages(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	queries := map[string][]string{
		"s1": {"SELECT * FROM customers WHERE email LIKE '%@example.com'"},
		"s2": {"update orders set paid = true", "select 100% as pct"},
		"s3": {"select 1"},
		"s4": {"select 'kumquat running'"}, // still running: listed as active, found by its text
		"s5": {"SELECT name FROM Customers_2"},
	}
	for i, id := range []string{"s1", "s2", "s3", "s4", "s5"} {
		start := t0.Add(time.Duration(i) * time.Minute)
		if id == "s3" || id == "s5" {
			start = t0.Add(10 * time.Minute) // same start: the id breaks the tie
		}
		w := create(t, s, session(id, start))
		c := &Chain{Session: id}
		var evs []*event.Event
		for _, q := range queries[id] {
			c.seq++
			e := &event.Event{Session: id, Seq: c.seq, Type: event.Query, Offset: time.Duration(c.seq), Time: start,
				Data: fmt.Appendf(nil, `{"text":%q,"protocol":"simple"}`, q)}
			c.buf = e.Seal(c.prev, c.buf)
			c.prev = e.Hash
			evs = append(evs, e)
		}
		appendOK(t, w, evs...)
		if id != "s4" {
			if err := w.End(ctx, store.SessionEnd{EndedAt: start.Add(time.Second), Reason: "client_terminated", Events: c.seq, Head: c.prev}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids := func(f store.Filter) string {
		t.Helper()
		got, err := s.Sessions(ctx, f)
		if err != nil {
			t.Fatalf("Sessions(%+v): %v", f, err)
		}
		out := ""
		for _, g := range got {
			out += g.ID + " "
		}
		return strings.TrimSpace(out)
	}
	tests := []struct {
		name string
		f    store.Filter
		want string
	}{
		{"all", store.Filter{}, "s5 s3 s4 s2 s1"},
		{"active", store.Filter{Status: store.StatusActive}, "s4"},
		{"ended", store.Filter{Status: store.StatusEnded}, "s5 s3 s2 s1"},
		{"text, any case", store.Filter{Text: "CUSTOMERS"}, "s5 s1"},
		{"text in a later statement", store.Filter{Text: "100%"}, "s2"},
		{"percent is literal", store.Filter{Text: "e%a"}, ""},
		{"underscore is literal", store.Filter{Text: "s_2"}, "s5"},
		{"text and user", store.Filter{Text: "customers", User: "bob"}, ""},
		{"no match", store.Filter{Text: "drop table"}, ""},
		{"text of a running session", store.Filter{Text: "KUMQUAT RUN"}, "s4"},
		{"text of a running session, active", store.Filter{Text: "kumquat", Status: store.StatusActive}, "s4"},
		{"text of a running session, ended", store.Filter{Text: "kumquat", Status: store.StatusEnded}, ""},
		{"page 1", store.Filter{Limit: 2}, "s5 s3"},
		{"page 2", store.Filter{Limit: 2, Before: store.Cursor{StartedAt: t0.Add(10 * time.Minute), ID: "s3"}}, "s4 s2"},
		{"page 3", store.Filter{Limit: 2, Before: store.Cursor{StartedAt: t0.Add(1 * time.Minute), ID: "s2"}}, "s1"},
		{"tie broken by id", store.Filter{Before: store.Cursor{StartedAt: t0.Add(10 * time.Minute), ID: "s5"}}, "s3 s4 s2 s1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(tt.f); got != tt.want {
				t.Fatalf("Sessions(%+v) = %q, want %q", tt.f, got, tt.want)
			}
		})
	}
	if _, err := s.Sessions(ctx, store.Filter{Status: "paused"}); err == nil {
		t.Error("Sessions with an unknown status: no error")
	}
}

func testNotFound(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	if _, err := s.Session(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Session(nope) = %v, want ErrNotFound", err)
	}
	err := s.Events(ctx, "nope", 0, func(*event.Event) error { return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Events(nope) = %v, want ErrNotFound", err)
	}
}

func testCreateDuplicate(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	w := create(t, s, session("dup", t0))
	if _, err := s.Create(context.Background(), session("dup", t0)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create while open = %v, want ErrExists", err)
	}
	if err := w.End(context.Background(), store.SessionEnd{EndedAt: t0.Add(time.Minute), Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	// Another day: a different place on disk for a file-backed store, still the same id.
	if _, err := s.Create(context.Background(), session("dup", t0.Add(48*time.Hour))); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create after end = %v, want ErrExists", err)
	}
}

func testEndOnce(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	w := create(t, s, session("s-end", t0))
	c := &Chain{Session: "s-end"}
	appendOK(t, w, c.NextN(4)...)
	end := store.SessionEnd{EndedAt: t0.Add(90 * time.Second), Reason: "client_terminated", Events: 4, Head: c.prev}
	if err := w.End(ctx, end); err != nil {
		t.Fatalf("End: %v", err)
	}
	got, err := s.Session(ctx, "s-end")
	if err != nil {
		t.Fatal(err)
	}
	if got.EndedAt == nil || !got.EndedAt.Equal(end.EndedAt) || got.EndReason != "client_terminated" ||
		got.Events != 4 || got.Head != fmt.Sprintf("%x", c.prev) {
		t.Fatalf("after End: %+v", got)
	}
	if err := w.End(ctx, store.SessionEnd{EndedAt: t0.Add(time.Hour), Reason: "error"}); err == nil {
		t.Fatal("second End succeeded")
	}
	if err := w.Append(c.Next()); err == nil {
		t.Fatal("Append after End succeeded")
	}
	again, err := s.Session(ctx, "s-end")
	if err != nil {
		t.Fatal(err)
	}
	if !again.EndedAt.Equal(*got.EndedAt) || again.EndReason != got.EndReason || again.Events != 4 {
		t.Fatalf("second End changed the session: %+v", again)
	}
	if n := len(readAll(t, s, "s-end", 0)); n != 4 {
		t.Fatalf("%d events after End, want 4", n)
	}
}

func testReopen(t *testing.T, open Opener) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	ended, running := &Chain{Session: "s-ended"}, &Chain{Session: "s-running"}
	w1 := create(t, s, session("s-ended", t0))
	w2 := create(t, s, session("s-running", t0.Add(time.Minute)))
	e1, e2 := ended.NextN(7), running.NextN(5)
	appendOK(t, w1, e1...)
	appendOK(t, w2, e2...)
	if err := w1.End(ctx, store.SessionEnd{EndedAt: t0.Add(time.Hour), Reason: "client_terminated", Events: 7, Head: ended.prev}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTarget(ctx, target.Target{Name: "pg", Type: "postgres", Address: "127.0.0.1:5432"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKV(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// A writer of a closed store refuses to append rather than write behind the store's back.
	if err := w2.Append(running.Next()); err == nil {
		t.Fatal("Append after Close succeeded")
	}

	s = mustOpen(t, open, dir)
	sameEvents(t, readAll(t, s, "s-ended", 0), e1)
	sameEvents(t, readAll(t, s, "s-running", 0), e2)
	list, err := s.Sessions(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "s-running" || list[0].EndedAt != nil || list[1].Events != 7 {
		t.Fatalf("after reopen: %+v", list)
	}
	if tg, err := s.GetTarget(ctx, "pg"); err != nil || tg.Address != "127.0.0.1:5432" {
		t.Fatalf("GetTarget after reopen = %+v, %v", tg, err)
	}
	if v, err := s.GetKV(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("GetKV after reopen = %q, %v", v, err)
	}
}

// Resumer is how crash recovery (recorder.Recover) continues a recording a stopped process left
// running; every backend must have it.
type Resumer interface {
	Resume(ctx context.Context, id string) (w store.Writer, seq uint64, head [32]byte, err error)
}

// testResume is crash recovery at the store: a session left running by a process that stopped
// without ending it is resumed after its last event, continued with the chain and ended; a
// resume of an ended or unknown session is refused.
func testResume(t *testing.T, open Opener) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	if _, ok := s.(Resumer); !ok {
		t.Fatalf("%T cannot resume recordings: crash recovery needs Resume", s)
	}
	c := &Chain{Session: "s-crashed"}
	w := create(t, s, session("s-crashed", t0))
	before := c.NextN(5)
	appendOK(t, w, before...)
	ended := &Chain{Session: "s-ended"}
	we := create(t, s, session("s-ended", t0))
	appendOK(t, we, ended.NextN(2)...)
	if err := we.End(ctx, store.SessionEnd{EndedAt: t0.Add(time.Minute), Reason: "client_terminated", Events: 2, Head: ended.prev}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // the process stops; s-crashed was never ended
		t.Fatal(err)
	}

	s = mustOpen(t, open, dir)
	r := s.(Resumer)
	w, seq, head, err := r.Resume(ctx, "s-crashed")
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if seq != 5 || head != c.prev {
		t.Fatalf("Resume = seq %d head %x, want 5 and the last event's hash", seq, head[:4])
	}
	after := c.NextN(2)
	appendOK(t, w, after...)
	if err := w.End(ctx, store.SessionEnd{EndedAt: t0.Add(time.Hour), Reason: "interrupted", Events: 7, Head: c.prev}); err != nil {
		t.Fatal(err)
	}
	sameEvents(t, readAll(t, s, "s-crashed", 0), append(before, after...))
	got, err := s.Session(ctx, "s-crashed")
	if err != nil || got.EndedAt == nil || got.EndReason != "interrupted" || got.Events != 7 {
		t.Fatalf("after resume and end: %+v, %v", got, err)
	}
	// Only a running session can be resumed.
	for _, id := range []string{"s-crashed", "s-ended", "s-unknown"} {
		if w, _, _, err := r.Resume(ctx, id); err == nil {
			w.End(ctx, store.SessionEnd{})
			t.Errorf("Resume(%s) succeeded; only a session left running may be resumed", id)
		}
	}
}

func testTargets(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	if _, err := s.GetTarget(ctx, "pg"); !errors.Is(err, target.ErrUnknown) {
		t.Fatalf("GetTarget(absent) = %v, want target.ErrUnknown", err)
	}
	if l, err := s.ListTargets(ctx); err != nil || len(l) != 0 {
		t.Fatalf("ListTargets(empty) = %v, %v", l, err)
	}
	pg := target.Target{
		Name: "pg", Type: "postgres", Address: "127.0.0.1:5432", Database: "test", Username: "postgres",
		Password: "secret", TLS: "require", Labels: map[string]string{"env": "dev"}, Source: "api",
		CreatedAt: t0, CreatedBy: "alice",
	}
	for _, tg := range []target.Target{pg, {Name: "mysql", Type: "mysql", Address: "127.0.0.1:3306"}, {Name: "a-ssh", Type: "ssh", Address: "h:22"}} {
		if err := s.PutTarget(ctx, tg); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetTarget(ctx, "pg")
	if err != nil {
		t.Fatal(err)
	}
	if got.Password != "secret" || got.Labels["env"] != "dev" || !got.CreatedAt.Equal(t0) || got.TLS != "require" {
		t.Fatalf("GetTarget = %+v", got)
	}
	pg.Address = "10.0.0.5:5432"
	if err := s.PutTarget(ctx, pg); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetTarget(ctx, "pg"); got.Address != "10.0.0.5:5432" {
		t.Fatalf("replace: %+v", got)
	}
	l, err := s.ListTargets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range l {
		names = append(names, tg.Name)
	}
	if fmt.Sprint(names) != "[a-ssh mysql pg]" {
		t.Fatalf("ListTargets = %v", names)
	}
}

func testKV(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	if _, err := s.GetKV(ctx, "admin"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetKV(absent) = %v, want ErrNotFound", err)
	}
	bin := []byte{0, 1, 2, 0xff, 0}
	for _, kv := range []struct {
		k string
		v []byte
	}{{"admin", []byte("hash1")}, {"bin", bin}, {"empty", nil}, {"admin", []byte("hash2")}} {
		if err := s.PutKV(ctx, kv.k, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	for k, want := range map[string][]byte{"admin": []byte("hash2"), "bin": bin, "empty": {}} {
		got, err := s.GetKV(ctx, k)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("GetKV(%s) = %q, %v; want %q", k, got, err, want)
		}
	}
}

func testClosed(t *testing.T, open Opener) {
	s := open(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, err := s.Create(ctx, session("late", t0)); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Create after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Sessions(ctx, store.Filter{}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Sessions after Close = %v, want ErrClosed", err)
	}
	if _, err := s.GetKV(ctx, "k"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("GetKV after Close = %v, want ErrClosed", err)
	}
}

func testCallbackError(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	w := create(t, s, session("s-cb", t0))
	c := &Chain{Session: "s-cb"}
	appendOK(t, w, c.NextN(5)...)
	stop := errors.New("stop")
	n := 0
	err := s.Events(context.Background(), "s-cb", 0, func(*event.Event) error {
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("Events with failing callback = %v after %d calls", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Events(ctx, "s-cb", 0, func(*event.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Events with cancelled context = %v", err)
	}
}

func testHold(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	w := create(t, s, session("s-hold", t0))
	appendOK(t, w, (&Chain{Session: "s-hold"}).NextN(2)...)
	hold := func(want bool) {
		t.Helper()
		got, err := s.Session(ctx, "s-hold")
		if err != nil {
			t.Fatal(err)
		}
		if got.Hold != want {
			t.Fatalf("Hold = %v, want %v", got.Hold, want)
		}
		list, err := s.Sessions(ctx, store.Filter{})
		if err != nil || len(list) != 1 || list[0].Hold != want {
			t.Fatalf("Sessions: %+v, %v; want one with Hold %v", list, err, want)
		}
	}
	hold(false)
	for _, h := range []bool{true, true, false, true} { // idempotent, and a running session takes one
		if err := s.SetHold(ctx, "s-hold", h); err != nil {
			t.Fatalf("SetHold(%v): %v", h, err)
		}
		hold(h)
	}
	if err := s.SetHold(ctx, "nope", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetHold of an unknown session: %v, want ErrNotFound", err)
	}
}

// DropCounter is what the recorder uses to keep a running best-effort session's count of
// dropped events in the index (recorder.DropCounter); every backend has it.
type DropCounter interface {
	SetDropped(ctx context.Context, id string, n uint64) error
}

// testDroppedEvents checks the count of events a best-effort session could not keep: raised
// while the session runs, never lowered, final at the end, shown by Session and Sessions.
func testDroppedEvents(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	dc, ok := s.(DropCounter)
	if !ok {
		t.Fatalf("%T has no SetDropped", s)
	}
	want := func(id string, n uint64) {
		t.Helper()
		got, err := s.Session(ctx, id)
		if err != nil || got.DroppedEvents != n {
			t.Fatalf("Session(%s): DroppedEvents %d, %v; want %d", id, got.DroppedEvents, err, n)
		}
		list, err := s.Sessions(ctx, store.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range list {
			if l.ID == id && l.DroppedEvents != n {
				t.Fatalf("Sessions: %s has DroppedEvents %d, want %d", id, l.DroppedEvents, n)
			}
		}
	}
	set := func(id string, n uint64) {
		t.Helper()
		if err := dc.SetDropped(ctx, id, n); err != nil {
			t.Fatalf("SetDropped(%s, %d): %v", id, n, err)
		}
	}
	w := create(t, s, session("s-drop", t0))
	c := &Chain{Session: "s-drop"}
	appendOK(t, w, c.NextN(2)...)
	want("s-drop", 0)
	set("s-drop", 5)
	want("s-drop", 5)
	set("s-drop", 3) // never lowered
	want("s-drop", 5)
	if err := w.End(ctx, store.SessionEnd{EndedAt: t0.Add(time.Minute), Reason: "client_terminated", Events: 2, Head: c.prev, Dropped: 7}); err != nil {
		t.Fatal(err)
	}
	want("s-drop", 7)
	set("s-drop", 9) // an ended session keeps its final count
	want("s-drop", 7)

	// An end that counts fewer (crash recovery knows no count) keeps what the index holds.
	w = create(t, s, session("s-drop2", t0.Add(time.Second)))
	c = &Chain{Session: "s-drop2"}
	appendOK(t, w, c.NextN(1)...)
	set("s-drop2", 4)
	if err := w.End(ctx, store.SessionEnd{EndedAt: t0.Add(time.Minute), Reason: "interrupted", Events: 1, Head: c.prev}); err != nil {
		t.Fatal(err)
	}
	want("s-drop2", 4)
	if err := dc.SetDropped(ctx, "nope", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetDropped of an unknown session: %v, want ErrNotFound", err)
	}
}

func testExpire(t *testing.T, open Opener) {
	s := mustOpen(t, open, t.TempDir())
	ctx := context.Background()
	cutoff := t0.Add(24 * time.Hour)
	mk := func(id, tgt string, ended *time.Time) {
		t.Helper()
		sess := session(id, t0)
		sess.Target = tgt
		w := create(t, s, sess)
		c := &Chain{Session: id}
		appendOK(t, w, c.NextN(3)...)
		if ended != nil {
			if err := w.End(ctx, store.SessionEnd{EndedAt: *ended, Reason: "client_terminated", Events: 3, Head: c.prev}); err != nil {
				t.Fatal(err)
			}
		}
	}
	old, recent, edge := t0.Add(time.Hour), cutoff.Add(time.Hour), cutoff
	mk("old-1", "pg", &old)
	mk("old-2", "pg", &old)
	mk("held", "pg", &old)
	mk("recent", "pg", &recent)
	mk("edge", "pg", &edge) // ended at the cutoff, not before it
	mk("running", "pg", nil)
	mk("other", "mysql", &old)
	if err := s.SetHold(ctx, "held", true); err != nil {
		t.Fatal(err)
	}
	got, err := s.Expire(ctx, "pg", cutoff)
	if errors.Is(err, store.ErrNotSupported) {
		t.Skipf("Expire: %v", err)
	}
	if err != nil {
		t.Fatalf("Expire: %v", err)
	}
	if fmt.Sprint(got) != "[old-1 old-2]" {
		t.Fatalf("Expire = %v, want [old-1 old-2]", got)
	}
	for _, id := range got {
		if _, err := s.Session(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Session(%s) after expiry: %v, want ErrNotFound", id, err)
		}
		if err := s.Events(ctx, id, 0, func(*event.Event) error { return nil }); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Events(%s) after expiry: %v, want ErrNotFound", id, err)
		}
	}
	for _, id := range []string{"held", "recent", "edge", "running", "other"} {
		if _, err := s.Session(ctx, id); err != nil {
			t.Fatalf("Session(%s) after expiry: %v", id, err)
		}
		if id != "running" {
			if n := len(readAll(t, s, id, 0)); n != 3 {
				t.Fatalf("%s: %d events after expiry, want 3", id, n)
			}
		}
	}
	// Nothing left to expire; releasing the hold makes the held session expire next time. A
	// running session never expires, whatever the cutoff.
	if got, err := s.Expire(ctx, "pg", cutoff); err != nil || len(got) != 0 {
		t.Fatalf("second Expire = %v, %v; want nothing", got, err)
	}
	if err := s.SetHold(ctx, "held", false); err != nil {
		t.Fatal(err)
	}
	got, err = s.Expire(ctx, "pg", t0.Add(1000*time.Hour))
	if err != nil || fmt.Sprint(got) != "[edge held recent]" {
		t.Fatalf("Expire after release = %v, %v; want [edge held recent]", got, err)
	}
	if _, err := s.Session(ctx, "running"); err != nil {
		t.Fatalf("the running session expired: %v", err)
	}
}
