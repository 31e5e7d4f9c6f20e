package postgres

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-gw/airlock/internal/store"
)

// pool is a minimal connection pool. As of 2026-11 pgxpool (and pgx/stdlib, which imports it)
// needs github.com/jackc/puddle/v2, which is not in go.sum; this keeps the store buildable
// without a new module. Swapping it for pgxpool later touches only this file and with.
type pool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{} // one token per connection in use or being dialled

	mu     sync.Mutex
	idle   []*pgx.Conn
	closed bool
}

func newPool(cfg *pgx.ConnConfig, max int) *pool {
	return &pool{cfg: cfg, slots: make(chan struct{}, max)}
}

func (p *pool) acquire(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, store.ErrClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

// release returns c to the pool, or closes it when it is broken, busy or inside a transaction
// (an operation that failed half way), or when the pool is closed.
func (p *pool) release(c *pgx.Conn) {
	defer func() { <-p.slots }()
	reusable := !c.IsClosed() && !c.PgConn().IsBusy() && c.PgConn().TxStatus() == 'I'
	p.mu.Lock()
	if reusable && !p.closed {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	c.Close(context.Background())
}

// close closes the idle connections; those in use are closed when released.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.Close(context.Background())
	}
}
