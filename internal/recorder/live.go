package recorder

import (
	"context"
	"sync"
)

// Sessions in progress can be ended from outside (an administrator, through the API): the
// gateway gives each connection a context it can cancel with a cause, and hands the cancel
// function down with WithTerminate; Start registers it under the new session's id, and End
// forgets it. Engines need do nothing more than pass the connection's context to Start and end
// the session when it is cancelled, which they do for ErrShutdown already.

type terminateKey struct{}

// WithTerminate returns ctx carrying cancel, the function that ends the connection whose
// context ctx is (or derives from).
func WithTerminate(ctx context.Context, cancel context.CancelCauseFunc) context.Context {
	return context.WithValue(ctx, terminateKey{}, cancel)
}

// liveSessions maps the id of each session this recorder is recording to its cancel function.
type liveSessions struct {
	mu sync.Mutex
	m  map[string]context.CancelCauseFunc
}

func (l *liveSessions) add(ctx context.Context, id string) {
	cancel, ok := ctx.Value(terminateKey{}).(context.CancelCauseFunc)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]context.CancelCauseFunc{}
	}
	l.m[id] = cancel
}

func (l *liveSessions) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, id)
}

// Terminate ends the session id that this recorder is recording, giving cause to its context
// (the engine tells the client why, in its protocol). It reports false when no such session is
// running here: unknown, ended, or recorded by another gateway replica.
func (r *Recorder) Terminate(id string, cause error) bool {
	r.live.mu.Lock()
	cancel, ok := r.live.m[id]
	r.live.mu.Unlock()
	if ok {
		cancel(cause)
	}
	return ok
}
