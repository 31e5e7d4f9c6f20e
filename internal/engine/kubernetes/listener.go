package kubernetes

import (
	"net"
	"sync"
)

// connListener hands one connection to an http.Server, then blocks until it is closed.
type connListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
	mu     sync.Mutex
	taken  bool
}

func newConnListener(c net.Conn) *connListener {
	return &connListener{conn: c, closed: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.taken {
		l.taken = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.conn.LocalAddr() }
