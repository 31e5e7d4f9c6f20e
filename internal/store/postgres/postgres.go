package postgres

import (
	"context"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// Options tune a Store. The zero value is the default.
type Options struct {
	// Schema is the PostgreSQL schema holding the store's tables, created on first start.
	// Default "airlock".
	Schema string
	// MaxConns bounds the connections for writes and small reads. Default 16.
	MaxConns int
	// MaxReadConns bounds the connections that stream recordings (Events), separately: a
	// reader holds one while its callback runs (a slow export client, say), and readers must
	// never make the recorders' Appends wait. Default 8.
	MaxReadConns int
	// WriteTimeout bounds one Append or End, which take no context: a store that does not
	// answer fails the write (and a strict recording fails closed) instead of hanging.
	// Default 30s.
	WriteTimeout time.Duration
	// Now stamps sessions created without a start time. Default time.Now.
	Now func() time.Time
}

func (o *Options) checkAndSetDefaults() error {
	if o.Schema == "" {
		o.Schema = "airlock"
	}
	if len(o.Schema) > 63 {
		return fmt.Errorf("schema name %q is longer than PostgreSQL's 63 bytes", o.Schema)
	}
	if o.MaxConns < 0 || o.MaxReadConns < 0 || o.WriteTimeout < 0 {
		return errors.New("max conns and write timeout must not be negative")
	}
	if o.MaxConns == 0 {
		o.MaxConns = 16
	}
	if o.MaxReadConns == 0 {
		o.MaxReadConns = 8
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Store keeps everything in one PostgreSQL schema. It is safe for concurrent use, and several
// gateways may share one schema.
type Store struct {
	opts     Options
	pool     *pool // writes and small reads
	readPool *pool // Events
	live     *live

	mu     sync.Mutex
	closed bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or key=value string), creates
// or upgrades the schema and returns the store. A role that may only use an up-to-date schema
// (see docs/storage-postgres.md) can open it: migrations run only when the schema is behind.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if err := opts.checkAndSetDefaults(); err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included: say only what kind of problem.
		return nil, errors.New("open postgres store: invalid connection string")
	}
	cfg.RuntimeParams["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "airlock"
	}
	s := &Store{
		opts:     opts,
		pool:     newPool(cfg, opts.MaxConns),
		readPool: newPool(cfg, opts.MaxReadConns),
		live:     &live{cfg: cfg.Copy(), schema: opts.Schema, held: map[string]bool{}},
	}
	if err := s.with(ctx, func(c *pgx.Conn) error { return migrate(ctx, c, opts.Schema) }); err != nil {
		s.pool.close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return s, nil
}

// with runs fn on a pooled connection.
func (s *Store) with(ctx context.Context, fn func(*pgx.Conn) error) error {
	return s.withPool(ctx, s.pool, fn)
}

func (s *Store) withPool(ctx context.Context, p *pool, fn func(*pgx.Conn) error) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return fn(c)
}

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// Close closes the idle connections; operations in flight finish on theirs. Writers of a closed
// store refuse to append. Sessions still running stay so in the database, for crash recovery
// (Resume) to end.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.pool.close()
	s.readPool.close()
	s.live.close()
	return nil
}

// migrations holds the schema, applied in name order; the number a file starts with is the
// schema version it brings the database to.
//
//go:embed schema/*.sql
var migrations embed.FS

