package postgres

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/target"
)

// The gateway hands every client its own cancel key (pid, secret). A CancelRequest arrives on a
// new connection; the registry maps the key back to the session's upstream backend, so the
// target's key never leaves the gateway and a client can cancel only its own statements.

type cancelKey struct {
	pid    uint32
	secret uint32
}

func (k cancelKey) secretBytes() []byte { return binary.BigEndian.AppendUint32(nil, k.secret) }

type cancelTarget struct {
	target    target.Target
	pid       uint32
	secret    []byte
	connector connector.Connector
	rec       *recorder.Session
	log       *slog.Logger
}

type cancelRegistry struct {
	mu   sync.Mutex
	byID map[uint32]cancelEntry
}

type cancelEntry struct {
	secret uint32
	t      cancelTarget
}

func newCancelRegistry() *cancelRegistry { return &cancelRegistry{byID: map[uint32]cancelEntry{}} }

func (r *cancelRegistry) register(t cancelTarget) cancelKey {
	var b [8]byte
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		rand.Read(b[:])
		k := cancelKey{pid: binary.BigEndian.Uint32(b[:4]) & 0x7fffffff, secret: binary.BigEndian.Uint32(b[4:])}
		if _, taken := r.byID[k.pid]; !taken && k.pid != 0 {
			r.byID[k.pid] = cancelEntry{secret: k.secret, t: t}
			return k
		}
	}
}

func (r *cancelRegistry) remove(k cancelKey) {
	r.mu.Lock()
	delete(r.byID, k.pid)
	r.mu.Unlock()
}

// cancel forwards a cancel request whose key matches a live session.
func (r *cancelRegistry) cancel(ctx context.Context, pid uint32, secret []byte) {
	r.mu.Lock()
	ent, ok := r.byID[pid]
	r.mu.Unlock()
	if !ok || len(secret) != 4 || subtle.ConstantTimeEq(int32(binary.BigEndian.Uint32(secret)), int32(ent.secret)) != 1 {
		return // like PostgreSQL: a wrong key is ignored silently
	}
	t := ent.t
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := func() error {
		conn, err := t.connector.Dial(ctx, t.target)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		msg, err := (&pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.secret}).Encode(nil)
		if err != nil {
			return err
		}
		if _, err := conn.Write(msg); err != nil {
			return err
		}
		// The server closes the connection once it has handled the request.
		var b [1]byte
		conn.Read(b[:])
		return nil
	}()
	d := event.CancelData{Delivered: err == nil}
	if err != nil {
		d.Error = err.Error()
		t.log.Warn("cancel request could not be delivered", "err", err)
	} else {
		t.log.Info("cancel request forwarded to target")
	}
	t.rec.Record(event.Cancel, d, nil)
	t.rec.Commit()
}
