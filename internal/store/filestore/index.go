package filestore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// schema holds the migrations, applied in name order; the number a file starts with is the
// schema version it brings the database to. Never edit one that was released: add the next.
//
//go:embed schema/*.sql
var schema embed.FS

const defaultLimit = 1000

// openDB opens the index twice: a single connection for writes, so that writers queue in Go
// instead of spinning on SQLITE_BUSY, and a pool for reads, which WAL lets run beside the writer.
func openDB(file string) (wdb, rdb *sql.DB, err error) {
	// Create the file ourselves so that it (and the -wal and -shm files SQLite derives from
	// it) is private to the gateway.
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a session's index row is durable when Create returns, like its first event.
	// Sessions start far less often than events are written, so this costs little.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_txlock", "immediate")
	// The path goes into a URI: escape what would end it early ('#' starts a fragment, '?' the
	// query), or SQLite opens another file than the one created above.
	uriPath := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(file)
	dsn := "file:" + uriPath + "?" + q.Encode()
	if wdb, err = sql.Open("sqlite", dsn); err != nil {
		return nil, nil, err
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(wdb); err != nil {
		wdb.Close()
		return nil, nil, err
	}
	q.Add("_pragma", "query_only(true)")
	if rdb, err = sql.Open("sqlite", "file:"+uriPath+"?"+q.Encode()); err != nil {
		wdb.Close()
		return nil, nil, err
	}
	rdb.SetMaxOpenConns(8)
	rdb.SetMaxIdleConns(8)
	return wdb, rdb, nil
}

func migrate(db *sql.DB) error {
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := tx.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	files, err := fs.Glob(schema, "schema/*.sql")
	if err != nil {
		return err
	}
	latest := 0
	for _, name := range files { // fs.Glob returns names sorted
		v, err := strconv.Atoi(strings.SplitN(path.Base(name), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migrate: bad migration name %s", name)
		}
		latest = v
		if v <= current {
			continue
		}
		body, err := schema.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(string(body)); err != nil {
			return fmt.Errorf("migrate to schema version %d: %w", v, err)
		}
		if _, err := tx.Exec(`INSERT INTO schema_version (version) VALUES (?)`, v); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	if current > latest {
		return fmt.Errorf("index schema version %d is newer than this gateway knows (%d): upgrade the gateway", current, latest)
	}
	return tx.Commit()
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

const sessionCols = `id, user, target, type, client_addr, started_at, ended_at, end_reason, events, head,
	COALESCE((SELECT held FROM holds WHERE holds.session_id = sessions.id), 0), dropped_events`

func scanSession(row interface{ Scan(...any) error }) (store.Session, error) {
	var (
		s       store.Session
		started int64
		ended   sql.NullInt64
		events  int64
		held    int64
		dropped int64
	)
	if err := row.Scan(&s.ID, &s.User, &s.Target, &s.Type, &s.ClientAddr, &started, &ended, &s.EndReason, &events, &s.Head, &held, &dropped); err != nil {
		return s, err
	}
	s.Hold = held != 0
	s.StartedAt = time.Unix(0, started).UTC()
	if ended.Valid {
		t := time.Unix(0, ended.Int64).UTC()
		s.EndedAt = &t
	}
	s.Events = uint64(events)
	s.DroppedEvents = uint64(dropped)
	return s, nil
}

// Sessions lists sessions matching f, newest first.
func (s *Store) Sessions(ctx context.Context, f store.Filter) ([]store.Session, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var (
		where []string
		args  []any
	)
	if !f.From.IsZero() {
		where = append(where, "(ended_at IS NULL OR ended_at >= ?)")
		args = append(args, f.From.UnixNano())
	}
	if !f.To.IsZero() {
		where = append(where, "started_at < ?")
		args = append(args, f.To.UnixNano())
	}
	for _, c := range []struct{ col, v string }{{"user", f.User}, {"target", f.Target}, {"type", f.Type}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	switch f.Status {
	case "":
	case store.StatusActive:
		where = append(where, "ended_at IS NULL")
	case store.StatusEnded:
		where = append(where, "ended_at IS NOT NULL")
	default:
		return nil, fmt.Errorf("list sessions: unknown status %q", f.Status)
	}
	if f.Text != "" {
		var cond string
		if utf8.RuneCountInString(f.Text) >= 3 {
			// A phrase of the trigram index is a substring, matched through the index. (LIKE
			// would be too, but not with the ESCAPE clause that makes % and _ literal.)
			cond = `id IN (SELECT session_id FROM session_text WHERE session_text MATCH ?)`
			args = append(args, `text : "`+strings.ReplaceAll(f.Text, `"`, `""`)+`"`)
		} else {
			// Shorter than a trigram: every text is read.
			cond = `id IN (SELECT session_id FROM session_text WHERE text LIKE ? ESCAPE '\')`
			args = append(args, "%"+likeEscaper.Replace(f.Text)+"%")
		}
		// Sessions still being recorded are indexed at their end: their text is searched in
		// memory.
		if running := s.runningWithText(f.Text); len(running) > 0 {
			cond = "(" + cond + " OR id IN (?" + strings.Repeat(", ?", len(running)-1) + "))"
			for _, id := range running {
				args = append(args, id)
			}
		}
		where = append(where, cond)
	}
	if !f.Before.IsZero() {
		where = append(where, "(started_at, id) < (?, ?)")
		args = append(args, f.Before.StartedAt.UnixNano(), f.Before.ID)
	}
	q := `SELECT ` + sessionCols + ` FROM sessions`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	q += ` ORDER BY started_at DESC, id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	out := []store.Session{}
	for rows.Next() {
		sess, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, sess)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// runningWithText lists the sessions being recorded whose text so far holds q.
func (s *Store) runningWithText(q string) []string {
	s.mu.Lock()
	ws := make([]*writer, 0, len(s.open))
	for _, w := range s.open {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	var ids []string
	for _, w := range ws {
		if w.text.contains(q) {
			ids = append(ids, w.id)
		}
	}
	return ids
}

// Session returns one session's index entry.
func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	if err := s.checkOpen(); err != nil {
		return store.Session{}, err
	}
	sess, err := scanSession(s.rdb.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Session{}, fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, fmt.Errorf("get session %q: %w", id, err)
	}
	return sess, nil
}

func (s *Store) sessionPath(ctx context.Context, id string) (string, error) {
	var p string
	err := s.rdb.QueryRowContext(ctx, `SELECT path FROM sessions WHERE id = ?`, id).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("get session %q: %w", id, err)
	}
	return p, nil
}

// likeEscaper escapes LIKE's wildcards (with ESCAPE '\\'), so that Filter.Text is a plain
// substring.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// endSession records a session's end, and the text Filter.Text searches, in one transaction; it
// fails when the end was already recorded.
func (s *Store) endSession(ctx context.Context, id string, end store.SessionEnd, events uint64, head [32]byte, text string) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("end session %q: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx,
		`UPDATE sessions SET ended_at = ?, end_reason = ?, events = ?, head = ?, dropped_events = max(dropped_events, ?)
			WHERE id = ? AND ended_at IS NULL`,
		end.EndedAt.UnixNano(), end.Reason, int64(events), hex.EncodeToString(head[:]), clampInt64(end.Dropped), id)
	if err != nil {
		return fmt.Errorf("end session %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("end session %q: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("end session %q: end already recorded: %w", id, store.ErrExists)
	}
	if text != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO session_text (session_id, text) VALUES (?, ?)`, id, text); err != nil {
			return fmt.Errorf("end session %q: index its text: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("end session %q: %w", id, err)
	}
	return nil
}

// SetDropped raises the count of dropped events of the running session id to n (schema 5). It
// does nothing to a session that ended (End recorded its final count) or that already counts n
// or more; it returns an error wrapping store.ErrNotFound for an unknown id.
func (s *Store) SetDropped(ctx context.Context, id string, n uint64) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	var found int
	err := s.wdb.QueryRowContext(ctx, `UPDATE sessions SET dropped_events = ?
		WHERE id = ? AND ended_at IS NULL AND dropped_events < ? RETURNING 1`, clampInt64(n), id, clampInt64(n)).Scan(&found)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.sessionPath(ctx, id); err != nil {
			return fmt.Errorf("set dropped events of session %q: %w", id, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("set dropped events of session %q: %w", id, err)
	}
	return nil
}

// clampInt64 is n as an SQLite INTEGER: a count past math.MaxInt64 stays at it.
func clampInt64(n uint64) int64 {
	return int64(min(n, math.MaxInt64))
}

// PutTarget creates or replaces a target by name.
func (s *Store) PutTarget(ctx context.Context, t target.Target) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if t.Name == "" {
		return errors.New("put target: name is required")
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("put target %q: %w", t.Name, err)
	}
	if _, err := s.wdb.ExecContext(ctx,
		`INSERT INTO targets (name, json) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET json = excluded.json`,
		t.Name, string(b)); err != nil {
		return fmt.Errorf("put target %q: %w", t.Name, err)
	}
	return nil
}

// GetTarget returns a stored target, or an error wrapping target.ErrUnknown.
func (s *Store) GetTarget(ctx context.Context, name string) (target.Target, error) {
	if err := s.checkOpen(); err != nil {
		return target.Target{}, err
	}
	var b string
	err := s.rdb.QueryRowContext(ctx, `SELECT json FROM targets WHERE name = ?`, name).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return target.Target{}, fmt.Errorf("%w %q", target.ErrUnknown, name)
	}
	if err != nil {
		return target.Target{}, fmt.Errorf("get target %q: %w", name, err)
	}
	var t target.Target
	if err := json.Unmarshal([]byte(b), &t); err != nil {
		return target.Target{}, fmt.Errorf("get target %q: %w", name, err)
	}
	return t, nil
}

// ListTargets returns every stored target, sorted by name.
func (s *Store) ListTargets(ctx context.Context) ([]target.Target, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT json FROM targets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	defer rows.Close()
	out := []target.Target{}
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("list targets: %w", err)
		}
		var t target.Target
		if err := json.Unmarshal([]byte(b), &t); err != nil {
			return nil, fmt.Errorf("list targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	return out, nil
}

// GetKV returns the value stored under key, or an error wrapping store.ErrNotFound.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var v []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("kv %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get kv %q: %w", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutKV stores value under key, replacing what was there.
func (s *Store) PutKV(ctx context.Context, key string, value []byte) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	if _, err := s.wdb.ExecContext(ctx,
		`INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		key, value); err != nil {
		return fmt.Errorf("put kv %q: %w", key, err)
	}
	return nil
}

// SetHold puts a session on legal hold or releases it.
func (s *Store) SetHold(ctx context.Context, id string, hold bool) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	held := 0
	if hold {
		held = 1
	}
	res, err := s.wdb.ExecContext(ctx,
		`INSERT INTO holds (session_id, held) SELECT id, ? FROM sessions WHERE id = ?
			ON CONFLICT (session_id) DO UPDATE SET held = excluded.held`, held, id)
	if err != nil {
		return fmt.Errorf("set hold of session %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("set hold of session %q: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// Expire deletes the index rows of target's sessions that ended before cutoff and are not held,
// then their recording files. The rows go through the expiry gate (schema 0002): the gate row
// exists only inside this transaction, so no other statement can delete a session. A file whose
// row was deleted but that could not be removed (a crash in between) is an orphan no API reaches.
func (s *Store) Expire(ctx context.Context, target string, cutoff time.Time) ([]string, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("expire %q: %w", target, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO expiry_gate (id, target, cutoff) VALUES (1, ?, ?)`,
		target, cutoff.UnixNano()); err != nil {
		return nil, fmt.Errorf("expire %q: %w", target, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, path FROM sessions
		WHERE target = ? AND ended_at IS NOT NULL AND ended_at < ?
		AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.session_id = sessions.id AND h.held = 1)
		ORDER BY started_at, id`, target, cutoff.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("expire %q: %w", target, err)
	}
	var ids, paths []string
	for rows.Next() {
		var id, p string
		if err := rows.Scan(&id, &p); err != nil {
			rows.Close()
			return nil, fmt.Errorf("expire %q: %w", target, err)
		}
		ids, paths = append(ids, id), append(paths, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("expire %q: %w", target, err)
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `DELETE FROM holds WHERE session_id = ?`, id); err != nil {
			return nil, fmt.Errorf("expire session %q: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM session_text WHERE session_id = ?`, id); err != nil {
			return nil, fmt.Errorf("expire session %q: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id); err != nil {
			return nil, fmt.Errorf("expire session %q: %w", id, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM expiry_gate`); err != nil {
		return nil, fmt.Errorf("expire %q: %w", target, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("expire %q: %w", target, err)
	}
	var errs []error
	for _, p := range paths {
		if err := os.Remove(filepath.Join(s.dir, filepath.FromSlash(p))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if ids == nil {
		ids = []string{}
	}
	if len(errs) > 0 {
		return ids, fmt.Errorf("expire %q: index rows removed, but recording files remain: %w", target, errors.Join(errs...))
	}
	return ids, nil
}
