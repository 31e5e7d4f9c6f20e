//go:build linux

package filestore

import (
	"bufio"
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
			// Two of three events are small (a statement, a row), the third up to 100 KiB.
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
