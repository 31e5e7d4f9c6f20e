package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// BenchmarkSSH measures the SSH engine against the goals of issue 6, direct and through the
// gateway in the same run (recording on, strict, default settings). It is a benchmark, not a
// test: it asserts nothing, it prints figures (docs/benchmarks.md has them).
//
//	go test ./test/e2e -run '^$' -bench BenchmarkSSH -benchtime 1x -timeout 30m
//
// AIRLOCK_BENCH_SSH_BYTES (default 1 GiB) is the size moved by ssh cat and scp;
// AIRLOCK_BENCH_SSH_SESSIONS (default 1000) the idle sessions held open.
//
//   - throughput: `ssh HOST cat FILE > /dev/null` and `scp FILE HOST:/dev/null` with the stock
//     clients, direct to sshd vs through the gateway, alternating, best of 3 each; goal gateway >= 0.8x.
//   - keystroke echo: a pty running cat; one byte written, its echo (the terminal's) read back,
//     500 times; direct, through the gateway, and through the gateway to a target with masking
//     (credit_card, email) typing digits and letters; goal: <= 1 ms added.
//   - memory: N idle interactive sessions (pty + shell) held open through the gateway to an
//     in-process SSH server (so that the machine does not run N sshd processes); the gateway's
//     RSS and Go heap in use before and after, per session; goal < 200 KB.
func BenchmarkSSH(b *testing.B) {
	requireSSHTools(b, "scp")
	size := envInt("AIRLOCK_BENCH_SSH_BYTES", 1<<30)
	sessions := envInt("AIRLOCK_BENCH_SSH_SESSIONS", 1000)
	st := startSSHTarget(b)
	idle := startIdleSSHServer(b)
	users := defaultUsers()
	users[0].SSHKeys = []string{st.AlicePub}
	g := startGateway(b, gwConfig{Listeners: []string{"ssh"}, Users: users,
		Targets: []targetCfg{defaultTargets()[0], st.Target("web-1"), st.Target("web-2"),
			st.targetAt("web-idle", idle.addr, idle.hostPub)},
		Extra: `policies:
  - name: ssh-alice
    subjects: ["user:alice"]
    targets: ["web-*"]
    access: allow
  - name: web-2-mask
    subjects: ["*"]
    targets: ["web-2"]
    masking: [credit_card, email]
  - name: pg
    subjects: ["*"]
    targets: ["pg"]
    access: allow
`})
	c := newSSHClient(b, g)
	load := func() string {
		s, _ := os.ReadFile("/proc/loadavg")
		return strings.Join(strings.Fields(string(s))[:3], " ")
	}
	report := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		fmt.Println(line)
		b.Log(line)
	}
	report("BenchmarkSSH: load average %s, %d CPUs, %d bytes per transfer, %d idle sessions", load(), nprocs(), size, sessions)

	// The file: random (nothing compresses it), in the page cache after the first read.
	file := filepath.Join(b.TempDir(), "big.bin")
	writeRandomFile(b, file, size)
	kh := filepath.Join(b.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", st.Port, st.HostPub)), 0o600)
	direct := []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + kh, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes", "-i", st.GatewayKy,
		"-o", "BatchMode=yes", "-o", "User=" + st.Login}
	via := c.opts("alice:web-1", st.AliceKey)
	gwPort, dPort := fmt.Sprint(c.port), fmt.Sprint(st.Port)

	// 1. ssh HOST cat FILE.
	catRun := func(opts []string, port string) time.Duration {
		start := time.Now()
		n, err := runDiscard(c.env(), "ssh", append(opts, "-p", port, "127.0.0.1", "cat "+file)...)
		d := time.Since(start)
		if err != nil || n != int64(size) {
			b.Fatalf("ssh cat: %d bytes, %v", n, err)
		}
		return d
	}
	mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / (1 << 20) }
	// Direct and gateway alternate, 3 times, and the best of each counts: the machine's load
	// drifts during a run.
	pairs := func(fd, fg func() time.Duration) (d, g time.Duration) {
		d, g = time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
		for range 3 {
			d, g = min(d, fd()), min(g, fg())
		}
		return d, g
	}
	dCat, gCat := pairs(func() time.Duration { return catRun(direct, dPort) }, func() time.Duration { return catRun(via, gwPort) })
	report("ssh cat %d MiB: direct %.0f MiB/s, gateway %.0f MiB/s, ratio %.2f (goal >= 0.80)", size>>20, mbps(dCat), mbps(gCat), dCat.Seconds()/gCat.Seconds())
	b.ReportMetric(dCat.Seconds()/gCat.Seconds(), "cat-ratio")

	// 2. scp FILE HOST:/dev/null (scp's default sftp mode).
	scpRun := func(opts []string, port string) time.Duration {
		start := time.Now()
		r := run(10*time.Minute, c.env(), nil, "scp", append(opts, "-P", port, file, "127.0.0.1:/dev/null")...)
		if r.Code != 0 {
			b.Fatalf("scp: %s", r)
		}
		return time.Since(start)
	}
	dSCP, gSCP := pairs(func() time.Duration { return scpRun(direct, dPort) }, func() time.Duration { return scpRun(via, gwPort) })
	report("scp %d MiB: direct %.0f MiB/s, gateway %.0f MiB/s, ratio %.2f (goal >= 0.80)", size>>20, mbps(dSCP), mbps(gSCP), dSCP.Seconds()/gSCP.Seconds())
	b.ReportMetric(dSCP.Seconds()/gSCP.Seconds(), "scp-ratio")

	// 3. Keystroke echo.
	gwKey := readSigner(b, st.GatewayKy)
	aliceKey := readSigner(b, st.AliceKey)
	gwHost := readGatewayHostKey(b, g)
	dial := func(addr, user string, key ssh.Signer, host ssh.PublicKey) *ssh.Client {
		cl, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
			HostKeyCallback: ssh.FixedHostKey(host), Timeout: 30 * time.Second})
		if err != nil {
			b.Fatalf("dial %s as %s: %v", addr, user, err)
		}
		return cl
	}
	targetHost, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(st.HostPub))
	echo := func(cl *ssh.Client, keys string) []time.Duration {
		defer cl.Close()
		return echoLatencies(b, cl, keys, 500)
	}
	dEcho := echo(dial(st.Addr(), st.Login, gwKey, targetHost), "a")
	gEcho := echo(dial(fmt.Sprintf("127.0.0.1:%d", c.port), "alice:web-1", aliceKey, gwHost), "a")
	mEcho := echo(dial(fmt.Sprintf("127.0.0.1:%d", c.port), "alice:web-2", aliceKey, gwHost), "4a")
	dm, gm, mm := pct(dEcho, 50), pct(gEcho, 50), pct(mEcho, 50)
	report("keystroke echo (median of 500): direct %s, gateway %s (+%s), gateway with masking, digits and letters %s (+%s) (goal: <= 1ms added)",
		dm, gm, gm-dm, mm, mm-dm)
	report("keystroke echo (p90): direct %s, gateway %s, gateway with masking %s", pct(dEcho, 90), pct(gEcho, 90), pct(mEcho, 90))
	b.ReportMetric(float64((gm - dm).Microseconds()), "echo-added-us")

	// 4. Memory per idle session.
	time.Sleep(2 * time.Second) // let the transfers' buffers go
	rss0, heap0 := gatewayMemory(b, g)
	var clients []*ssh.Client
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				cl := dial(fmt.Sprintf("127.0.0.1:%d", c.port), "alice:web-idle", aliceKey, gwHost)
				s, err := cl.NewSession()
				if err == nil {
					err = s.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 1})
				}
				if err == nil {
					err = s.Shell()
				}
				if err != nil {
					b.Errorf("idle session: %v", err)
					cl.Close()
					continue
				}
				mu.Lock()
				clients = append(clients, cl)
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := range sessions {
		work <- i
	}
	close(work)
	wg.Wait()
	opened := time.Since(start)
	time.Sleep(3 * time.Second)
	rss1, heap1 := gatewayMemory(b, g)
	n := int64(len(clients))
	report("%d idle sessions opened in %s: gateway RSS %d -> %d MiB (%d KiB per session), Go heap in use %d -> %d MiB (%d KiB per session) (goal < 200 KB)",
		n, opened.Round(time.Millisecond), rss0>>20, rss1>>20, (rss1-rss0)/n>>10, heap0>>20, heap1>>20, (heap1-heap0)/n>>10)
	b.ReportMetric(float64(rss1-rss0)/float64(n)/1024, "rss-KiB/session")
	b.ReportMetric(float64(heap1-heap0)/float64(n)/1024, "heap-KiB/session")
	for _, cl := range clients {
		cl.Close()
	}
	report("load average at the end: %s", load())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func nprocs() int {
	out, _ := exec.Command("nproc").Output()
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

func writeRandomFile(tb testing.TB, path string, size int) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 1<<20)
	r := mrand.NewChaCha8([32]byte{1})
	for left := size; left > 0; left -= len(block) {
		r.Read(block)
		if _, err := f.Write(block[:min(left, len(block))]); err != nil {
			tb.Fatal(err)
		}
	}
}

