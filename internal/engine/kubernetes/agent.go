package kubernetes

// Kubernetes targets served by an agent (docs/agent.md). The gateway holds no credential for
// them: each of its HTTP connections to such a target is a tunnel stream on which it speaks
// plain HTTP/1.1 (the tunnel is TLS) to the agent, and the agent forwards every request to the
// API server over TLS, with the CA and the credential (bearer token or client certificate) of
// its own config. Policy, recording and masking stay at the gateway, which reads every request
// and response before the agent sees it or after the agent sent it; the agent carries requests.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

func init() { connector.RegisterHandshake(Name, agentHandshake) }

// agentIdleTimeout ends a gateway's idle HTTP connection (stream) to an agent.
const agentIdleTimeout = 5 * time.Second

// newAgentUpstream is the gateway's side: HTTP/1.1 over streams that open opens through the
// agent's tunnel. Upgrades (exec, attach, port-forward) use the same transport, so one type of
// connection serves both.
func newAgentUpstream(t target.Target, open func(ctx context.Context, t target.Target, proto string, req []byte) (*connector.Upstream, error)) *upstream {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			u, err := open(ctx, t, Name, nil)
			if err != nil {
				return nil, err
			}
			return u, nil
		},
		ResponseHeaderTimeout: 0, // watches and long requests answer when they answer
		MaxIdleConnsPerHost:   32,
		// Short: an idle connection is a stream the agent counts as a session, and a draining
		// agent waits for its sessions. A new stream costs a round trip on the tunnel, no TLS.
		// Shorter than the agent's own idle timeout, so that the gateway is the side that closes.
		IdleConnTimeout:    agentIdleTimeout - time.Second,
		DisableCompression: true,
	}
	// The host names nothing: the agent sends each request to its own target's API server.
	return &upstream{base: &url.URL{Scheme: "http", Host: "api-server.via-agent"}, rt: tr, h1: tr}
}

// agentHandshake is the agent's side, run by the agent for each stream the gateway opens to a
// kubernetes target: the stream is served as an HTTP/1.1 connection by the target's proxy.
// The dial it is given is not used: the proxy's transports dial the API server themselves, one
// connection per request or upgrade, with connector.Direct (the agent's network).
func agentHandshake(_ context.Context, t target.Target, _ connector.DialFunc, _ []byte) (net.Conn, []byte, error) {
	p, err := agentProxies.get(t)
	if err != nil {
		return nil, nil, err
	}
	gw, ag := net.Pipe()
	if !p.ln.push(ag) {
		gw.Close()
		ag.Close()
		return nil, nil, errors.New("the agent's proxy for " + t.Name + " is closed")
	}
	return gw, nil, nil
}

// agentProxyCache holds one proxy per target configuration, for the agent's life.
type agentProxyCache struct {
	mu sync.Mutex
	m  map[string]*agentProxy
}

var agentProxies agentProxyCache

type agentProxy struct {
	ln *streamListener
}

func (c *agentProxyCache) get(t target.Target) (*agentProxy, error) {
	key := cacheKey(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.m[key]; ok {
		return p, nil
	}
	up, err := newUpstream(t, connector.Direct{}.Dial)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Name, err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(up.base) },
		Transport:     upgradeAware{up},
		FlushInterval: -1, // watches and followed logs as they come
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeStatus(w, http.StatusBadGateway, "ServiceUnavailable", fmt.Sprintf("the agent could not reach the API server of target %s: %v", t.Name, err))
		},
	}
	// Only the agent's credential goes on (the gateway sends none), read for each request so
	// that a rotated token_file is taken up.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := resolveToken(t)
		if err != nil {
			writeStatus(w, http.StatusBadGateway, "ServiceUnavailable", fmt.Sprintf("target %s on the agent: %v", t.Name, err))
			return
		}
		r.Header.Del("Authorization")
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		rp.ServeHTTP(w, r)
	})
	p := &agentProxy{ln: newStreamListener()}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: agentIdleTimeout}
	go srv.Serve(p.ln)
	if c.m == nil {
		c.m = map[string]*agentProxy{}
	}
	c.m[key] = p
	return p, nil
}

// upgradeAware sends protocol upgrades over HTTP/1.1 (they cannot ride HTTP/2) and the rest
// over the transport that may negotiate HTTP/2, like the gateway's own upstream.
type upgradeAware struct{ up *upstream }

func (u upgradeAware) RoundTrip(r *http.Request) (*http.Response, error) {
	if isUpgrade(r.Header) {
		return u.up.h1.RoundTrip(r)
	}
	return u.up.rt.RoundTrip(r)
}

// streamListener is a net.Listener whose connections are handed to it (the agent's ends of the
// gateway's streams).
type streamListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closer sync.Once
}

func newStreamListener() *streamListener {
	return &streamListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to the server; false once the listener is closed.
func (l *streamListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.closer.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "gateway-stream" }
