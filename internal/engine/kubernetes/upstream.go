package kubernetes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

// upstream reaches one target's API server: base URL, and transports whose connections go
// through the gateway's connector.
type upstream struct {
	base *url.URL
	// rt serves ordinary requests (HTTP/2 when the API server offers it); h1 serves upgrades
	// (exec, attach, port-forward), which need HTTP/1.1.
	rt, h1 *http.Transport
}

// upstreamCache keeps one upstream per target definition, so that connections to the API
// server are reused across client connections.
type upstreamCache struct {
	dial func(ctx context.Context, t target.Target) (net.Conn, error)
	open func(ctx context.Context, t target.Target, proto string, req []byte) (*connector.Upstream, error) // agent-served targets
	mu   sync.Mutex
	m    map[string]*upstream
}

func (c *upstreamCache) get(t target.Target) (*upstream, error) {
	key := cacheKey(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	if u, ok := c.m[key]; ok {
		return u, nil
	}
	var u *upstream
	if t.Agent != "" {
		u = newAgentUpstream(t, c.open)
	} else {
		var err error
		if u, err = newUpstream(t, c.dial); err != nil {
			return nil, err
		}
	}
	if c.m == nil {
		c.m = map[string]*upstream{}
	}
	c.m[key] = u
	return u, nil
}

// cacheKey tells apart the configurations of a target that its cached transports depend on.
func cacheKey(t target.Target) string {
	return strings.Join([]string{t.Name, t.Address, t.CAFile, t.ClientCertFile, t.ClientKeyFile, t.TLS, t.Agent, t.Token, t.TokenFile}, "\x00")
}

func newUpstream(t target.Target, dial func(context.Context, target.Target) (net.Conn, error)) (*upstream, error) {
	base, err := url.Parse(t.Address)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("address %q is not an https:// URL of an API server", t.Address)
	}
	hostport := base.Host
	if base.Port() == "" {
		port := "443"
		if base.Scheme == "http" {
			port = "80"
		}
		hostport = net.JoinHostPort(base.Hostname(), port)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: base.Hostname()}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", t.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if t.ClientCertFile != "" {
		cf := &certFiles{cert: t.ClientCertFile, key: t.ClientKeyFile}
		if _, err := cf.get(); err != nil {
			return nil, err
		}
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cf.get() }
	}
	// Every connection to the API server goes through the connector, to the target's
	// host:port whatever the request's URL says.
	dt := t
	dt.Address = hostport
	dialFn := func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, dt) }
	// Upgraded streams read the API server through a readAheadConn (bulkio.go).
	dialAhead := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := dial(ctx, dt)
		if err != nil {
			return nil, err
		}
		return &readAheadConn{Conn: c}, nil
	}
	mk := func(h2 bool) *http.Transport {
		cfg := tlsCfg.Clone()
		tr := &http.Transport{
			DialContext:           dialFn,
			TLSClientConfig:       cfg,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 0, // watches and long requests answer when they answer
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     h2,
			DisableCompression:    true, // bodies pass as the API server sends them
		}
		if !h2 {
			tr.DialContext = dialAhead
			cfg.NextProtos = []string{"http/1.1"}
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		return tr
	}
	return &upstream{base: base, rt: mk(true), h1: mk(false)}, nil
}

// resolveToken returns t's bearer token, reading token_file now.
func resolveToken(t target.Target) (string, error) {
	if t.TokenFile == "" {
		return t.Token, nil
	}
	b, err := os.ReadFile(t.TokenFile)
	if err != nil {
		return "", fmt.Errorf("read token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("token_file is empty")
	}
	return tok, nil
}

// certFiles is a client certificate read from its files, read again for a new connection when
// either file changed (a rotated certificate is used without a restart, as token_file is).
type certFiles struct {
	cert, key string

	mu     sync.Mutex
	stamp  [2]fileStamp
	cached *tls.Certificate
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// get returns the certificate, loading it again when its files changed since the last load. A
// rotation caught half-way (the new certificate with the old key) fails that connection only:
// the next one reads the files again.
func (c *certFiles) get() (*tls.Certificate, error) {
	sc, err := stampOf(c.cert)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	sk, err := stampOf(c.key)
	if err != nil {
		return nil, fmt.Errorf("client certificate key: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached != nil && c.stamp == [2]fileStamp{sc, sk} {
		return c.cached, nil
	}
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("load client certificate: %w", err)
	}
	c.cached, c.stamp = &cert, [2]fileStamp{sc, sk}
	return c.cached, nil
}
