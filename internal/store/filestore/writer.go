package filestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// writer appends to one recording file. Append and End come from one goroutine at a time (the
// recorder serializes them); Sync may also come from the group commit.
type writer struct {
	s    *Store
	id   string
	path string
	f    *os.File
	t    *tail // where Append writes

	// Owned by the appending goroutine.
	buf   []byte
	cuts  []cut    // where the batch's large Raws go in buf
	iov   [][]byte // buf and those Raws, for writev
	seq   uint64
	head  [32]byte
	err   error // sticky: after a failed write the file's tail is unknown
	ended bool

	text searchText // what Filter.Text finds the session by, indexed at End

	dirty atomic.Bool // appended since the last fsync

	mu         sync.Mutex // serializes fsync and close
	dropped    int64      // the page cache holds none of the recording before this offset (guarded by mu)
	closed     bool
	syncErr    error // sticky: after a failed fsync the page cache cannot be trusted
	dirsSynced bool
}

// maxKeptBuf is the largest encode buffer a writer keeps between Appends: a session that once
// appended a huge batch should not hold that memory for its lifetime.
const maxKeptBuf = 1 << 20

// bigRaw: an event's Raw of this many bytes or more (bulk output, a large result) is written from
// where it is, with writev(2), instead of being copied into the batch's buffer first.
const bigRaw = 16 << 10

// cut is a large Raw left out of a batch's buffer, and where in the buffer it goes.
type cut struct {
	at  int
	raw []byte
}

// Append encodes every event into one buffer (large Raws excepted: bigRaw) and writes it to the
// end of the recording with one write(2) or writev(2). It refuses events
// that do not continue the chain exactly (next Seq, Prev equal to the last Hash, this session).
func (w *writer) Append(events ...*event.Event) error {
	if len(events) == 0 {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if w.ended {
		return fmt.Errorf("append to session %q: %w", w.id, store.ErrClosed)
	}
	seq, head := w.seq, w.head
	buf := w.buf[:0]
	cuts := w.cuts[:0]
	for _, e := range events {
		if err := store.CheckNext(w.id, seq, head, e); err != nil {
			return err
		}
		var at int
		var err error
		if buf, at, err = appendRecordSplit(buf, e, len(e.Raw) >= bigRaw); err != nil {
			return fmt.Errorf("append to session %q: %w", w.id, err)
		}
		if at >= 0 {
			cuts = append(cuts, cut{at: at, raw: e.Raw})
		}
		seq, head = e.Seq, e.Hash
	}
	if cap(buf) <= maxKeptBuf {
		w.buf = buf
	}
	var err error
	if len(cuts) == 0 {
		err = w.t.write(buf)
	} else {
		iov := w.iov[:0]
		prev := 0
		for _, c := range cuts {
			iov = append(iov, buf[prev:c.at], c.raw)
			prev = c.at
		}
		iov = append(iov, buf[prev:])
		err = w.t.writev(iov)
		clear(cuts)
		clear(iov)
		w.cuts, w.iov = cuts[:0], iov[:0]
	}
	if err != nil {
		w.mu.Lock()
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return fmt.Errorf("append to session %q: %w", w.id, store.ErrClosed)
		}
		w.err = fmt.Errorf("append to session %q: %w", w.id, err)
		return w.err
	}
	w.seq, w.head = seq, head
	for _, e := range events {
		w.text.add(e)
	}
	w.dirty.Store(true)
	if w.s.opts.Fsync == FsyncAlways {
		return w.Sync()
	}
	return nil
}

// Sync fsyncs the recording (and, the first time, the directory entries leading to it).
func (w *writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.syncLocked()
}

func (w *writer) syncLocked() error {
	if w.syncErr != nil {
		return w.syncErr
	}
	if w.closed {
		if w.dirty.Load() {
			return fmt.Errorf("sync session %q: %w", w.id, store.ErrClosed)
		}
		return nil
	}
	if !w.dirty.Swap(false) {
		return nil
	}
	end := w.t.end() // what this fsync makes durable, at least
	if err := w.f.Sync(); err != nil {
		w.syncErr = fmt.Errorf("sync session %q: %w", w.id, err)
		return w.syncErr
	}
	w.dropSynced(end)
	if !w.dirsSynced {
		if err := w.s.syncDirs(w.path); err != nil {
			w.syncErr = fmt.Errorf("sync session %q: directory: %w", w.id, err)
			return w.syncErr
		}
		w.dirsSynced = true
	}
	return nil
}

