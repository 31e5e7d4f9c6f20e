package filestore

import (
	"context"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/storetest"
)

func TestStore(t *testing.T) {
	for _, fsync := range []string{FsyncInterval, FsyncAlways} {
		t.Run(fsync, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, dir string) store.Store {
				s, err := Open(dir, Options{Fsync: fsync})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

// TestDroppedEventsTrigger: the index's count of dropped events (schema 5) only goes up, and
// only while the session runs; the trigger refuses anything else, whoever writes to the file.
func TestDroppedEventsTrigger(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	w, err := s.Create(ctx, store.Session{ID: "s1", User: "alice", Target: "pg", Type: "postgres", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetDropped(ctx, "s1", 5); err != nil {
		t.Fatal(err)
	}
	refused := func(what, q string) {
		t.Helper()
		if _, err := s.wdb.ExecContext(ctx, q); err == nil {
			t.Fatalf("%s: %s succeeded", what, q)
		}
	}
	refused("lower the count", `UPDATE sessions SET dropped_events = 1 WHERE id = 's1'`)
	if _, err := s.wdb.ExecContext(ctx, `UPDATE sessions SET dropped_events = 6 WHERE id = 's1'`); err != nil {
		t.Fatalf("raise the count of a running session: %v", err)
	}
	if err := w.End(ctx, store.SessionEnd{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}
	refused("raise an ended session's count", `UPDATE sessions SET dropped_events = 9 WHERE id = 's1'`)
	if got, err := s.Session(ctx, "s1"); err != nil || got.DroppedEvents != 6 {
		t.Fatalf("after the refused updates: %+v, %v", got, err)
	}
}
