package recorder

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/signing"
)

// crashedSession records a session with checkpoints and leaves it as kill -9 would: the store is
// abandoned without the session's end, and the last record is cut short by cut bytes.
func crashedSession(t *testing.T, dataDir, keyDir string, cut int64) (id string, written int) {
	t.Helper()
	st := openStore(t, dataDir)
	keys := keyring(t, keyDir)
	clk := newClock()
	r := &Recorder{Store: st, Now: clk.Now, Signer: keys, CheckpointEvents: 4}
	s, err := r.Start(context.Background(), Info{Protocol: "postgres", Target: "db", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 9; i++ {
		clk.Add(time.Millisecond)
		s.Record(event.Query, event.QueryData{Text: "select 1"}, nil)
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	written = int(s.seq)
	// Closing the store syncs and drops the writer but leaves the session running in the index,
	// which is what the index holds after a crash.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "recordings", "*", "*", "*", s.ID()+".alr"))
	if len(files) != 1 {
		t.Fatalf("recording file: %v", files)
	}
	if cut > 0 {
		fi, err := os.Stat(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(files[0], fi.Size()-cut); err != nil {
			t.Fatal(err)
		}
		written-- // the last record is now incomplete
	}
	return s.ID(), written
}

func TestRecoverInterrupted(t *testing.T) {
	for _, tt := range []struct {
		name string
		cut  int64
	}{{"clean tail", 0}, {"torn tail", 7}} {
		t.Run(tt.name, func(t *testing.T) {
			dataDir, keyDir := t.TempDir(), t.TempDir()
			id, intact := crashedSession(t, dataDir, keyDir, tt.cut)
			// The restart signs with a rotated key: the old one must still verify the old
			// checkpoints.
			if _, err := signing.Rotate(keyDir, time.Now()); err != nil {
				t.Fatal(err)
			}
			keys := keyring(t, keyDir)
			st := openStore(t, dataDir)
			defer st.Close()
			clk := newClock()
			clk.Add(time.Hour)
			r := &Recorder{Store: st, Now: clk.Now, Signer: keys}
			n, err := r.Recover(context.Background(), nil, keys.Public())
			if err != nil || n != 1 {
				t.Fatalf("Recover = %d, %v", n, err)
			}
			sess, err := st.Session(context.Background(), id)
			if err != nil || sess.EndedAt == nil || sess.EndReason != EndInterrupted || sess.Events != uint64(intact+2) {
				t.Fatalf("after recovery: %+v, %v (want %d events)", sess, err, intact+2)
			}
			// Ended at the last event before the crash, not at the restart.
			if !sess.EndedAt.Before(clk.Now().Add(-time.Minute)) {
				t.Fatalf("ended_at %v is the recovery time", sess.EndedAt)
			}
			events := readAll(t, st, id)
			if res := verifyEvents(keys, events); !res.Intact {
				t.Fatalf("recovered recording does not verify: %+v", res)
			}
			end := events[len(events)-2]
			if end.Type != event.SessionEnd || end.Seq != uint64(intact+1) {
				t.Fatalf("event before the final checkpoint: %+v", end)
			}
			// Idempotent: nothing is left running.
			if n, err := r.Recover(context.Background(), nil, keys.Public()); err != nil || n != 0 {
				t.Fatalf("second Recover = %d, %v", n, err)
			}
		})
	}
}

func TestRecoverRefusesCorruptRecording(t *testing.T) {
	dataDir, keyDir := t.TempDir(), t.TempDir()
	id, _ := crashedSession(t, dataDir, keyDir, 0)
	files, _ := filepath.Glob(filepath.Join(dataDir, "recordings", "*", "*", "*", id+".alr"))
	b, _ := os.ReadFile(files[0])
	b[len(b)/2] ^= 0xff // not a torn tail: tampering or a bad disk
	os.WriteFile(files[0], b, 0o600)
	st := openStore(t, dataDir)
	defer st.Close()
	keys := keyring(t, keyDir)
	r := &Recorder{Store: st, Signer: keys}
	if n, err := r.Recover(context.Background(), nil, keys.Public()); err == nil || n != 0 {
		t.Fatalf("Recover of a corrupt recording = %d, %v; want an error", n, err)
	}
	if sess, _ := st.Session(context.Background(), id); sess.EndedAt != nil {
		t.Fatalf("corrupt recording was ended: %+v", sess)
	}
	if after, _ := os.ReadFile(files[0]); len(after) != len(b) {
		t.Fatalf("corrupt recording was changed: %d bytes, was %d", len(after), len(b))
	}
}
