package kubernetes

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/filestore"
	"github.com/airlock-gw/airlock/internal/target"
)

// These tests run the engine against a stand-in API server (httptest); test/e2e drives kubectl
// through the gateway to a real kube-apiserver.

type fakeAuth struct{}

// briefExpiry is when the token alt_brief expires (TestExpiredCredentialNotCached).
var briefExpiry atomic.Pointer[time.Time]

func (fakeAuth) Authenticate(_ context.Context, user, secret string) (*auth.Identity, error) {
	if user == "alice" && secret == "alt_good" {
		return &auth.Identity{User: user, Groups: []string{"dev", "ops"}, Role: auth.RoleUser, Method: "token"}, nil
	}
	if exp := briefExpiry.Load(); user == "alice" && secret == "alt_brief" && exp != nil {
		if !time.Now().Before(*exp) {
			return nil, &auth.Failure{Reason: auth.ReasonExpired}
		}
		return &auth.Identity{User: user, Role: auth.RoleUser, Method: "token", ExpiresAt: *exp}, nil
	}
	return nil, auth.ErrBadCredentials
}

type fakeTargets map[string]target.Target

func (f fakeTargets) Lookup(_ context.Context, name string) (target.Target, error) {
	if t, ok := f[name]; ok {
		return t, nil
	}
	return target.Target{}, target.ErrUnknown
}

// fakeAPI records the headers it got and answers a few paths like an API server.
type fakeAPI struct {
	mu      sync.Mutex
	headers []http.Header
	bulk    bool // exec answers with a bulk stdout (BenchmarkExecOutput)
	// stdin gets what an exec of command oversized-in read, once the gateway ended it.
	stdin chan []byte
	// holdStatus, when set, keeps an exec over SPDY from ending its error stream until closed.
	holdStatus chan struct{}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/api/v1/namespaces/a/secrets/s":
		fmt.Fprint(w, `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s","namespace":"a"},"data":{"password":"aHVudGVyMg=="}}`)
	case r.URL.Path == "/api/v1/namespaces/a/configmaps" && r.URL.Query().Get("watch") == "true":
		fl := w.(http.Flusher)
		for i := range 3 {
			fmt.Fprintf(w, `{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"cm-%d","namespace":"a","resourceVersion":"%d"}}}`+"\n", i, i+10)
			fl.Flush()
		}
	case r.URL.Path == "/api/v1/namespaces/a/configmaps" && r.Method == "POST":
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(201)
		w.Write(b)
	case strings.HasSuffix(r.URL.Path, "/portforward"):
		fakePortForward(w, r)
	case strings.HasSuffix(r.URL.Path, "/exec") && strings.HasPrefix(r.Header.Get("Upgrade"), "SPDY/"):
		spdyExec(w, r, f.holdStatus)
	case strings.HasSuffix(r.URL.Path, "/exec") && r.Header.Get("Upgrade") == "websocket" && strings.HasPrefix(r.URL.Query().Get("command"), "oversized"):
		f.oversizedExec(w, r)
	case strings.HasSuffix(r.URL.Path, "/exec") && r.Header.Get("Upgrade") == "websocket" && f.bulk:
		fakeBulkExec(w, r)
	case strings.HasSuffix(r.URL.Path, "/exec") && r.Header.Get("Upgrade") == "websocket":
		// An exec over WebSocket: read one stdin message, answer on stdout, close.
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n")
		brw.Flush()
		op, msg, err := readFrame(brw.Reader) // stdin comes in two fragments
		if err != nil || op != 2 {
			return
		}
		if _, more, err := readFrame(brw.Reader); err == nil {
			msg = append(msg, more...)
		}
		conn.Write(wsFrame(2, append([]byte{1}, "you said: "+string(msg[1:])...), false))
		conn.Write(wsFrame(8, []byte{0x03, 0xe8}, false))
	case r.URL.Path == "/api/v1/namespaces/a/secrets" && r.URL.Query().Get("watch") == "true" && r.Header.Get("Upgrade") == "":
		// A watch in an encoding the gateway does not read (as if the client had asked for CBOR).
		w.Header().Set("Content-Type", "application/cbor-seq")
		fmt.Fprint(w, leakedSecret)
	case r.Header.Get("Upgrade") != "":
		// Any other upgrade (a watch over WebSocket, a proxy's, an exec in a protocol the
		// gateway cannot follow): switch to what was asked and send a Secret at once.
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
			r.Header.Get("Upgrade"), r.Header.Get("Sec-WebSocket-Protocol"))
		brw.Write(wsFrame(1, []byte(leakedSecret), false))
		brw.Flush()
		io.Copy(io.Discard, brw) // until the gateway closes
	case r.URL.Path == "/api/v1/namespaces/a/pods":
		// A list bigger than the body limit.
		fmt.Fprintf(w, `{"kind":"PodList","items":[{"metadata":{"name":"%s"}}]}`, strings.Repeat("p", 200<<10))
	default:
		w.WriteHeader(404)
		fmt.Fprint(w, `{"kind":"Status","status":"Failure","code":404}`)
	}
}

