package e2e

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkKubernetes measures what the gateway costs kubectl, direct and through the gateway
// in the same run: the latency of `kubectl get pods` (the whole command; one API request on a
// kept-alive connection and on a new connection; the credential plugin alone) and the
// throughput of a 100 MB `kubectl exec ... cat`. It logs its figures (nothing is asserted on
// time):
//
//	go test ./test/e2e -run '^$' -bench BenchmarkKubernetes -benchtime 1x
//
// With AIRLOCK_BENCH_CPUPROFILE=FILE it also writes a CPU profile of the gateway over the first
// 10 seconds of the exec cats to FILE (go tool pprof FILE; the direct cats add nothing to it).
func BenchmarkKubernetes(b *testing.B) {
	t := b
	requireBinary(t)
	c := startKubeCluster(t)
	profile := os.Getenv("AIRLOCK_BENCH_CPUPROFILE")
	var listeners []string
	if profile != "" {
		listeners = append(listeners, "debug")
	}
	kg := startKubeGateway(t, c, "", listeners...)
	t.Logf("load average before: %s", loadavg())

	directEnv := append(cleanEnv(), "KUBECONFIG="+c.Kubeconfig, "HOME="+t.TempDir())
	gwEnv := kg.kubeEnv(t, "alice", alicePassword)
	kubectl := func(env []string, args ...string) time.Duration {
		began := time.Now()
		r := run(5*time.Minute, env, nil, c.kubectl, args...)
		if r.Code != 0 {
			t.Fatalf("kubectl %v: %s", args, r)
		}
		return time.Since(began)
	}

	// 1. kubectl get pods, the whole command (process start, credential plugin, discovery
	// from the cache, the request), alternating direct and gateway.
	kubectl(directEnv, "get", "pods") // warm the discovery caches
	kubectl(gwEnv, "get", "pods")
	const runs = 20
	var dCmd, gCmd []time.Duration
	for range runs {
		dCmd = append(dCmd, kubectl(directEnv, "get", "pods"))
		gCmd = append(gCmd, kubectl(gwEnv, "get", "pods"))
	}

	// 2. One API request (GET pods) on a kept-alive HTTP/2 connection, as kubectl makes them.
	direct := apiClient(t, c.CAFile)
	gw := apiClient(t, filepath.Join(kg.DataDir, "tls", "cert.pem"))
	adminTok := kubeconfigToken(t, c.Kubeconfig)
	aliceTok := "alice:" + kg.token(t, "alice", alicePassword)
	gwURL := fmt.Sprintf("https://127.0.0.1:%d/k8s/kind-1", kg.Port("kubernetes"))
	get := func(cl *http.Client, base, tok string) time.Duration {
		req, _ := http.NewRequest("GET", base+"/api/v1/namespaces/default/pods", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
		began := time.Now()
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET pods: HTTP %d", resp.StatusCode)
		}
		return time.Since(began)
	}
	for range 20 { // warm up both
		get(direct, c.URL, adminTok)
		get(gw, gwURL, aliceTok)
	}
	const reqs = 500
	var dReq, gReq []time.Duration
	for range reqs {
		dReq = append(dReq, get(direct, c.URL, adminTok))
		gReq = append(gReq, get(gw, gwURL, aliceTok))
	}
	// The same request on a new connection each time (TLS handshake, and through the gateway
	// a new session), as each kubectl command makes it: what the gateway adds to a command
	// besides the credential plugin.
	directNew, gwNew := newConnClient(direct), newConnClient(gw)
	const fresh = 50
	var dNew, gNew []time.Duration
	for range fresh {
		dNew = append(dNew, get(directNew, c.URL, adminTok))
		gNew = append(gNew, get(gwNew, gwURL, aliceTok))
	}
	// The credential plugin alone, as kubectl runs it for each command.
	var plugin []time.Duration
	for range 20 {
		began := time.Now()
		if r := run(time.Minute, append(gwEnv, `KUBERNETES_EXEC_INFO={"apiVersion":"client.authentication.k8s.io/v1"}`), nil, airlockBin, "kube-credential", "--target", "kind-1"); r.Code != 0 {
			t.Fatalf("airlock kube-credential: %s", r)
		}
		plugin = append(plugin, time.Since(began))
	}

	// 3. 100 MB through kubectl exec ... cat, best of 3 each.
	const size = 100 << 20
	big := filepath.Join(c.ExecDir, "big.bin")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	data = nil
	cat := func(env []string) time.Duration {
		cmd := exec.Command(c.kubectl, "exec", kubePod, "--", "cat", "big.bin")
		cmd.Env = env
		cw := &countWriter{}
		cmd.Stdout = cw
		var stderr strings.Builder
		cmd.Stderr = &stderr
		began := time.Now()
		if err := cmd.Run(); err != nil || cw.n != size {
			t.Fatalf("kubectl exec cat: %v, %d bytes, %s", err, cw.n, stderr.String())
		}
		return time.Since(began)
	}
	var dCat, gCat []time.Duration
	var gwCPU time.Duration // the gateway process's CPU time (user + system) during its cats
	// A CPU profile of the gateway over the first 10 seconds of the cats.
	if profile != "" {
		profiled := make(chan error, 1)
		defer func() { t.Logf("gateway CPU profile %s: %v", profile, <-profiled) }()
		go func() { profiled <- cpuProfile(fmt.Sprintf("127.0.0.1:%d", kg.Port("debug")), profile, 10) }()
	}
	var dIdle, gIdle cpuIdle // the machine's idle CPU during the direct and the gateway cats
	for range 3 {
		i := readCPUIdle()
		dCat = append(dCat, cat(directEnv))
		dIdle.add(i, readCPUIdle())
		before, i := procCPU(t, kg.cmd.Process.Pid), readCPUIdle()
		gCat = append(gCat, cat(gwEnv))
		gIdle.add(i, readCPUIdle())
		gwCPU += procCPU(t, kg.cmd.Process.Pid) - before
	}
	t.Logf("load average after: %s", loadavg())

	dc, gc := median(dCmd), median(gCmd)
	t.Logf("kubectl get pods (whole command, median of %d): direct %s, gateway %s, added %s, ratio %.2f",
		runs, ms(dc), ms(gc), ms(gc-dc), float64(gc)/float64(dc))
	dm, gm := mean(dReq), mean(gReq)
	t.Logf("GET pods on a kept-alive connection (mean of %d): direct %s, gateway %s, added %s; medians %s / %s",
		reqs, ms(dm), ms(gm), ms(gm-dm), ms(median(dReq)), ms(median(gReq)))
	t.Logf("GET pods on a new connection each (median of %d): direct %s, gateway %s, added %s; airlock kube-credential alone (median of 20): %s",
		fresh, ms(median(dNew)), ms(median(gNew)), ms(median(gNew)-median(dNew)), ms(median(plugin)))
	db, gb := best(dCat), best(gCat)
	dRate, gRate := float64(size)/db.Seconds()/(1<<20), float64(size)/gb.Seconds()/(1<<20)
	t.Logf("kubectl exec cat 100 MiB (best of 3): direct %s (%.1f MiB/s), gateway %s (%.1f MiB/s), throughput ratio %.2f",
		db.Round(time.Millisecond), dRate, gb.Round(time.Millisecond), gRate, gRate/dRate)
	t.Logf("gateway CPU (user + system) per 100 MiB of kubectl exec cat: %s; the machine's CPU idle during the cats: direct %.0f%%, gateway %.0f%%",
		(gwCPU / 3).Round(time.Millisecond), dIdle.percent(), gIdle.percent())
}

