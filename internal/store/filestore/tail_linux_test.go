//go:build linux

package filestore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

func TestCopyForward(t *testing.T) {
	src := make([]byte, 1000)
	for i := range src {
		src[i] = byte(i*7 + 1)
	}
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 1000} {
		dst := make([]byte, n+3)
		copyForward(dst, src[:n])
		if !bytes.Equal(dst[:n], src[:n]) || !bytes.Equal(dst[n:], []byte{0, 0, 0}) {
			t.Fatalf("n=%d: copied %v", n, dst)
		}
	}
}

// TestKillWhileAppending kills (SIGKILL) a process that appends big records as fast as it can,
// at a different moment each round, and recovers its recording: whatever the moment, the tail
// is torn (cut off), never corrupt, and every event before it reads back intact.
func TestKillWhileAppending(t *testing.T) {
	if dir := os.Getenv("AIRLOCK_TEST_APPENDER"); dir != "" {
		appendForever(dir)
		return
	}
	for round := range 12 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillWhileAppending$")
		cmd.Env = append(os.Environ(), "AIRLOCK_TEST_APPENDER="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "appending\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: the appender said %q, %v", round, line, err)
		}
		time.Sleep(time.Duration(round*7%50) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		w, seq, _, err := s.Resume(context.Background(), "k")
		if err != nil {
			s.Close()
			t.Fatalf("round %d: resume after SIGKILL: %v", round, err)
		}
		if err := w.End(context.Background(), store.SessionEnd{Reason: "interrupted"}); err != nil {
			t.Fatal(err)
		}
		n := uint64(0)
		err = s.Events(context.Background(), "k", 0, func(e *event.Event) error {
			n++
			if e.Seq != n || !e.Verify() {
				t.Fatalf("round %d: event %d: seq %d, verifies %v", round, n, e.Seq, e.Verify())
			}
			return nil
		})
		s.Close()
		if err != nil || n != seq {
			t.Fatalf("round %d: read back %d of %d events: %v", round, n, seq, err)
		}
		t.Logf("round %d: killed after %d events", round, seq)
	}
}

// appendForever is the appender of TestKillWhileAppending: events of 1 to 100 KiB, in batches.
func appendForever(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		panic(err)
	}
	w, err := s.Create(context.Background(), store.Session{ID: "k", User: "u", Target: "pg", Type: "postgres", StartedAt: time.Now()})
	if err != nil {
		panic(err)
	}
	var prev [32]byte
	raw := make([]byte, 100<<10)
	for i := range raw {
		raw[i] = byte(i*31 + 7)
	}
	for seq := uint64(1); ; {
		batch := make([]*event.Event, 1+seq%4)
		for i := range batch {
			// Small batches are copied into the mapped window, big ones written (bigRecord):
			// two of three events are small.
			n := int(seq*7919) % (100 << 10)
			if seq%3 != 0 {
				n %= 2 << 10
			}
			e := &event.Event{Session: "k", Seq: seq, Type: event.Rows, Time: time.Now(), Data: []byte(`{"rows":1}`),
				Raw: raw[:n]}
			e.Seal(prev, nil)
			prev = e.Hash
			batch[i] = e
			seq++
		}
		if err := w.Append(batch...); err != nil {
			panic(err)
		}
		if seq <= 5 {
			fmt.Println("appending")
		}
	}
}

// TestTailAcrossSyncs appends across many syncs, each of which unmaps the window, and across
// windows: the file holds exactly what was appended, without the reservation's zeros, and the
// window is mapped again inside the reservation (no fallocate per sync). One record in five is
// big enough to be written rather than copied into the window (bigRecord).
func TestTailAcrossSyncs(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/rec")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tl := newTail(f, 0)
	var want []byte
	for i := range 3000 {
		n := 1 + i%700
		if i%5 == 0 {
			n = bigRecord + i*7919%(100<<10)
		}
		rec := bytes.Repeat([]byte{byte(i%250 + 1)}, n)
		if err := tl.write(rec); err != nil {
			t.Fatal(err)
		}
		want = append(want, rec...)
		if i%41 == 0 {
			reserved := tl.reserved
			if err := tl.beforeSync(); err != nil {
				t.Fatal(err)
			}
			if tl.data != nil && !tl.plain {
				t.Fatal("the window is still mapped after beforeSync")
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if tl.reserved != reserved {
				t.Fatalf("beforeSync changed the reservation: %d -> %d", reserved, tl.reserved)
			}
		}
	}
	if err := tl.close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the file holds %d bytes, %d were appended (equal prefix: %v)", len(got), len(want), bytes.HasPrefix(want, got))
	}
}
