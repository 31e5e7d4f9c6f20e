package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/postgres/pgtest"
	"github.com/airlock-gw/airlock/internal/store/storetest"
)

// schemaFor names a schema after the test and a hash of dir, so that reopening dir reaches the
// same data, and drops it when the test ends.
func schemaFor(t testing.TB, c *pgx.Conn, dir string) string {
	sum := sha256.Sum256([]byte(t.Name() + "\x00" + dir))
	name := fmt.Sprintf("airlock_test_%x", sum[:8])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop test schema %s: %v", name, err)
		}
	})
	return name
}

func TestStore(t *testing.T) {
	c := pgtest.Connect(t)
	schemas := map[string]string{}
	var mu sync.Mutex
	storetest.Run(t, func(t *testing.T, dir string) store.Store {
		mu.Lock()
		schema, ok := schemas[dir]
		if !ok {
			schema = schemaFor(t, c, dir)
			schemas[dir] = schema
		}
		mu.Unlock()
		s, err := Open(context.Background(), pgtest.DSN(), Options{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func openTest(t testing.TB) (*Store, *pgx.Conn, string) {
	t.Helper()
	c := pgtest.Connect(t)
	schema := schemaFor(t, c, "")
	s, err := Open(context.Background(), pgtest.DSN(), Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, c, schema
}

// record writes a session of n events and ends it.
func record(t testing.TB, s *Store, id string, n int) []*event.Event {
	t.Helper()
	ctx := context.Background()
	w, err := s.Create(ctx, store.Session{ID: id, User: "alice", Target: "pg", Type: "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	ch := &storetest.Chain{Session: id}
	events := ch.NextN(n)
	if err := w.Append(events...); err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if err := w.End(ctx, store.SessionEnd{Reason: "client_terminated", Events: last.Seq, Head: last.Hash}); err != nil {
		t.Fatal(err)
	}
	return events
}

// TestAppendOnly checks that the triggers refuse, to the table owner itself, every statement
// that would change or remove a recording.
func TestAppendOnly(t *testing.T) {
	s, c, schema := openTest(t)
	record(t, s, "s1", 5)
	ctx := context.Background()
	// A running session with a count of dropped events (schema 4).
	run, err := s.Create(ctx, store.Session{ID: "s-run", User: "alice", Target: "pg", Type: "postgres", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer run.End(ctx, store.SessionEnd{Reason: "client_terminated"})
	if err := s.SetDropped(ctx, "s-run", 5); err != nil {
		t.Fatal(err)
	}
	q := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	tests := []struct{ name, sql string }{
		{"lower dropped count", `UPDATE ` + q("sessions") + ` SET dropped_events = 1 WHERE id = 's-run'`},
		{"change a running session's events", `UPDATE ` + q("sessions") + ` SET events = 7 WHERE id = 's-run'`},
		{"raise an ended session's dropped count", `UPDATE ` + q("sessions") + ` SET dropped_events = 100 WHERE id = 's1'`},
		{"update event", `UPDATE ` + q("events") + ` SET data = '\x7b7d' WHERE seq = 2`},
		{"update no row", `UPDATE ` + q("events") + ` SET data = '\x7b7d' WHERE seq = 99`},
		{"delete event", `DELETE FROM ` + q("events") + ` WHERE seq = 5`},
		{"delete all events", `DELETE FROM ` + q("events")},
		{"truncate events", `TRUNCATE ` + q("events")},
		{"delete session", `DELETE FROM ` + q("sessions")},
		{"truncate sessions", `TRUNCATE ` + q("sessions") + ` CASCADE`},
		{"reopen session", `UPDATE ` + q("sessions") + ` SET ended_at = NULL`},
		{"re-end session", `UPDATE ` + q("sessions") + ` SET ended_at = now(), end_reason = 'x'`},
		{"rename user", `UPDATE ` + q("sessions") + ` SET "user" = 'mallory'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Exec(ctx, tt.sql)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || !strings.Contains(pe.Message, "airlock:") {
				t.Fatalf("%s: got %v, want the trigger's refusal", tt.sql, err)
			}
		})
	}
	var got []*event.Event
	if err := s.Events(ctx, "s1", 0, func(e *event.Event) error { got = append(got, e); return nil }); err != nil || len(got) != 5 {
		t.Fatalf("after the refused statements: %d events, %v", len(got), err)
	}
}

// TestCorruption disables the triggers as the owner can, alters rows, and expects Events to
// name the problem.
func TestCorruption(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		sql  string // %s: the events table
		seq  uint64 // expected CorruptError.Seq
	}{
		{"altered data", `UPDATE %s SET data = '\x7b7d' WHERE seq = 3`, 3},
		{"altered hash", `UPDATE %s SET hash = sha256('x') WHERE seq = 3`, 3},
		{"deleted", `DELETE FROM %s WHERE seq = 3`, 3},
		{"truncated tail", `DELETE FROM %s WHERE seq >= 4`, 4},
		{"swapped", `UPDATE %[1]s SET seq = 1000 WHERE seq = 2; UPDATE %[1]s SET seq = 2 WHERE seq = 3; UPDATE %[1]s SET seq = 3 WHERE seq = 1000`, 2},
		{"appended after end", `INSERT INTO %[1]s SELECT session_id, 6, type, offset_ns, time_ns, data, raw, hash FROM %[1]s WHERE seq = 5`, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c, schema := openTest(t)
			record(t, s, "s1", 5)
			tbl := pgx.Identifier{schema, "events"}.Sanitize()
			if _, err := c.Exec(ctx, `ALTER TABLE `+tbl+` DISABLE TRIGGER events_append_only`); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, fmt.Sprintf(tt.sql, tbl)); err != nil {
				t.Fatal(err)
			}
			err := s.Events(ctx, "s1", 0, func(*event.Event) error { return nil })
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Seq != tt.seq {
				t.Fatalf("Events = %v, want CorruptError at event %d", err, tt.seq)
			}
		})
	}
}

// TestLimitedRole runs the gateway's store as a role with the privileges
// docs/storage-postgres.md grants, and checks what such a role cannot do even with the
// triggers out of the picture.
func TestLimitedRole(t *testing.T) {
	s, c, schema := openTest(t)
	s.Close()
	ctx := context.Background()
	role := schema + "_gw"
	q := pgx.Identifier{schema}.Sanitize()
	r := pgx.Identifier{role}.Sanitize()
	if _, err := c.Exec(ctx, `CREATE ROLE `+r+` LOGIN`); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the test database user cannot create a role: %v", err)
		}
		t.Skipf("cannot create a role (not a superuser?): %v", err)
	}
	t.Cleanup(func() {
		// After the schema is dropped (cleanups run last-in first-out, and the schema's was
		// registered first), nothing is left owned by or granted to the role.
		c.Exec(context.Background(), `DROP OWNED BY `+r)
		c.Exec(context.Background(), `DROP ROLE `+r)
	})
	for _, g := range []string{
		`GRANT USAGE ON SCHEMA %[1]s TO %[2]s`,
		`GRANT SELECT ON ALL TABLES IN SCHEMA %[1]s TO %[2]s`,
		`GRANT INSERT ON %[1]s.sessions, %[1]s.events, %[1]s.targets, %[1]s.kv TO %[2]s`,
		`GRANT UPDATE (ended_at, end_reason, events, head, dropped_events) ON %[1]s.sessions TO %[2]s`,
		`GRANT UPDATE ON %[1]s.targets, %[1]s.kv TO %[2]s`,
		`GRANT INSERT, UPDATE ON %[1]s.holds TO %[2]s`,
		`GRANT EXECUTE ON FUNCTION %[1]s.expire_sessions(text, timestamptz) TO %[2]s`,
	} {
		if _, err := c.Exec(ctx, fmt.Sprintf(g, q, r)); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := pgx.ParseConfig(pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", role, cfg.Host, cfg.Port, cfg.Database)
	ls, err := Open(ctx, dsn, Options{Schema: schema})
	if err != nil {
		t.Fatalf("Open as %s: %v", role, err)
	}
	defer ls.Close()
	record(t, ls, "s1", 3)
	if err := ls.PutKV(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	lc, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close(ctx)
	for _, stmt := range []string{
		`ALTER TABLE %s.events DISABLE TRIGGER events_append_only`,
		`UPDATE %s.events SET data = '\x7b7d'`,
		`DELETE FROM %s.events`,
		`TRUNCATE %s.events`,
		`UPDATE %s.sessions SET "user" = 'mallory'`,
		`DROP TABLE %s.events`,
		`DELETE FROM %s.sessions`,
		`DELETE FROM %s.holds`,
		`INSERT INTO %s.expiry_gate VALUES (1, 'pg', now())`,
	} {
		_, err := lc.Exec(ctx, fmt.Sprintf(stmt, q))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" { // insufficient_privilege
			t.Errorf("%s as %s: %v, want insufficient_privilege", stmt, role, err)
		}
	}
	// Expiry is the one way out, and it works with the grant alone.
	record(t, ls, "s2", 2)
	if err := ls.SetHold(ctx, "s2", true); err != nil {
		t.Fatal(err)
	}
	got, err := ls.Expire(ctx, "pg", time.Now().Add(time.Hour))
	if err != nil || fmt.Sprint(got) != "[s1]" {
		t.Fatalf("Expire as %s = %v, %v; want [s1] (s2 is held)", role, got, err)
	}
}

// TestExpiryGate checks that the expiry function's gate does not open the tables to anyone
// else: the owner's own DELETE is refused outside the function, a row the gate does not cover is
// refused inside it, and PUBLIC may not call the function.
func TestExpiryGate(t *testing.T) {
	s, c, schema := openTest(t)
	record(t, s, "old", 2)
	ctx := context.Background()
	q := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	for _, sql := range []string{
		`DELETE FROM ` + q("events") + ` WHERE session_id = 'old'`,
		`DELETE FROM ` + q("sessions") + ` WHERE id = 'old'`,
	} {
		if _, err := c.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "airlock:") {
			t.Errorf("%s outside expiry: %v, want a refusal", sql, err)
		}
	}
	// With the gate open for another target, the row trigger still refuses this session.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO `+q("expiry_gate")+` VALUES (1, 'other', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+q("events")+` WHERE session_id = 'old'`); err != nil {
		t.Fatalf("events delete with the gate open: %v", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+q("sessions")+` WHERE id = 'old'`); err == nil || !strings.Contains(err.Error(), "may not be removed") {
		t.Fatalf("deleting a session the gate does not cover: %v, want a refusal", err)
	}
	tx.Rollback(ctx)
	var public bool
	if err := c.QueryRow(ctx, `SELECT has_function_privilege('public', $1, 'EXECUTE')`,
		schema+".expire_sessions(text, timestamptz)").Scan(&public); err != nil {
		t.Fatal(err)
	}
	if public {
		t.Fatal("PUBLIC may execute expire_sessions")
	}
	if _, err := s.Session(ctx, "old"); err != nil {
		t.Fatalf("old after the refused deletes: %v", err)
	}
}

// TestConcurrentOpen starts several stores on a fresh schema at once, as replicas do.
func TestConcurrentOpen(t *testing.T) {
	c := pgtest.Connect(t)
	schema := schemaFor(t, c, "")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), pgtest.DSN(), Options{Schema: schema})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestEventsAfterPages reads a recording longer than a page from various starting points.
func TestEventsAfterPages(t *testing.T) {
	s, _, _ := openTest(t)
	want := record(t, s, "long", 2*pageSize+7)
	for _, after := range []uint64{0, 1, pageSize - 1, pageSize, pageSize + 1, 2*pageSize + 6, 2*pageSize + 7, 5000} {
		var n uint64
		err := s.Events(context.Background(), "long", after, func(e *event.Event) error {
			n++
			if w := want[after+n-1]; e.Seq != w.Seq || e.Hash != w.Hash || e.Prev != w.Prev {
				return fmt.Errorf("event %d differs", e.Seq)
			}
			return nil
		})
		if wantN := uint64(len(want)) - min(after, uint64(len(want))); err != nil || n != wantN {
			t.Fatalf("after %d: %d events, %v; want %d", after, n, err, wantN)
		}
	}
}

// The gateway's crash recovery finds Resume through this interface.
var _ recorder.Resumer = (*Store)(nil)

// TestResume: a gateway that stopped without ending a session leaves it to the next start's
// crash recovery, which must not take a session that a running gateway is still recording.
func TestResume(t *testing.T) {
	c := pgtest.Connect(t)
	schema := schemaFor(t, c, "")
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(ctx, pgtest.DSN(), Options{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	w, err := a.Create(ctx, store.Session{ID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	ch := &storetest.Chain{Session: "s1"}
	if err := w.Append(ch.NextN(3)...); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{a, b} {
		if _, _, _, err := s.Resume(ctx, "s1"); !errors.Is(err, store.ErrExists) {
			t.Fatalf("Resume of a session being recorded = %v, want ErrExists", err)
		}
	}
	a.Close() // the gateway goes away without ending s1

	rw, seq, head, err := b.Resume(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	last := ch.Next()
	if seq != 3 || head != last.Prev {
		t.Fatalf("Resume = %d, %x; want 3, %x", seq, head, last.Prev)
	}
	if _, _, _, err := open().Resume(ctx, "s1"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Resume while resumed = %v, want ErrExists", err)
	}
	if err := rw.Append(last); err != nil {
		t.Fatal(err)
	}
	if err := rw.End(ctx, store.SessionEnd{Reason: "interrupted", Events: 4, Head: last.Hash}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.Resume(ctx, "s1"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Resume of an ended session = %v, want ErrExists", err)
	}
	n := 0
	if err := b.Events(ctx, "s1", 0, func(*event.Event) error { n++; return nil }); err != nil || n != 4 {
		t.Fatalf("after recovery: %d events, %v", n, err)
	}
}

// TestResumeRefusesCorrupt: nothing is appended after events that are not what was written.
func TestResumeRefusesCorrupt(t *testing.T) {
	s, c, schema := openTest(t)
	ctx := context.Background()
	w, err := s.Create(ctx, store.Session{ID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append((&storetest.Chain{Session: "s1"}).NextN(3)...); err != nil {
		t.Fatal(err)
	}
	s.Close()
	tbl := pgx.Identifier{schema, "events"}.Sanitize()
	if _, err := c.Exec(ctx, `ALTER TABLE `+tbl+` DISABLE TRIGGER events_append_only; UPDATE `+tbl+` SET data = '\x7b7d' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, pgtest.DSN(), Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var ce *CorruptError
	if _, _, _, err := s2.Resume(ctx, "s1"); !errors.As(err, &ce) || ce.Seq != 2 {
		t.Fatalf("Resume of a corrupt recording = %v, want CorruptError at 2", err)
	}
}

// TestSlowReaderDoesNotBlockWriters: a reader whose callback stalls (a slow export client)
// holds a read connection, never one that Append needs.
func TestSlowReaderDoesNotBlockWriters(t *testing.T) {
	c := pgtest.Connect(t)
	schema := schemaFor(t, c, "")
	ctx := context.Background()
	s, err := Open(ctx, pgtest.DSN(), Options{Schema: schema, MaxConns: 1, MaxReadConns: 1, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	record(t, s, "done", 3)
	stall, inside := make(chan struct{}), make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		first := true
		readErr <- s.Events(ctx, "done", 0, func(*event.Event) error {
			if first {
				first = false
				close(inside)
				<-stall
			}
			return nil
		})
	}()
	<-inside
	record(t, s, "live", 5) // Create, Append, End while the reader stalls
	close(stall)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
}