// cpuIdle sums the machine's idle and total CPU time over intervals (/proc/stat, all CPUs).
type cpuIdle struct{ idle, total int64 }

func readCPUIdle() cpuIdle {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	var c cpuIdle
	for i, f := range strings.Fields(line)[1:] {
		var v int64
		fmt.Sscan(f, &v)
		if i == 3 || i == 4 { // idle, iowait
			c.idle += v
		}
		if i < 8 { // user nice system idle iowait irq softirq steal; guest is in user already
			c.total += v
		}
	}
	return c
}

func (c *cpuIdle) add(from, to cpuIdle) {
	c.idle += to.idle - from.idle
	c.total += to.total - from.total
}

func (c cpuIdle) percent() float64 {
	if c.total == 0 {
		return 0
	}
	return 100 * float64(c.idle) / float64(c.total)
}

// cpuProfile writes a CPU profile of the gateway whose debug listener is at addr, over the
// next seconds, to file.
func cpuProfile(addr, file string, seconds int) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("profile: HTTP %d, %v", resp.StatusCode, err)
	}
	return os.WriteFile(file, b, 0o644)
}

// procCPU is the CPU time (user + system) process pid has used, from /proc/PID/stat.
func procCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (which is in parentheses and may hold spaces): state is the
	// first, utime the 12th, stime the 13th; in clock ticks of 1/100 s.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func apiClient(t testing.TB, caFile string) *http.Client {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
}

// newConnClient is cl without keep-alive: every request on a new TLS connection.
func newConnClient(cl *http.Client) *http.Client {
	tr := cl.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return &http.Client{Timeout: cl.Timeout, Transport: tr}
}

func kubeconfigToken(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), "token: ")
	tok, _, _ := strings.Cut(rest, "}")
	return strings.Trim(strings.TrimSpace(tok), `"`)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func best(ds []time.Duration) time.Duration {
	b := ds[0]
	for _, d := range ds {
		b = min(b, d)
	}
	return b
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
