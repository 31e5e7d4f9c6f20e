package filestore

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver: pure Go, no cgo

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// Options tune a Store. The zero value is the default.
type Options struct {
	// Fsync is when appended events are flushed to stable storage: "interval" (default) flushes
	// every open recording that has new events every FsyncInterval (group commit), "always"
	// flushes inside every Append. Either way Append returns only after the events reached the
	// kernel, so they survive a crash of the gateway process.
	Fsync string
	// FsyncInterval is the group-commit period of the "interval" policy. Default 50ms.
	FsyncInterval time.Duration
	// Now stamps sessions created without a start time. Default time.Now.
	Now func() time.Time
}

// Fsync policies.
const (
	FsyncInterval = "interval"
	FsyncAlways   = "always"
)

func (o *Options) checkAndSetDefaults() error {
	switch o.Fsync {
	case "":
		o.Fsync = FsyncInterval
	case FsyncInterval, FsyncAlways:
	default:
		return fmt.Errorf("fsync must be %q or %q, not %q", FsyncInterval, FsyncAlways, o.Fsync)
	}
	if o.FsyncInterval < 0 {
		return fmt.Errorf("fsync interval must not be negative, got %v", o.FsyncInterval)
	}
	if o.FsyncInterval == 0 {
		o.FsyncInterval = 50 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Store is the embedded store. It is safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	wdb  *sql.DB // index writes: one connection
	rdb  *sql.DB // index reads

	mu          sync.Mutex
	closed      bool
	open        map[string]*writer // recordings being written, by session id
	durableDirs map[string]bool    // directories whose entry in their parent was fsynced

	stop chan struct{} // closed to stop the syncer
	done chan struct{} // closed when the syncer returned
}

var _ store.Store = (*Store)(nil)

// Open opens the store in dir, creating it if needed.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.checkAndSetDefaults(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, recordingsDir), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	wdb, rdb, err := openDB(filepath.Join(dir, "airlock.db"))
	if err != nil {
		return nil, fmt.Errorf("open store index: %w", err)
	}
	s := &Store{
		dir: dir, opts: opts, wdb: wdb, rdb: rdb,
		open:        map[string]*writer{},
		durableDirs: map[string]bool{},
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	if opts.Fsync == FsyncInterval {
		go s.syncer()
	} else {
		close(s.done)
	}
	return s, nil
}

const recordingsDir = "recordings"

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// Create registers a session and creates its recording file.
func (s *Store) Create(ctx context.Context, sess store.Session) (store.Writer, error) {
	if err := store.CheckSessionID(sess.ID); err != nil {
		return nil, err
	}
	if sess.StartedAt.IsZero() {
		sess.StartedAt = s.opts.Now()
	}
	day := sess.StartedAt.UTC().Format("2006/01/02")
	rel := filepath.ToSlash(filepath.Join(recordingsDir, day, sess.ID+".alr"))
	abs := filepath.Join(s.dir, filepath.FromSlash(rel))

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, store.ErrClosed
	}
	if _, dup := s.open[sess.ID]; dup {
		s.mu.Unlock()
		return nil, fmt.Errorf("create session %q: %w", sess.ID, store.ErrExists)
	}
	s.mu.Unlock()

	// The index row and the file come into being together: the row is committed only once the
	// file and its header exist, and a file whose row could not be committed holds no event yet.
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("create session %q: %w", sess.ID, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO sessions (id, user, target, type, client_addr, started_at, path) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		sess.ID, sess.User, sess.Target, sess.Type, sess.ClientAddr, sess.StartedAt.UnixNano(), rel); err != nil {
		if isConstraint(err) {
			return nil, fmt.Errorf("create session %q: %w", sess.ID, store.ErrExists)
		}
		return nil, fmt.Errorf("create session %q: %w", sess.ID, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("create session %q: %w", sess.ID, err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create session %q: recording file exists: %w", sess.ID, store.ErrExists)
		}
		return nil, fmt.Errorf("create session %q: %w", sess.ID, err)
	}
	w := &writer{s: s, id: sess.ID, path: abs, f: f, buf: make([]byte, 0, 4096)}
	w.buf = appendHeader(w.buf, sess.ID)
	_, err = f.Write(w.buf)
	w.t = newTail(f, int64(len(w.buf)))
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		f.Close()
		os.Remove(abs) // holds at most a header: no event was ever in it
		return nil, fmt.Errorf("create session %q: %w", sess.ID, err)
	}
	w.dirty.Store(true)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Close ran while we created: leave the session as one that never got an event.
		f.Close()
		return nil, store.ErrClosed
	}
	s.open[sess.ID] = w
	return w, nil
}

