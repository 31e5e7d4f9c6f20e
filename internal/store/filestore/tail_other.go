//go:build !linux

package filestore

import (
	"os"
	"sync"
)

// tail appends a recording's records with write(2); on Linux it maps the file instead
// (tail_linux.go).
type tail struct {
	f      *os.File
	mu     sync.Mutex
	size   int64
	closed bool
}

func newTail(f *os.File, size int64) *tail { return &tail{f: f, size: size} }

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

func (t *tail) beforeSync() error { return nil }

func (t *tail) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return nil
}
