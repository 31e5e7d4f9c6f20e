package filestore

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// TestSyncDropsCache: after a group commit, the page cache no longer holds the recording's
// synced pages (all but the last, partial one), and every event still reads back.
func TestSyncDropsCache(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		// tmpfs pages are the file itself: there is nothing to drop.
		t.Skipf("%s is tmpfs: the page cache is the only copy of the file", dir)
	}
	s, err := Open(dir, Options{FsyncInterval: time.Hour}) // no group commit of its own: Sync below
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, err := s.Create(context.Background(), store.Session{ID: "drop", StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16) // 64 KiB per event
	var prev [32]byte
	for seq := uint64(1); seq <= 32; seq++ {
		e := &event.Event{Session: "drop", Seq: seq, Type: event.TerminalOutput, Time: start.Add(time.Duration(seq)), Data: []byte(`{}`), Raw: raw}
		e.Seal(prev, nil)
		prev = e.Hash
		if err := w.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	fw := w.(*writer)
	size := fw.t.end()
	if resident := residentPages(t, fw.f, size); resident == 0 {
		t.Fatalf("before the sync no page of the %d bytes is in the page cache: the test measures nothing", size)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if fw.dropped != size&^(pageSize-1) {
		t.Fatalf("dropped up to %d, want %d", fw.dropped, size&^(pageSize-1))
	}
	if resident := residentPages(t, fw.f, size&^(pageSize-1)); resident != 0 {
		t.Errorf("%d synced pages still in the page cache", resident)
	}

	// The next append goes on from the partial page; everything reads back.
	e := &event.Event{Session: "drop", Seq: 33, Type: event.TerminalOutput, Time: start.Add(time.Second), Data: []byte(`{}`), Raw: raw[:100]}
	e.Seal(prev, nil)
	if err := w.Append(e); err != nil {
		t.Fatal(err)
	}
	if err := w.End(context.Background(), store.SessionEnd{Reason: "normal", EndedAt: start.Add(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.Events(context.Background(), "drop", 0, func(e *event.Event) error {
		n++
		if !e.Verify() {
			t.Fatalf("event %d does not verify", e.Seq)
		}
		return nil
	}); err != nil || n != 33 {
		t.Fatalf("read back %d of 33 events: %v", n, err)
	}
}

// residentPages counts the pages of f's first size bytes that are in the page cache.
func residentPages(t *testing.T, f *os.File, size int64) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+int64(os.Getpagesize())-1)/int64(os.Getpagesize()))
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestPwritev: more buffers than one pwritev(2) takes, empty ones among them, land in order.
func TestPwritev(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/v")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bufs [][]byte
	var want []byte
	for i := range 3000 {
		b := bytes.Repeat([]byte{byte(i)}, i%7) // every seventh is empty
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	if _, err := f.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	n, err := pwritev(f, bufs, 4)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("pwritev: %d of %d bytes, %v", n, len(want), err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got, append([]byte("head"), want...)) {
		t.Fatal("the file is not head + the buffers in order")
	}
}