// Events streams a recording's events in order, verifying each record and the hash chain. A
// recording still being written is read up to the end of its writer's last completed write.
// See ReadRecording for the errors.
func (s *Store) Events(ctx context.Context, id string, after uint64, fn func(*event.Event) error) error {
	return s.read(ctx, id, after, fn, readOptions{})
}

// Records implements store.RecordReader: every record of the recording, damaged or not, up to
// the first bytes that cannot be framed as a record (*CorruptError) or a torn tail
// (*TornTailError; for a running session, an incomplete record at its writer's end is a
// failed write and ends the read quietly).
func (s *Store) Records(ctx context.Context, id string, fn func(*store.Record) error) error {
	return s.read(ctx, id, 0, nil, readOptions{records: fn})
}

var _ store.RecordReader = (*Store)(nil)

// read opens session id's recording and reads it with o. For a session this store is
// recording, it reads only up to where the writer's last completed write ended: a record
// there or later may be in the middle of being written, while one before it is complete and
// must be intact.
func (s *Store) read(ctx context.Context, id string, after uint64, fn func(*event.Event) error, o readOptions) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	rel, err := s.sessionPath(ctx, id)
	if err != nil {
		return err
	}
	// The end is taken before opening: the file only grows, so what was complete then is a
	// prefix of what is read, and a recording that ended meanwhile is read to that prefix.
	var end int64
	s.mu.Lock()
	w, live := s.open[id]
	if live {
		end = w.t.end()
	}
	s.mu.Unlock()
	f, err := os.Open(filepath.Join(s.dir, filepath.FromSlash(rel)))
	if err != nil {
		return fmt.Errorf("read recording %q: %w", id, err)
	}
	defer f.Close()
	var r io.Reader = f
	if live {
		r = io.LimitReader(f, end)
	}
	o.live, o.ctxErr = live, ctx.Err
	return readRecording(bufio.NewReaderSize(r, 64<<10), id, after, fn, o)
}

// syncer is the group commit of the "interval" policy.
func (s *Store) syncer() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FsyncInterval)
	defer t.Stop()
	var batch []*writer
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		batch = batch[:0]
		s.mu.Lock()
		for _, w := range s.open {
			if w.dirty.Load() {
				batch = append(batch, w)
			}
		}
		s.mu.Unlock()
		s.syncAll(batch)
	}
}

// syncAll fsyncs writers in parallel (a few at a time): fsyncs of different files overlap well
// on SSDs, and one slow file must not hold the others' commit back more than necessary.
func (s *Store) syncAll(ws []*writer) error {
	const parallel = 8
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, parallel)
		mu   sync.Mutex
		errs []error
	)
	for _, w := range ws {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := w.Sync(); err != nil && !errors.Is(err, store.ErrClosed) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// syncDirs makes the directory entries leading to a new recording file durable. The file's own
// directory is synced once per file, its ancestors once per process.
func (s *Store) syncDirs(file string) error {
	d := filepath.Dir(file)
	if err := syncDir(d); err != nil {
		return err
	}
	top := filepath.Join(s.dir, recordingsDir)
	for d != top && d != s.dir && len(d) > len(top) {
		s.mu.Lock()
		done := s.durableDirs[d]
		s.mu.Unlock()
		if done {
			break
		}
		parent := filepath.Dir(d)
		if err := syncDir(parent); err != nil {
			return err
		}
		s.mu.Lock()
		s.durableDirs[d] = true
		s.mu.Unlock()
		d = parent
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Close stops the group commit, syncs and closes every recording still open (their sessions stay
// running in the index: a crash-recovery pass ends them) and closes the index.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	open := make([]*writer, 0, len(s.open))
	for _, w := range s.open {
		open = append(open, w)
	}
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	var errs []error
	for _, w := range open {
		if err := w.close(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.rdb.Close(), s.wdb.Close())
	return errors.Join(errs...)
}
