package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// live holds, on one dedicated connection, a session-level advisory lock for every session this
// store is recording. Crash recovery in another gateway sharing the database must take the lock
// before it resumes a session, so it never ends one that a running gateway is still recording;
// when a gateway dies its connection closes and its locks go with it.
type live struct {
	cfg    *pgx.ConnConfig
	schema string // advisory locks are database-wide: the key names the schema too

	mu   sync.Mutex
	conn *pgx.Conn
	held map[string]bool
}

// lockKey is the advisory lock of session $2 in schema $1. Advisory locks are shared by the
// whole database, so two stores in different schemas must not take each other's.
const lockKey = `hashtextextended('airlock.session.' || $1 || '.' || $2, 0)`

// tryLock takes session id's lock; false when another connection holds it.
func (l *live) tryLock(ctx context.Context, id string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[id] {
		return false, nil
	}
	if err := l.connect(ctx); err != nil {
		return false, err
	}
	var ok bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+lockKey+`)`, l.schema, id).Scan(&ok); err != nil {
		return false, err
	}
	if ok {
		l.held[id] = true
	}
	return ok, nil
}

// unlock releases session id's lock, best effort: a lock that cannot be released now goes when
// the connection does.
func (l *live) unlock(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held[id] {
		return
	}
	delete(l.held, id)
	if l.conn == nil || l.conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.conn.Exec(ctx, `SELECT pg_advisory_unlock(`+lockKey+`)`, l.schema, id)
}

// connect (re)opens the connection. After a reconnect it takes the held locks again; one that
// another gateway took meanwhile (its recovery ended the session) is dropped, and that session's
// next Append fails on the duplicate event rather than fork the recording.
func (l *live) connect(ctx context.Context) error {
	if l.conn != nil && !l.conn.IsClosed() {
		return nil
	}
	c, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return err
	}
	for id := range l.held {
		var ok bool
		if err := c.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+lockKey+`)`, l.schema, id).Scan(&ok); err != nil {
			c.Close(context.Background())
			return err
		}
		if !ok {
			delete(l.held, id)
		}
	}
	l.conn = c
	return nil
}

func (l *live) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		// Release the locks before closing: the server drops a closed connection's locks only
		// once its backend notices, so another gateway's recovery could still find them held.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l.conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
		cancel()
		l.conn.Close(context.Background())
		l.conn = nil
	}
	clear(l.held)
}
