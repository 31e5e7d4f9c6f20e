//go:build linux

package filestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// tail appends a recording's records into a window of the file mapped into memory (MAP_SHARED)
// and reserved on disk beforehand with fallocate, so that an Append is a copy, not a write(2):
// on the path of every statement that goes through the gateway, that system call was a quarter
// of the gateway's CPU time (docs/benchmarks.md). The bytes are in the page cache once copied,
// as after a write(2): a crash of the process loses nothing, and fsync makes them durable the
// same way. Reserving the window first means a full disk fails the reservation (an error, like
// a failed write) instead of a store into the mapping (SIGBUS).
//
// The file is longer than the recording while it is written: the reserved window ends in zeros,
// which readers take as the end of what was written (a torn tail, see readRecording), and close
// cuts the file to the recording's length. On a file system without fallocate or mmap, the tail
// falls back to write(2). Batches of bigRecord bytes or more are written with write(2) too, at
// the same offset: the page cache is one, so the window and the file agree.
type tail struct {
	f    *os.File
	fd   int
	mu   sync.Mutex // copy vs unmap: close may come from another goroutine than Append
	data []byte     // the mapped window
	off  int64      // file offset of data[0]
	size int64      // end of the recording
	grow int64      // size of the next window
	// reserved: the file is allocated (fallocate) up to here; a window mapped again after
	// beforeSync within it needs no new reservation.
	reserved int64
	// plain: no mapping on this file system; records are written with write(2).
	plain  bool
	closed bool
}

const (
	minWindow = 64 << 10
	maxWindow = 4 << 20
)

// bigRecord is the size from which a batch is written with write(2) rather than copied into
// the window. Every page first touched through the mapping costs a page fault (and the window
// is mapped anew after each fsync, see beforeSync): a batch of a page or more pays at least one,
// where one write(2) costs one system call. Bulk output (a file shown with cat, a download)
// arrives in batches of tens of KiB; copied into the mapping, recording it took half of the SSH
// gateway's CPU under ssh cat (docs/benchmarks.md). A write(2) cut by kill -9 leaves a prefix
// of the batch, as the copy does.
const bigRecord = 4 << 10

var pageSize = int64(os.Getpagesize())

func newTail(f *os.File, size int64) *tail {
	return &tail{f: f, fd: int(f.Fd()), size: size, grow: minWindow}
}

// write appends b at the end of the recording.
func (t *tail) write(b []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return os.ErrClosed
	}
	if t.plain || len(b) >= bigRecord {
		n, err := t.f.WriteAt(b, t.size)
		t.size += int64(n)
		return err
	}
	if t.data == nil || t.size+int64(len(b)) > t.off+int64(len(t.data)) {
		if err := t.remap(int64(len(b))); err != nil {
			return err
		}
	}
	if t.plain {
		n, err := t.f.WriteAt(b, t.size)
		t.size += int64(n)
		return err
	}
	copyForward(t.data[t.size-t.off:], b)
	t.size += int64(len(b))
	return nil
}

// copyForward copies src to dst front to back, one word at a time. If the process dies in the
// middle, what reached the mapping (and so the file) is a prefix of src: the reader's test for a
// torn last record (its last byte still zero) depends on it. The runtime's copy may store a
// block's end before its middle.
func copyForward(dst, src []byte) {
	dst = dst[:len(src)]
	i := 0
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:]))
	}
	for ; i < len(src); i++ {
		dst[i] = src[i]
	}
}

// remap moves the window to the end of the recording, with room for need more bytes.
func (t *tail) remap(need int64) error {
	if t.data != nil {
		if err := syscall.Munmap(t.data); err != nil {
			return fmt.Errorf("unmap recording: %w", err)
		}
		t.data = nil
	}
	off := t.size &^ (pageSize - 1)
	length := t.grow
	for length < t.size-off+need {
		length *= 2
	}
	if off+length <= t.reserved {
		// Mapped again after beforeSync: the reservation still covers the window.
		length = t.reserved - off
	} else if err := t.reserve(off, length); err != nil || t.plain {
		return err
	}
	data, err := syscall.Mmap(t.fd, off, int(length), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		// The reservation made the file longer: back to the recording's length, then write(2).
		if terr := t.f.Truncate(t.size); terr != nil {
			return fmt.Errorf("map the recording: %w (and cut the reservation: %v)", err, terr)
		}
		t.plain, t.reserved = true, 0
		return nil
	}
	t.data, t.off = data, off
	return nil
}

// reserve allocates the file's blocks for [off, off+length), or switches the tail to write(2)
// where the file system cannot.
func (t *tail) reserve(off, length int64) error {
	t.grow = min(t.grow*2, maxWindow)
	if err := syscall.Fallocate(t.fd, 0, off, length); err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
			t.plain = true
			return nil
		}
		return fmt.Errorf("reserve %d bytes for the recording: %w", length, err)
	}
	t.reserved = off + length
	return nil
}

// beforeSync unmaps the window ahead of an fsync. Writing back a page that is still mapped
// write-protects it in the page tables of every CPU the process runs on: a TLB shoot-down (an
// inter-processor interrupt) per dirty page, then a page fault when the next record re-dirties
// it. Under pgbench -S -c 8 that was a fifth of the gateway's CPU (docs/benchmarks.md). An
// unmapped page is written back with none of it; the next write maps the window again (one
// mmap, no new reservation) and faults in the one page it continues.
func (t *tail) beforeSync() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.data == nil {
		return nil
	}
	err := syscall.Munmap(t.data)
	t.data = nil
	if err != nil {
		return fmt.Errorf("unmap recording: %w", err)
	}
	return nil
}

// close unmaps the window and cuts the file to the recording's length. The caller syncs and
// closes the file.
func (t *tail) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var err error
	if t.data != nil {
		err = syscall.Munmap(t.data)
		t.data = nil
	}
	if terr := t.f.Truncate(t.size); err == nil {
		err = terr
	}
	return err
}