func selfSigned(t testing.TB) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type harness struct {
	api    *fakeAPI
	st     *filestore.Store
	client *http.Client
	base   string // https://127.0.0.1:PORT/k8s/
}

func newHarness(t testing.TB, rules []config.Policy) *harness {
	api := &fakeAPI{}
	srv := httptest.NewUnstartedServer(api)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)

	st, err := filestore.Open(t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := &config.Config{}
	cfg.SetDefaults()
	cfg.Kubernetes.BodyLimit = 1024
	cfg.Kubernetes.ForwardLimit = 4096
	e := New(engine.Deps{
		Config: cfg,
		TLS:    &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}},
		Auth:   fakeAuth{},
		Targets: fakeTargets{
			"k":  {Name: "k", Type: Name, Address: srv.URL, CAFile: caFile, Token: "gw-token"},
			"ki": {Name: "ki", Type: Name, Address: srv.URL, CAFile: caFile, Token: "gw-token", Impersonate: true},
			"pg": {Name: "pg", Type: "postgres", Address: "127.0.0.1:1"},
		},
		Policy:    policy.New(rules),
		Connector: connector.Direct{},
		Recorder:  &recorder.Recorder{Store: st},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); cancel(engine.ErrShutdown); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); e.Serve(ctx, c) }()
		}
	}()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &harness{api: api, st: st, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, base: "https://" + ln.Addr().String() + "/k8s/"}
}