// runDiscard runs a command and counts its stdout instead of keeping it.
func runDiscard(env []string, name string, args ...string) (int64, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n, _ := io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return n, fmt.Errorf("%w: %s", err, errb.String())
	}
	return n, nil
}

func readSigner(tb testing.TB, path string) ssh.Signer {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func readGatewayHostKey(tb testing.TB, g *gateway) ssh.PublicKey {
	tb.Helper()
	s := readSigner(tb, filepath.Join(g.DataDir, "ssh", "ssh_host_ed25519_key"))
	return s.PublicKey()
}

// echoLatencies runs cat on a pty and times n keystrokes (cycling through keys), each from
// the write to the read of its echo.
func echoLatencies(tb testing.TB, cl *ssh.Client, keys string, n int) []time.Duration {
	tb.Helper()
	s, err := cl.NewSession()
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 1, ssh.ICANON: 1}); err != nil {
		tb.Fatal(err)
	}
	if err := s.Start("cat"); err != nil {
		tb.Fatal(err)
	}
	rd := bufio.NewReader(out)
	// A line first, so that cat is up: its echo, then cat's copy of it.
	io.WriteString(in, "ready\n")
	for seen := 0; seen < 2; {
		line, err := rd.ReadString('\n')
		if err != nil {
			tb.Fatalf("echo: %v", err)
		}
		if strings.Contains(line, "ready") {
			seen++
		}
	}
	var ds []time.Duration
	for i := range n {
		k := keys[i%len(keys)]
		start := time.Now()
		in.Write([]byte{k})
		c, err := rd.ReadByte()
		if err != nil || c != k {
			tb.Fatalf("echo of %q: %q, %v", k, c, err)
		}
		ds = append(ds, time.Since(start))
		if i%100 == 99 { // end the line: cat prints it, read it all
			io.WriteString(in, "\n")
			for seen := 0; seen < 2; {
				line, err := rd.ReadString('\n')
				if err != nil {
					tb.Fatalf("echo: %v", err)
				}
				if len(strings.TrimSpace(line)) > 0 || seen == 0 {
					seen++
				}
			}
		}
	}
	return ds
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(time.Microsecond)
}

// gatewayMemory is the gateway process's RSS (from /proc) and Go heap in use (its /metrics).
func gatewayMemory(tb testing.TB, g *gateway) (rss, heap int64) {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb << 10
		}
	}
	res, err := http.Get(g.apiURL() + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			heap = int64(f)
		}
	}
	return rss, heap
}

// idleSSHServer is an in-process SSH server that accepts any key and holds sessions open,
// saying nothing: the target of the idle sessions.
type idleSSHServer struct {
	addr, hostPub string
}

func startIdleSSHServer(tb testing.TB) *idleSSHServer {
	tb.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(func() { cancel(); l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					nc.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					c, creqs, err := ch.Accept()
					if err != nil {
						continue
					}
					go func() {
						for r := range creqs {
							r.Reply(true, nil)
						}
					}()
					go func() { <-ctx.Done(); c.Close() }()
				}
			}()
		}
	}()
	return &idleSSHServer{addr: l.Addr().String(), hostPub: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))}
}
