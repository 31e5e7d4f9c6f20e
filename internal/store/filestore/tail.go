package filestore

import (
	"os"
	"sync"
)

// tail appends a recording's batches at its end, one write(2) each: once it returns, the batch
// is in the page cache, so a crash of the process loses nothing and fsync makes it durable. A
// write cut short by kill -9 leaves a prefix of the batch, which readers take as a torn tail.
//
// Recordings were once appended by copying into a window of the file mapped with MAP_SHARED, to
// save the system call. On the machines measured (a PVM guest) each page first touched through
// the mapping cost a fault, and each fsync of mapped pages a TLB shoot-down; writing every batch
// took 15-20% less of the gateway's CPU per pgbench -S transaction, a third less per sysbench
// oltp_read_only transaction and per GiB of ssh cat (docs/benchmarks.md). Files that version
// left after a crash may end in zeros; readers still treat those as a torn tail.
type tail struct {
	f      *os.File
	mu     sync.Mutex // write vs close, which may come from another goroutine
	size   int64      // end of the recording
	closed bool
}

func newTail(f *os.File, size int64) *tail { return &tail{f: f, size: size} }

// write appends b at the end of the recording.
func (t *tail) write(b []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return os.ErrClosed
	}
	n, err := t.f.WriteAt(b, t.size)
	t.size += int64(n)
	return err
}

// writev appends the concatenation of bufs at the end of the recording.
func (t *tail) writev(bufs [][]byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return os.ErrClosed
	}
	n, err := pwritev(t.f, bufs, t.size)
	t.size += n
	return err
}

// end is the offset after the last byte written.
func (t *tail) end() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.size
}

// close stops further writes. The caller syncs and closes the file.
func (t *tail) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return nil
}