func (h *harness) do(t *testing.T, method, path, token, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.base+path, rb)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// events returns the events of every session, once they ended (the client closed).
func (h *harness) events(t *testing.T) []*event.Event {
	t.Helper()
	h.client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss, err := h.st.Sessions(context.Background(), store.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		open := 0
		var out []*event.Event
		for _, s := range ss {
			if s.EndedAt == nil {
				open++
				continue
			}
			h.st.Events(context.Background(), s.ID, 0, func(e *event.Event) error {
				c := *e
				c.Data = append([]byte(nil), e.Data...)
				c.Raw = append([]byte(nil), e.Raw...)
				out = append(out, &c)
				return nil
			})
		}
		if open == 0 && len(ss) > 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open", open)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRefusals(t *testing.T) {
	only := []config.Policy{{Name: "bob-only", Subjects: []string{"user:bob"}, Targets: []string{"*"}, Access: "allow"}}
	tests := []struct {
		name   string
		rules  []config.Policy
		path   string
		token  string
		status int
		msg    string
	}{
		{"no credential", nil, "k/api/v1/pods", "", 401, "no gateway credential"},
		{"bad token", nil, "k/api/v1/pods", "alice:alt_bad", 401, "authentication failed"},
		{"token without user", nil, "k/api/v1/pods", "alt_good", 401, "no gateway credential"},
		{"no target in path", nil, "", "alice:alt_good", 404, "/k8s/TARGET/"},
		{"unknown target", nil, "nope/api/v1/pods", "alice:alt_good", 404, `target "nope" does not exist`},
		{"other type", nil, "pg/api/v1/pods", "alice:alt_good", 404, "postgres target"},
		{"policy", only, "k/api/v1/pods", "alice:alt_good", 403, "no policy allows alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.rules)
			resp, body := h.do(t, "GET", tt.path, tt.token, "")
			var st struct {
				Kind    string `json:"kind"`
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			json.Unmarshal([]byte(body), &st)
			if resp.StatusCode != tt.status || st.Kind != "Status" || st.Code != tt.status || !strings.Contains(st.Message, tt.msg) {
				t.Errorf("HTTP %d %s, want %d with %q", resp.StatusCode, body, tt.status, tt.msg)
			}
			if len(h.api.headers) != 0 {
				t.Errorf("a refused request reached the API server")
			}
		})
	}
}

func TestRelayAndRecording(t *testing.T) {
	rules := []config.Policy{{Name: "all", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "allow",
		Kubernetes: []config.KubernetesRule{{Name: "no-ns-delete", Verbs: []string{"delete"}, Resources: []string{"namespaces"}, Action: "deny"}}}}
	h := newHarness(t, rules)
	tok := "alice:alt_good"

	resp, body := h.do(t, "GET", "k/api/v1/namespaces/a/secrets/s", tok, "", "Impersonate-User", "system:admin", "Cookie", "c=1",
		"Accept", "application/vnd.kubernetes.protobuf, application/json")
	if resp.StatusCode != 200 || !strings.Contains(body, "aHVudGVyMg==") {
		t.Fatalf("get secret: %d %s", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("client spoke %s, want HTTP/2", resp.Proto)
	}
	resp, body = h.do(t, "POST", "k/api/v1/namespaces/a/configmaps", tok, `{"kind":"ConfigMap","metadata":{"name":"x"},"data":{"k":"v"}}`, "Content-Type", "application/json")
	if resp.StatusCode != 201 || !strings.Contains(body, `"k":"v"`) {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do(t, "DELETE", "k/api/v1/namespaces/a", tok, "")
	if resp.StatusCode != 403 || !strings.Contains(body, "no-ns-delete") {
		t.Fatalf("delete namespace: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do(t, "GET", "k/api/v1/namespaces/a/configmaps?watch=true", tok, "")
	if resp.StatusCode != 200 || strings.Count(body, "ADDED") != 3 {
		t.Fatalf("watch: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do(t, "GET", "k/api/v1/namespaces/a/pods", tok, "")
	if resp.StatusCode != 200 || len(body) < 200<<10 {
		t.Fatalf("big list: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, _ = h.do(t, "GET", "ki/api/v1/namespaces/a/pods", tok, "")
	if resp.StatusCode != 200 {
		t.Fatalf("impersonating target: %d", resp.StatusCode)
	}

	h.api.mu.Lock()
	headers := h.api.headers
	h.api.mu.Unlock()
	if len(headers) != 5 { // the denied delete never went out
		t.Fatalf("API server got %d requests, want 5", len(headers))
	}
	for i, hd := range headers[:4] {
		if hd.Get("Authorization") != "Bearer gw-token" || hd.Get("Cookie") != "" || hd.Get("Impersonate-User") != "" {
			t.Errorf("request %d reached the API server with %v", i, hd)
		}
		if strings.Contains(hd.Get("Accept"), "protobuf") {
			t.Errorf("request %d asks for protobuf: %q", i, hd.Get("Accept"))
		}
	}
	if hd := headers[4]; hd.Get("Impersonate-User") != "alice" || strings.Join(hd.Values("Impersonate-Group"), ",") != "dev,ops" {
		t.Errorf("impersonating request headers: %v", hd)
	}

	ev := h.events(t)
	var all strings.Builder
	byType := map[event.Type][]*event.Event{}
	for _, e := range ev {
		byType[e.Type] = append(byType[e.Type], e)
		all.Write(e.Data)
		all.Write(e.Raw)
	}
	for _, secret := range []string{"aHVudGVyMg==", "alt_good", "gw-token", "system:admin", "c=1"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("the recording holds %q", secret)
		}
	}
	if n := len(byType[event.KubeRequest]); n != 6 {
		t.Errorf("%d kube.request events, want 6", n)
	}
	var denied, secretResp, big *event.Event
	for _, e := range ev {
		var d map[string]any
		json.Unmarshal(e.Data, &d)
		switch {
		case e.Type == event.KubeRequest && d["denied"] == true:
			denied = e
		case e.Type == event.KubeResponse && strings.Contains(string(e.Raw), `"kind":"Secret"`):
			secretResp = e
		case e.Type == event.KubeResponse && strings.Contains(string(e.Raw), "PodList"):
			big = e
		}
	}
	if denied == nil || !strings.Contains(string(denied.Data), `"rule":"no-ns-delete"`) {
		t.Errorf("denied request: %v", denied)
	}
	if secretResp == nil || !strings.Contains(string(secretResp.Raw), `"password":"***"`) || !strings.Contains(string(secretResp.Data), `"masked":1`) {
		t.Errorf("secret response: %v", secretResp)
	}
	if big == nil || len(big.Raw) != 1024 || !strings.Contains(string(big.Data), `"truncated":true`) || !strings.Contains(string(big.Data), `"sha256":"`) {
		t.Errorf("big response: %s (%d raw bytes)", big.Data, len(big.Raw))
	}
	if n := len(byType[event.KubeWatchEvent]); n != 3 {
		t.Errorf("%d kube.watch events, want 3", n)
	} else if !strings.Contains(string(byType[event.KubeWatchEvent][2].Data), `"name":"cm-2"`) {
		t.Errorf("third watch event: %s", byType[event.KubeWatchEvent][2].Data)
	}
	if n := len(byType[event.KubeResponseEnd]); n != 1 || !strings.Contains(string(byType[event.KubeResponseEnd][0].Data), `"events":3`) {
		t.Errorf("kube.response.end events: %d", n)
	}
	if n := len(byType[event.SessionEnd]); n != 2 {
		t.Errorf("%d sessions ended, want 2 (one per target)", n)
	}
}

// wsFrame encodes one final WebSocket frame (masked, as a client sends, when mask is set).
func wsFrame(op byte, payload []byte, mask bool) []byte {
	b := []byte{0x80 | op}
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !mask {
		return append(b, payload...)
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

func readFrame(r io.Reader) (op byte, payload []byte, err error) {
	h := make([]byte, 2)
	if _, err = io.ReadFull(r, h); err != nil {
		return
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		e := make([]byte, 2)
		io.ReadFull(r, e)
		n = int(e[0])<<8 | int(e[1])
	}
	var key []byte
	if h[1]&0x80 != 0 {
		key = make([]byte, 4)
		io.ReadFull(r, key)
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	for i := range payload {
		if key != nil {
			payload[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, payload, nil
}

func TestExecOverWebSocketRecorded(t *testing.T) {
	h := newHarness(t, nil)
	conn, br := h.websocket(t, "exec?command=sh&stdin=true&stdout=true", "v5.channel.k8s.io")
	// stdin in two fragments, then a resize.
	first := wsFrame(2, append([]byte{0}, "ls -l"...), true)
	first[0] &^= 0x80 // not final
	conn.Write(first)
	cont := wsFrame(0, []byte(" /tmp\n"), true)
	conn.Write(cont)
	op, msg, err := readFrame(br)
	if err != nil || op != 2 || string(msg) != "\x01you said: ls -l /tmp\n" {
		t.Fatalf("stdout frame: op %d %q %v", op, msg, err)
	}
	conn.Close()

	ev := h.events(t)
	// The stream is a terminal session: the program as an exec event, stdin and stdout as
	// terminal input and output on the channel numbered by the request's id.
	var stdin, stdout, exec *event.Event
	for _, e := range ev {
		switch e.Type {
		case event.TerminalInput:
			stdin = e
		case event.TerminalOutput:
			stdout = e
		case event.Exec:
			exec = e
		}
	}
	if exec == nil || !strings.Contains(string(exec.Data), `"command":"sh"`) || !strings.Contains(string(exec.Data), `"kind":"exec"`) {
		t.Errorf("exec event: %v", exec)
	}
	if stdin == nil || string(stdin.Raw) != "ls -l /tmp\n" {
		t.Errorf("stdin event: %v", stdin)
	}
	if stdout == nil || string(stdout.Raw) != "you said: ls -l /tmp\n" || strings.Contains(string(stdout.Data), `"stream"`) {
		t.Errorf("stdout event: %v", stdout)
	}
	if stdin != nil && stdout != nil && stdin.Seq > stdout.Seq {
		t.Errorf("stdin recorded after the stdout it caused")
	}
	if exec != nil && stdin != nil && exec.Seq > stdin.Seq {
		t.Errorf("exec recorded after the stream's first message")
	}
}

// kubectl get --raw PATH replaces the kubeconfig's path (/k8s/TARGET): the target then comes
// from the token (@TARGET/USER:SECRET, from `airlock kube-credential --target`).
func TestTargetInToken(t *testing.T) {
	h := newHarness(t, nil)
	root := strings.TrimSuffix(h.base, "/k8s/")
	tests := []struct {
		name, url, token string
		status           int
	}{
		{"raw path, target in token", root + "/api/v1/namespaces/a/secrets/s", "@k/alice:alt_good", 200},
		{"prefixed path, target in token", h.base + "k/api/v1/namespaces/a/secrets/s", "@k/alice:alt_good", 200},
		{"raw path, no target", root + "/api/v1/namespaces/a/secrets/s", "alice:alt_good", 404},
		{"raw path, unknown target", root + "/api/v1/namespaces/a/secrets/s", "@nope/alice:alt_good", 404},
		{"target but bad secret", root + "/api/v1/namespaces/a/secrets/s", "@k/alice:alt_bad", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tt.url, nil)
			req.Header.Set("Authorization", "Bearer "+tt.token)
			resp, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("HTTP %d %s, want %d", resp.StatusCode, b, tt.status)
			}
		})
	}
	for _, e := range h.events(t) {
		if e.Type == event.KubeRequest && !strings.Contains(string(e.Data), `"path":"/api/v1/namespaces/a/secrets/s"`) {
			t.Errorf("request recorded with path %s", e.Data)
		}
	}
}

func TestExitData(t *testing.T) {
	tests := []struct {
		name, status string
		code         int // -1: none
		msg          string
	}{
		{"success", `{"metadata":{},"status":"Success"}`, 0, ""},
		{"exit 3", `{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`, 3, ""},
		{"cannot run", `{"metadata":{},"status":"Failure","message":"exec: \"nope\": executable file not found","reason":"InternalError"}`, -1, `exec: "nope": executable file not found`},
		{"not json", `garbage`, -1, "garbage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := exitData(7, []byte(tt.status))
			if d.Channel != 7 || d.Message != tt.msg || (tt.code < 0) != (d.Status == nil) || (d.Status != nil && *d.Status != tt.code) {
				t.Errorf("exitData = %+v (status %v), want code %d message %q", d, d.Status, tt.code, tt.msg)
			}
		})
	}
}

// spdyExec answers an exec over SPDY like a kubelet: it waits for the error, stdin and stdout
// streams, echoes stdin to stdout once the client closes stdin, and ends with exit code 3.
func spdyExec(w http.ResponseWriter, r *http.Request, holdStatus <-chan struct{}) {
	streams := make(chan httpstream.Stream, 8)
	w.Header().Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, _ <-chan struct{}) error {
		streams <- st
		return nil
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	got := map[string]httpstream.Stream{}
	for len(got) < 4 {
		select {
		case st := <-streams:
			got[st.Headers().Get("streamType")] = st
		case <-time.After(5 * time.Second):
			return
		}
	}
	in, _ := io.ReadAll(got["stdin"])
	got["stdout"].Write(append([]byte("you said: "), in...))
	got["stdout"].Close()
	status := `{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`
	got["error"].Write([]byte(status[:40])) // in two pieces, as a slow kubelet may
	got["error"].Write([]byte(status[40:]))
	if holdStatus != nil {
		<-holdStatus
	}
	got["error"].Close()
	select {
	case <-conn.CloseChan():
	case <-time.After(5 * time.Second):
	}
}

// spdy upgrades a request to pod a/p's subresource (and query) over SPDY through the gateway.
func (h *harness) spdy(t *testing.T, subresource, protocol string) httpstream.Connection {
	t.Helper()
	rt, err := spdy.NewRoundTripper(&tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", h.base+"k/api/v1/namespaces/a/pods/p/"+subresource, nil)
	req.Header.Set("Authorization", "Bearer alice:alt_good")
	req.Header.Set("X-Stream-Protocol-Version", protocol)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Fatalf("upgrade: %v (HTTP %d)", err, resp.StatusCode)
	}
	return conn
}

// execStream opens an exec's stream of type typ.
func execStream(t *testing.T, conn httpstream.Connection, typ string) httpstream.Stream {
	t.Helper()
	hdr := http.Header{}
	hdr.Set("streamType", typ)
	st, err := conn.CreateStream(hdr)
	if err != nil {
		t.Fatalf("create stream %s: %v", typ, err)
	}
	return st
}

// websocket upgrades a request to pod a/p's subresource (and query) over WebSocket through the
// gateway, asking for subprotocol.
func (h *harness) websocket(t testing.TB, subresource, subprotocol string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(h.base, "https://"), "/k8s/")
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprint(conn, "GET /k8s/k/api/v1/namespaces/a/pods/p/"+subresource+" HTTP/1.1\r\nHost: x\r\n"+
		"Authorization: Bearer alice:alt_good\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: "+subprotocol+"\r\n\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Protocol") != subprotocol {
		t.Fatalf("upgrade answer: %v %v", resp, err)
	}
	return conn, br
}

func TestExecOverSPDYRecorded(t *testing.T) {
	h := newHarness(t, nil)
	conn := h.spdy(t, "exec?command=cat&stdin=true&stdout=true&tty=true", "v4.channel.k8s.io")
	defer conn.Close()
	errS, in, out, rs := execStream(t, conn, "error"), execStream(t, conn, "stdin"), execStream(t, conn, "stdout"), execStream(t, conn, "resize")
	rs.Write([]byte(`{"Width":132,"Height":43}` + "\n"))
	in.Write([]byte("hello over spdy\n"))
	in.Close()
	got, _ := io.ReadAll(out)
	if string(got) != "you said: hello over spdy\n" {
		t.Errorf("stdout %q", got)
	}
	status, _ := io.ReadAll(errS)
	if !strings.Contains(string(status), "NonZeroExitCode") {
		t.Errorf("error stream %q", status)
	}
	conn.Close()

	ev := h.events(t)
	var types []string
	var input, output string
	var exit *event.Event
	for _, e := range ev {
		types = append(types, string(e.Type))
		switch e.Type {
		case event.TerminalInput:
			input += string(e.Raw)
		case event.TerminalOutput:
			output += string(e.Raw)
		case event.ExecExit:
			exit = e
		case event.TerminalResize:
			if !strings.Contains(string(e.Data), `"cols":132`) || !strings.Contains(string(e.Data), `"rows":43`) {
				t.Errorf("resize %s", e.Data)
			}
		}
	}
	if input != "hello over spdy\n" || output != "you said: hello over spdy\n" {
		t.Errorf("recorded input %q output %q; events %v", input, output, types)
	}
	if exit == nil || !strings.Contains(string(exit.Data), `"status":3`) {
		t.Errorf("exec.exit %v; events %v", exit, types)
	}
	if !strings.Contains(strings.Join(types, " "), "terminal.resize") {
		t.Errorf("no resize recorded: %v", types)
	}
}

// leakedSecret is what the fake API server streams on an upgrade the gateway must refuse.
const leakedSecret = `{"type":"ADDED","object":{"kind":"Secret","data":{"password":"bGVha2Vk"}}}`

// upgrade sends a request that asks to switch to protocol upgrade (and subprotocol) through the
// gateway, and returns the answer and everything the client got.
func (h *harness) upgrade(t *testing.T, path, upgrade, subprotocol string) (*http.Response, string) {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(h.base, "https://"), "/k8s/")
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprint(conn, "GET /k8s/k"+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice:alt_good\r\n"+
		"Connection: Upgrade\r\nUpgrade: "+upgrade+"\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: "+subprotocol+"\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade answer: %v", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// A relayed stream: read what comes in a moment (the fake sends it at once).
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(br)
		return resp, string(b)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// An upgrade whose stream the gateway cannot record is refused with a Status, and recorded as
// refused; exec, attach and port-forward are not.
func TestUnrecordableUpgradeRefused(t *testing.T) {
	tests := []struct {
		name, path, upgrade, subprotocol string
		contacted                        bool // refused only once the target chose its protocol
	}{
		{"watch of secrets over websocket", "/api/v1/namespaces/a/secrets?watch=true", "websocket", "", false},
		{"watch in the legacy form", "/api/v1/watch/namespaces/a/secrets", "websocket", "", false},
		{"pod proxy", "/api/v1/namespaces/a/pods/p/proxy/ws", "websocket", "", false},
		{"service proxy", "/api/v1/namespaces/a/services/s:80/proxy/", "websocket", "", false},
		{"exec in another upgrade", "/api/v1/namespaces/a/pods/p/exec?command=sh", "h2c", "", false},
		{"non-resource path", "/api/v1", "websocket", "", false},
		{"attach in a protocol it cannot follow", "/api/v1/namespaces/a/pods/p/attach?stdout=true", "websocket", "json.k8s.example", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			resp, body := h.upgrade(t, tt.path, tt.upgrade, tt.subprotocol)
			var st struct {
				Kind, Status, Message string
				Code                  int
			}
			json.Unmarshal([]byte(body), &st)
			if resp.StatusCode != 403 || st.Kind != "Status" || st.Status != "Failure" || st.Code != 403 ||
				!strings.Contains(st.Message, "exec, attach and port-forward") || !strings.Contains(st.Message, "plain HTTP") {
				t.Errorf("HTTP %d %q, want a Status 403 that says why", resp.StatusCode, body)
			}
			if strings.Contains(body, "bGVha2Vk") {
				t.Errorf("the client got the stream's content: %q", body)
			}
			if contacted := len(h.api.headers) != 0; contacted != tt.contacted {
				t.Errorf("target contacted: %v, want %v", contacted, tt.contacted)
			}
			var req, refusal *event.Event
			for _, e := range h.events(t) {
				switch {
				case e.Type == event.KubeRequest:
					req = e
				case e.Type == event.KubeResponse && strings.Contains(string(e.Data), `"source":"gateway"`) && strings.Contains(string(e.Data), `"status":403`):
					refusal = e
				}
			}
			if req == nil || refusal == nil || (!tt.contacted && !strings.Contains(string(req.Data), `"denied":true`)) {
				t.Errorf("the refusal is not recorded: request %v, gateway response %v", req != nil && strings.Contains(string(req.Data), `"denied":true`), refusal != nil)
			}
		})
	}
}

// A rule written as RBAC would (create pods/exec) stops exec over WebSocket, a GET, as well as
// over SPDY, a POST: the API server authorizes both as create.
func TestDenyCreateExecStopsWebSocketExec(t *testing.T) {
	rules := []config.Policy{{Name: "all", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "allow",
		Kubernetes: []config.KubernetesRule{{Name: "no-exec", Verbs: []string{"create"}, Resources: []string{"pods/exec", "pods/attach", "pods/portforward"}, Action: "deny"}}}}
	for _, sub := range []string{"exec?command=sh&stdin=true", "attach?stdout=true", "portforward?ports=80"} {
		t.Run(sub, func(t *testing.T) {
			h := newHarness(t, rules)
			resp, body := h.upgrade(t, "/api/v1/namespaces/a/pods/p/"+sub, "websocket", "v5.channel.k8s.io")
			if resp.StatusCode != 403 || !strings.Contains(body, `denied by policy rule \"no-exec\"`) {
				t.Errorf("HTTP %d %q, want the policy's 403", resp.StatusCode, body)
			}
			if len(h.api.headers) != 0 {
				t.Errorf("the denied request reached the API server")
			}
			var denied bool
			for _, e := range h.events(t) {
				denied = denied || e.Type == event.KubeRequest && strings.Contains(string(e.Data), `"verb":"create"`) &&
					strings.Contains(string(e.Data), `"denied":true`) && strings.Contains(string(e.Data), `"rule":"no-exec"`)
			}
			if !denied {
				t.Errorf("the denial is not recorded as a create")
			}
		})
	}
}

// oversizedExec is an exec over WebSocket whose command oversized-out prints a 17 MiB stdout
// message and then a line, and whose command oversized-in reads stdin (into f.stdin) until the
// gateway ends the stream.
func (f *fakeAPI) oversizedExec(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n")
	brw.Flush()
	if r.URL.Query().Get("command") == "oversized-out" {
		big := append([]byte{1}, strings.Repeat("card 4111111111111111 ", 17<<20/22+1)...)
		conn.Write(wsFrame(2, big, false))
		conn.Write(wsFrame(2, []byte("\x01after the big frame\n"), false))
		io.Copy(io.Discard, brw) // until the gateway closes
		return
	}
	var got []byte
	for {
		_, msg, err := readFrame(brw)
		if err != nil {
			break
		}
		got = append(got, msg...)
	}
	f.stdin <- got
}

// A WebSocket frame over 16 MiB, which the gateway does not follow, ends the stream both ways
// (nothing of it nor after it goes on), and kube.response.end says why: whichever side sent it,
// with or without masking.
func TestOversizedFrameEndsStream(t *testing.T) {
	for _, tt := range []struct {
		name   string
		rules  []config.Policy
		fromCl bool
	}{
		{"from the target", nil, false},
		{"from the target, masked", maskPolicy, false},
		{"from the client", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.rules)
			h.api.stdin = make(chan []byte, 1)
			cmd := "oversized-out"
			if tt.fromCl {
				cmd = "oversized-in"
			}
			conn, br := h.websocket(t, "exec?command="+cmd+"&stdin=true&stdout=true", "v5.channel.k8s.io")
			if tt.fromCl {
				conn.Write(wsFrame(2, append([]byte{0}, make([]byte, 17<<20)...), true))
				conn.Write(wsFrame(2, []byte("\x00after the big frame\n"), true))
			}
			// The gateway closes the client's connection (the fake never does).
			got, err := io.ReadAll(br)
			if err != nil {
				t.Errorf("the stream did not end: %v", err)
			}
			if len(got) > 1<<20 || strings.Contains(string(got), "after the big frame") {
				t.Errorf("the client got %d bytes (%q...) after a frame the gateway could not record", len(got), clip(string(got), 40))
			}
			if tt.fromCl {
				select {
				case in := <-h.api.stdin:
					if len(in) > 0 {
						t.Errorf("the target got %d bytes of stdin (%q...)", len(in), clip(string(in), 40))
					}
				case <-time.After(30 * time.Second):
					t.Errorf("the gateway did not close the target's side")
				}
			}
			conn.Close()
			var end *event.Event
			for _, e := range h.events(t) {
				if e.Type == event.KubeResponseEnd {
					end = e
				}
				if (e.Type == event.TerminalOutput || e.Type == event.TerminalInput) && strings.Contains(string(e.Raw), "after the big frame") {
					t.Errorf("what came after the frame is recorded as passed on: %s", e.Type)
				}
			}
			if end == nil || !strings.Contains(string(end.Data), "ended because the gateway could not record it") {
				t.Errorf("kube.response.end does not say why the stream ended: %v", end)
			}
		})
	}
}

// Over SPDY the exit Status reaches kubectl only once exec.exit is in the store (strict mode's
// "recorded before forwarded"), not when the error stream ends.
func TestSPDYExitRecordedBeforeForwarded(t *testing.T) {
	h := newHarness(t, nil)
	h.api.holdStatus = make(chan struct{})
	defer close(h.api.holdStatus)
	conn := h.spdy(t, "exec?command=cat&stdin=true&stdout=true", "v4.channel.k8s.io")
	defer conn.Close()
	errS, in, out := execStream(t, conn, "error"), execStream(t, conn, "stdin"), execStream(t, conn, "stdout")
	execStream(t, conn, "resize")
	in.Write([]byte("x\n"))
	in.Close()
	io.ReadAll(out)
	// Read the Status as it comes; the target keeps its stream open.
	var status []byte
	buf := make([]byte, 1024)
	for !json.Valid(status) {
		n, err := errS.Read(buf)
		status = append(status, buf[:n]...)
		if err != nil {
			t.Fatalf("error stream after %q: %v", status, err)
		}
	}
	ss, err := h.st.Sessions(context.Background(), store.Filter{})
	if err != nil || len(ss) != 1 {
		t.Fatalf("sessions %v %v", ss, err)
	}
	var exit *event.Event
	h.st.Events(context.Background(), ss[0].ID, 0, func(e *event.Event) error {
		if e.Type == event.ExecExit {
			c := *e
			exit = &c
		}
		return nil
	})
	if exit == nil {
		t.Fatalf("kubectl got the exit Status %q before exec.exit was recorded", status)
	}
}

// A watch whose stream is not JSON, whose events the gateway cannot record, is not forwarded.
func TestWatchNotJSONRefused(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.do(t, "GET", "k/api/v1/namespaces/a/secrets?watch=true", "alice:alt_good", "")
	if resp.StatusCode != http.StatusNotAcceptable || !strings.Contains(body, `"kind":"Status"`) || strings.Contains(body, "bGVha2Vk") {
		t.Errorf("HTTP %d %q, want a Status 406 without the stream", resp.StatusCode, body)
	}
	var refusal bool
	for _, e := range h.events(t) {
		refusal = refusal || e.Type == event.KubeResponse && strings.Contains(string(e.Data), `"source":"gateway"`) && strings.Contains(string(e.Data), `"status":406`)
	}
	if !refusal {
		t.Errorf("the refusal is not recorded")
	}
}

// TestExpiredCredentialNotCached: a connection's cache of checked credentials does not outlive
// the credential: a token that expired is refused on the connection that used it a moment
// before (it was accepted for up to authCacheTTL past its expiry).
func TestExpiredCredentialNotCached(t *testing.T) {
	h := newHarness(t, []config.Policy{{Name: "all", Subjects: []string{"*"}, Targets: []string{"*"}, Access: "allow"}})
	exp := time.Now().Add(time.Second)
	briefExpiry.Store(&exp)
	t.Cleanup(func() { briefExpiry.Store(nil) })
	if resp, body := h.do(t, "GET", "k/api/v1/namespaces/a/secrets/s", "alice:alt_brief", ""); resp.StatusCode != 200 {
		t.Fatalf("before the expiry: %d %s", resp.StatusCode, body)
	}
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	resp, body := h.do(t, "GET", "k/api/v1/namespaces/a/secrets/s", "alice:alt_brief", "")
	if resp.StatusCode != 401 {
		t.Fatalf("after the expiry, on the same connection: %d %s, want 401", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("client spoke %s: the requests may not have shared a connection", resp.Proto)
	}
}