// dropSynced frees the page-cache pages of the recording's durable bytes before end. A recording
// is written once and read rarely (a replay, an export, an audit), so the pages are of no use
// once on disk; freeing them at each group commit gives the next appends recently used pages
// instead of pages the kernel (and, in a virtual machine, the hypervisor) must find and clear.
// That made write(2) of a recording about three times cheaper on the development machine: 1 GiB
// in 32 KiB writes with an fdatasync every 50 ms took 1.3-3.8 s of system time kept, 0.8-1.1 s
// dropped (docs/benchmarks.md). It also keeps recordings from pushing everything else out of the
// page cache. The last partial page stays: the next append writes into it. PostgreSQL drops
// its WAL segments' pages the same way.
func (w *writer) dropSynced(end int64) {
	end &^= pageSize - 1
	if end <= w.dropped {
		return
	}
	dropCache(w.f, w.dropped, end-w.dropped)
	w.dropped = end
}

// pageSize is the page size dropSynced rounds to; a larger real page size only means that the
// kernel drops fewer pages (it frees whole pages inside the range only).
const pageSize = 4096

// close syncs and closes the file and forgets the writer.
func (w *writer) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	// Whatever was appended since the last group commit is made durable before the close.
	err := w.t.close()
	if err != nil {
		err = fmt.Errorf("close session %q: %w", w.id, err)
	}
	w.dirty.Store(true)
	if serr := w.syncLocked(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close session %q: %w", w.id, cerr)
	}
	w.closed = true
	w.s.mu.Lock()
	if w.s.open[w.id] == w {
		delete(w.s.open, w.id)
	}
	w.s.mu.Unlock()
	return err
}

// End syncs and closes the recording and records its end in the index, once. Events and Head
// are recorded as this writer wrote them; an end whose counts disagree is still recorded (the
// file is the truth) and reported.
func (w *writer) End(ctx context.Context, end store.SessionEnd) error {
	if w.ended {
		return fmt.Errorf("end session %q: end already recorded: %w", w.id, store.ErrExists)
	}
	w.ended = true
	err := w.close()
	if errors.Is(err, store.ErrClosed) {
		return err
	}
	if w.s.checkOpen() != nil {
		return errors.Join(err, fmt.Errorf("end session %q: %w", w.id, store.ErrClosed))
	}
	if end.EndedAt.IsZero() {
		end.EndedAt = w.s.opts.Now()
	}
	if ierr := w.s.endSession(ctx, w.id, end, w.seq, w.head, w.text.String()); ierr != nil {
		return errors.Join(err, ierr)
	}
	if err == nil && (end.Events != w.seq || end.Head != w.head) && (end.Events != 0 || end.Head != [32]byte{}) {
		err = fmt.Errorf("end session %q: caller counted %d events, the recording holds %d (recorded)", w.id, end.Events, w.seq)
	}
	return err
}

// searchText gathers store.SearchText of a session's events, up to store.MaxSearchText bytes.
// Statements and commands are separated by line ends; terminal input is kept as typed. It is
// indexed when the session ends; until then Sessions searches it here (contains).
type searchText struct {
	mu sync.Mutex
	b  []byte
}

func (t *searchText) add(e *event.Event) {
	if !store.Searchable(e.Type) {
		return
	}
	t.mu.Lock()
	full := len(t.b) >= store.MaxSearchText
	t.mu.Unlock()
	if full { // before decoding the event: a long session stops paying for it
		return
	}
	s := store.SearchText(e)
	if s == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.b) >= store.MaxSearchText {
		return
	}
	if e.Type != event.TerminalInput && len(t.b) > 0 {
		t.b = append(t.b, '\n')
	}
	if room := store.MaxSearchText - len(t.b); len(s) > room {
		s = strings.ToValidUTF8(s[:room], "")
	}
	t.b = append(t.b, s...)
}

func (t *searchText) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// contains reports whether the text holds q, ignoring case as the index does.
func (t *searchText) contains(q string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Contains(bytes.ToLower(t.b), []byte(strings.ToLower(q)))
}