// migrate brings the schema to the latest version. Replicas starting together serialize on an
// advisory lock, and each migration commits with the version it reached or not at all.
func migrate(ctx context.Context, c *pgx.Conn, schema string) error {
	files, err := fs.Glob(migrations, "schema/*.sql")
	if err != nil {
		return err
	}
	latest := 0
	versions := make([]int, len(files))
	for i, name := range files { // sorted by fs.Glob
		v, err := strconv.Atoi(strings.SplitN(path.Base(name), "_", 2)[0])
		if err != nil || v <= latest {
			return fmt.Errorf("migrate: bad migration name %s", name)
		}
		versions[i], latest = v, v
	}
	quoted := pgx.Identifier{schema}.Sanitize()
	current, err := schemaVersion(ctx, c, schema)
	if err != nil {
		return err
	}
	if current == latest {
		return nil // no DDL, no lock: a role without CREATE privileges gets this far
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('airlock.migrate.' || $1, 0))`, schema); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoted); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+quoted); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    integer PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// Read again under the lock: another replica may have migrated meanwhile.
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if current > latest {
		return fmt.Errorf("schema %s is at version %d, newer than this gateway knows (%d): upgrade the gateway", schema, current, latest)
	}
	for i, name := range files {
		if versions[i] <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		// No arguments: the simple protocol, which runs a file of several statements.
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("migrate schema %s to version %d: %w", schema, versions[i], err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, versions[i]); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// schemaVersion returns the version schema is at, 0 when it has none yet.
func schemaVersion(ctx context.Context, c *pgx.Conn, schema string) (int, error) {
	var exists bool
	if err := c.QueryRow(ctx, `SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL`, schema).Scan(&exists); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	q := `SELECT coalesce(max(version), 0) FROM ` + pgx.Identifier{schema, "schema_version"}.Sanitize()
	if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return v, nil
}

// PostgreSQL error codes the store tells apart.
const (
	codeUniqueViolation = "23505"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

const defaultLimit = 1000

const sessionCols = `id, "user", target, type, client_addr, started_at, ended_at, end_reason, events, head,
	coalesce((SELECT held FROM holds WHERE holds.session_id = sessions.id), false), dropped_events`

func scanSession(row pgx.Row) (store.Session, error) {
	var (
		s       store.Session
		ended   *time.Time
		events  int64
		head    []byte
		dropped int64
	)
	if err := row.Scan(&s.ID, &s.User, &s.Target, &s.Type, &s.ClientAddr, &s.StartedAt, &ended, &s.EndReason, &events, &head, &s.Hold, &dropped); err != nil {
		return s, err
	}
	s.StartedAt = s.StartedAt.UTC()
	if ended != nil {
		t := ended.UTC()
		s.EndedAt = &t
	}
	s.Events = uint64(events)
	s.DroppedEvents = uint64(dropped)
	if head != nil {
		s.Head = hex.EncodeToString(head)
	}
	return s, nil
}

// Sessions lists sessions matching f, newest first.
func (s *Store) Sessions(ctx context.Context, f store.Filter) ([]store.Session, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !f.From.IsZero() {
		where = append(where, "(ended_at IS NULL OR ended_at >= "+arg(f.From)+")")
	}
	if !f.To.IsZero() {
		where = append(where, "started_at < "+arg(f.To))
	}
	for _, c := range []struct{ col, v string }{{`"user"`, f.User}, {"target", f.Target}, {"type", f.Type}} {
		if c.v != "" {
			where = append(where, c.col+" = "+arg(c.v))
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
		// As of 2026-11 this reads the statements (and SSH commands) of the sessions the other
		// conditions leave, without an index of their text: fine for a filtered list, slow over
		// a large history. Typed terminal input is not searched here (the file store does).
		p := arg("%" + likeEscaper.Replace(f.Text) + "%")
		where = append(where, `EXISTS (SELECT 1 FROM events e WHERE e.session_id = sessions.id AND (
			(e.type = 'query' AND convert_from(e.data, 'UTF8')::jsonb->>'text' ILIKE `+p+`) OR
			(e.type = 'exec' AND convert_from(e.data, 'UTF8')::jsonb->>'command' ILIKE `+p+`)))`)
	}
	if !f.Before.IsZero() {
		where = append(where, "(started_at, id) < ("+arg(f.Before.StartedAt)+", "+arg(f.Before.ID)+")")
	}
	q := `SELECT ` + sessionCols + ` FROM sessions`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	q += ` ORDER BY started_at DESC, id DESC LIMIT ` + arg(limit)
	out := []store.Session{}
	err := s.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			sess, err := scanSession(rows)
			if err != nil {
				return err
			}
			out = append(out, sess)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	return out, nil
}

// likeEscaper escapes LIKE's wildcards (backslash is its default escape), so that Filter.Text
// is a plain substring.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// Session returns one session's index entry.
func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	var sess store.Session
	err := s.with(ctx, func(c *pgx.Conn) (err error) {
		sess, err = scanSession(c.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Session{}, fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, wrap(fmt.Sprintf("get session %q", id), err)
	}
	return sess, nil
}

// SetHold puts a session on legal hold or releases it.
func (s *Store) SetHold(ctx context.Context, id string, hold bool) error {
	var n int64
	err := s.with(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `INSERT INTO holds (session_id, held) SELECT id, $2 FROM sessions WHERE id = $1
			ON CONFLICT (session_id) DO UPDATE SET held = excluded.held`, id, hold)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return wrap(fmt.Sprintf("set hold of session %q", id), err)
	}
	if n == 0 {
		return fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// SetDropped raises the count of dropped events of the running session id to n (schema 4). It
// does nothing to a session that ended (End recorded its final count) or that already counts n
// or more; it returns an error wrapping store.ErrNotFound for an unknown id.
func (s *Store) SetDropped(ctx context.Context, id string, n uint64) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	c := int64(min(n, math.MaxInt64))
	var exists bool
	err := s.with(ctx, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, `UPDATE sessions SET dropped_events = $2
			WHERE id = $1 AND ended_at IS NULL AND dropped_events < $2`, id, c); err != nil {
			return err
		}
		return conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1)`, id).Scan(&exists)
	})
	if err != nil {
		return wrap(fmt.Sprintf("set dropped events of session %q", id), err)
	}
	if !exists {
		return fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// Expire removes the sessions of target that ended before cutoff and are not on hold, with
// their events, through the schema's expire_sessions function (schema 3): the only path by which
// the triggers let a row go, and the only one the gateway role is granted.
func (s *Store) Expire(ctx context.Context, target string, cutoff time.Time) ([]string, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	ids := []string{}
	err := s.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT id FROM expire_sessions($1, $2) AS id`, target, cutoff)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, wrap(fmt.Sprintf("expire sessions of %q", target), err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// wrap says which operation failed, leaving ErrClosed as the sentinel callers test for.
func wrap(op string, err error) error {
	if err == nil || errors.Is(err, store.ErrClosed) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// PutTarget creates or replaces a target by name.
func (s *Store) PutTarget(ctx context.Context, t target.Target) error {
	if t.Name == "" {
		return errors.New("put target: name is required")
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("put target %q: %w", t.Name, err)
	}
	err = s.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO targets (name, spec) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET spec = excluded.spec`, t.Name, string(b))
		return err
	})
	return wrap(fmt.Sprintf("put target %q", t.Name), err)
}

