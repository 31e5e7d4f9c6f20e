package filestore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// Resume reopens the recording of a session whose index entry has no end (the process that
// wrote it stopped without ending it), for crash recovery to append the session's end. It reads
// and verifies the whole file first. A torn tail - an incomplete last record, or the zeros a
// power loss can leave - is cut off and the cut made durable: Append never returned for that
// record, so nothing it describes was forwarded. A recording with any other damage
// (*CorruptError) is refused: nothing is ever appended after bytes that are not what was written.
// It returns the writer and the seq and hash of the last intact event.
func (s *Store) Resume(ctx context.Context, id string) (store.Writer, uint64, [32]byte, error) {
	var head [32]byte
	sess, err := s.Session(ctx, id)
	if err != nil {
		return nil, 0, head, err
	}
	if sess.EndedAt != nil {
		return nil, 0, head, fmt.Errorf("resume session %q: end already recorded: %w", id, store.ErrExists)
	}
	s.mu.Lock()
	_, live := s.open[id]
	s.mu.Unlock()
	if live {
		return nil, 0, head, fmt.Errorf("resume session %q: it is being recorded: %w", id, store.ErrExists)
	}
	rel, err := s.sessionPath(ctx, id)
	if err != nil {
		return nil, 0, head, err
	}
	abs := filepath.Join(s.dir, filepath.FromSlash(rel))
	f, err := os.OpenFile(abs, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, head, fmt.Errorf("resume session %q: %w", id, err)
	}
	var (
		seq  uint64
		text = &searchText{}
	)
	rerr := ReadRecording(bufio.NewReaderSize(f, 64<<10), id, 0, func(e *event.Event) error {
		seq, head = e.Seq, e.Hash
		text.add(e)
		return nil
	})
	var torn *TornTailError
	switch {
	case rerr == nil:
	case errors.As(rerr, &torn):
		err = f.Truncate(torn.Offset)
		if err == nil && torn.Offset == 0 {
			_, err = f.WriteAt(appendHeader(nil, id), 0) // the header itself was torn
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, 0, head, fmt.Errorf("resume session %q: cut the torn tail at %d: %w", id, torn.Offset, err)
		}
	default:
		f.Close()
		return nil, 0, head, fmt.Errorf("resume session %q: %w", id, rerr)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, head, fmt.Errorf("resume session %q: %w", id, err)
	}
	w := &writer{s: s, id: id, path: abs, f: f, t: newTail(f, fi.Size()), buf: make([]byte, 0, 4096), seq: seq, head: head, text: searchText{b: text.b}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		f.Close()
		return nil, 0, head, store.ErrClosed
	}
	if _, dup := s.open[id]; dup {
		f.Close()
		return nil, 0, head, fmt.Errorf("resume session %q: it is being recorded: %w", id, store.ErrExists)
	}
	s.open[id] = w
	return w, seq, head, nil
}
