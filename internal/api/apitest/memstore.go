// Package apitest provides an in-memory store.Store for unit tests of the API and of the CLI
// client. It is a fake: the real backends are tested by the store's shared suite.
package apitest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// Store is an in-memory store.Store. EventsErr, when set for a session, is returned by Events
// after that session's events have been delivered, to simulate a torn recording.
type Store struct {
	mu        sync.Mutex
	sessions  map[string]*store.Session
	events    map[string][]*event.Event
	targets   map[string]target.Target
	kv        map[string][]byte
	EventsErr map[string]error
}

// New returns an empty Store.
func New() *Store {
	return &Store{sessions: map[string]*store.Session{}, events: map[string][]*event.Event{},
		targets: map[string]target.Target{}, kv: map[string][]byte{}, EventsErr: map[string]error{}}
}

var _ store.Store = (*Store)(nil)

// Create implements store.Recordings.
func (s *Store) Create(ctx context.Context, sess store.Session) (store.Writer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess.ID]; ok {
		return nil, fmt.Errorf("session %s: %w", sess.ID, store.ErrExists)
	}
	c := sess
	s.sessions[sess.ID] = &c
	return &writer{s: s, id: sess.ID}, nil
}

// Sessions implements store.Recordings.
func (s *Store) Sessions(ctx context.Context, f store.Filter) ([]store.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Session
	for _, x := range s.sessions {
		switch {
		case f.User != "" && x.User != f.User,
			f.Target != "" && x.Target != f.Target,
			f.Type != "" && x.Type != f.Type,
			!f.To.IsZero() && !x.StartedAt.Before(f.To),
			!f.From.IsZero() && x.EndedAt != nil && x.EndedAt.Before(f.From),
			f.Status == store.StatusActive && x.EndedAt != nil,
			f.Status == store.StatusEnded && x.EndedAt == nil,
			!f.Before.IsZero() && !(x.StartedAt.Before(f.Before.StartedAt) || x.StartedAt.Equal(f.Before.StartedAt) && x.ID < f.Before.ID),
			f.Text != "" && !s.hasText(x.ID, f.Text):
			continue
		}
		out = append(out, *x)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].ID > out[j].ID
		}
		return out[i].StartedAt.After(out[j].StartedAt)
	})
	limit := f.Limit
	if limit == 0 {
		limit = 1000
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// hasText: store.SearchText of one of session id's events contains text, ignoring case.
func (s *Store) hasText(id, text string) bool {
	for _, e := range s.events[id] {
		if strings.Contains(strings.ToLower(store.SearchText(e)), strings.ToLower(text)) {
			return true
		}
	}
	return false
}

// Session implements store.Recordings.
func (s *Store) Session(ctx context.Context, id string) (store.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.sessions[id]
	if !ok {
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	return *x, nil
}

// Events implements store.Recordings.
func (s *Store) Events(ctx context.Context, id string, after uint64, fn func(*event.Event) error) error {
	s.mu.Lock()
	_, ok := s.sessions[id]
	evs := s.events[id]
	tail := s.EventsErr[id]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	for _, e := range evs {
		if e.Seq <= after {
			continue
		}
		c := *e
		if err := fn(&c); err != nil {
			return err
		}
	}
	return tail
}

// PutTarget implements store.Targets.
func (s *Store) PutTarget(ctx context.Context, t target.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets[t.Name] = t
	return nil
}

// GetTarget implements store.Targets.
func (s *Store) GetTarget(ctx context.Context, name string) (target.Target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.targets[name]
	if !ok {
		return target.Target{}, fmt.Errorf("%w %q", target.ErrUnknown, name)
	}
	return t, nil
}

// ListTargets implements store.Targets.
func (s *Store) ListTargets(ctx context.Context) ([]target.Target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []target.Target
	for _, t := range s.targets {
		out = append(out, t)
	}
	return out, nil
}

// GetKV implements store.KV.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.kv[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return v, nil
}

// PutKV implements store.KV.
func (s *Store) PutKV(ctx context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv[key] = append([]byte(nil), value...)
	return nil
}

// Close implements store.Store.
func (s *Store) Close() error { return nil }

type writer struct {
	s    *Store
	id   string
	prev [32]byte
}

func (w *writer) Append(events ...*event.Event) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	for _, e := range events {
		c := *e
		c.Data = append([]byte(nil), e.Data...)
		c.Raw = append([]byte(nil), e.Raw...)
		w.s.events[w.id] = append(w.s.events[w.id], &c)
	}
	return nil
}

func (w *writer) Sync() error { return nil }

func (w *writer) End(ctx context.Context, end store.SessionEnd) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	x := w.s.sessions[w.id]
	t := end.EndedAt
	x.EndedAt = &t
	x.EndReason = end.Reason
	x.Events = end.Events
	x.Head = fmt.Sprintf("%x", end.Head)
	return nil
}

// Recording builds a session's events for tests: each Add seals the next event in the chain.
type Recording struct {
	ID    string
	Start time.Time
	prev  [32]byte
	seq   uint64
	buf   []byte
	Evs   []*event.Event
}

// Add appends an event of type typ at offset off with data (marshalled to JSON unless it is
// already []byte) and raw.
func (r *Recording) Add(typ event.Type, off time.Duration, data []byte, raw []byte) *event.Event {
	r.seq++
	e := &event.Event{Session: r.ID, Seq: r.seq, Type: typ, Offset: off, Time: r.Start.Add(off).UTC(), Data: data, Raw: raw}
	r.buf = e.Seal(r.prev, r.buf)
	r.prev = e.Hash
	r.Evs = append(r.Evs, e)
	return e
}

// Put stores a session and its events, ended at end (nil for a running session).
func (s *Store) Put(sess store.Session, evs []*event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := sess
	if c.EndedAt != nil && len(evs) > 0 {
		c.Events = uint64(len(evs))
		c.Head = fmt.Sprintf("%x", evs[len(evs)-1].Hash)
	}
	s.sessions[sess.ID] = &c
	s.events[sess.ID] = evs
}

// SetHold implements store.Recordings.
func (s *Store) SetHold(ctx context.Context, id string, hold bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.sessions[id]
	if !ok {
		return fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	x.Hold = hold
	return nil
}

// Expire implements store.Recordings.
func (s *Store) Expire(ctx context.Context, tgt string, cutoff time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{}
	for id, x := range s.sessions {
		if x.Target == tgt && x.EndedAt != nil && x.EndedAt.Before(cutoff) && !x.Hold {
			delete(s.sessions, id)
			delete(s.events, id)
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}