// GetTarget returns a stored target, or an error wrapping target.ErrUnknown.
func (s *Store) GetTarget(ctx context.Context, name string) (target.Target, error) {
	var b []byte
	err := s.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT spec::text FROM targets WHERE name = $1`, name).Scan(&b)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return target.Target{}, fmt.Errorf("%w %q", target.ErrUnknown, name)
	}
	if err != nil {
		return target.Target{}, wrap(fmt.Sprintf("get target %q", name), err)
	}
	var t target.Target
	if err := json.Unmarshal(b, &t); err != nil {
		return target.Target{}, fmt.Errorf("get target %q: %w", name, err)
	}
	return t, nil
}

// ListTargets returns every stored target, sorted by name.
func (s *Store) ListTargets(ctx context.Context) ([]target.Target, error) {
	out := []target.Target{}
	err := s.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT spec::text FROM targets ORDER BY name COLLATE "C"`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return err
			}
			var t target.Target
			if err := json.Unmarshal(b, &t); err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list targets", err)
	}
	return out, nil
}

// GetKV returns the value stored under key, or an error wrapping store.ErrNotFound.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT value FROM kv WHERE key = $1`, key).Scan(&v)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("kv %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap(fmt.Sprintf("get kv %q", key), err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutKV stores value under key, replacing what was there.
func (s *Store) PutKV(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	err := s.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO kv (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
	return wrap(fmt.Sprintf("put kv %q", key), err)
}
