package filestore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store/storetest"
)

// FuzzReadRecords feeds arbitrary bytes to the recording reader: it must never panic, and must
// end in nil, a typed error, or the callback's error, having passed on only verified events.
func FuzzReadRecords(f *testing.F) {
	c := &storetest.Chain{Session: "fz"}
	var good []byte
	good = appendHeader(good, "fz")
	for _, e := range c.NextN(4) {
		good, _ = appendRecord(good, e)
	}
	f.Add(good)
	f.Add(good[:len(good)-7])
	f.Add(appendHeader(nil, "fz"))
	f.Add([]byte("ALREC"))
	f.Add(append(bytes.Clone(good), make([]byte, 64)...))
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	f.Add(flipped)

	f.Fuzz(func(t *testing.T, b []byte) {
		var prev *event.Event
		err := ReadRecording(bytes.NewReader(b), "", 0, func(e *event.Event) error {
			if !e.Verify() {
				t.Fatalf("event %d passed on without verifying", e.Seq)
			}
			if prev == nil && (e.Seq != 1 || e.Prev != [32]byte{}) || prev != nil && (e.Seq != prev.Seq+1 || e.Prev != prev.Hash) {
				t.Fatalf("event %d passed on out of chain", e.Seq)
			}
			c := *e
			prev = &c
			return nil
		})
		var torn *TornTailError
		var corrupt *CorruptError
		if err != nil && !errors.As(err, &torn) && !errors.As(err, &corrupt) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
