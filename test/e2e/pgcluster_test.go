package e2e

// A private PostgreSQL cluster started by a test: its own data directory, a free loopback port,
// password authentication (SCRAM-SHA-256 and MD5, unlike the trust-auth server on :5432) and
// TLS with a server certificate signed by a CA the test generates. Used by the upstream
// authentication tests, which need what the shared server does not offer.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgCluster is a running private cluster. Its files live in Dir, owned by the server's OS user.
type pgCluster struct {
	Dir           string // root: data/, certificates, server log, socket
	Port          int
	CAFile        string // CA that signed the server certificate
	OtherCAFile   string // an unrelated CA: verify-full against it must fail
	SuperPassword string // password of the superuser "postgres"

	bin     string // directory of initdb, pg_ctl
	cred    *syscall.Credential
	dataDir string
	logFile string
}

// randSecret returns a random string that can only appear where it was put.
func randSecret(prefix string) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// pgServerBin finds the directory holding initdb and pg_ctl: the newest
// /usr/lib/postgresql/*/bin, else pg_config --bindir, else PATH.
func pgServerBin() string {
	has := func(dir string) bool {
		for _, n := range []string{"initdb", "pg_ctl", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, n)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { // numeric version order: 9.6 < 15 < 17
		vi, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dirs[i])), 64)
		vj, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dirs[j])), 64)
		return vi > vj
	})
	for _, d := range dirs {
		if has(d) {
			return d
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); has(d) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	return ""
}

// startPGCluster initdbs and starts a cluster; cleanup stops it (immediate) and removes it.
// The server runs as the OS user "postgres" when the test runs as root (initdb refuses root),
// as the test's own user otherwise. Missing server binaries skip the test, or fail it in CI.
func startPGCluster(t testing.TB) *pgCluster {
	t.Helper()
	bin := pgServerBin()
	if bin == "" {
		missing(t, "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin, pg_config --bindir or PATH")
	}
	var cred *syscall.Credential
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			missing(t, "running as root and there is no OS user postgres to run the test cluster as: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are 0700 root, which the server user cannot traverse.
	dir, err := os.MkdirTemp("", "airlock-e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c := &pgCluster{
		Dir: dir, Port: freePort(t), SuperPassword: randSecret("e2e-pgsuper-"),
		bin: bin, cred: cred,
		dataDir: filepath.Join(dir, "data"), logFile: filepath.Join(dir, "server.log"),
		CAFile: filepath.Join(dir, "ca.crt"), OtherCAFile: filepath.Join(dir, "other-ca.crt"),
	}
	started := false
	t.Cleanup(func() {
		if started {
			if r := c.run(30*time.Second, "pg_ctl", "-D", c.dataDir, "-m", "immediate", "-w", "stop"); r.Code != 0 {
				t.Errorf("stopping the test cluster: %s", r)
			}
		}
		if t.Failed() {
			c.dumpLog(t)
		}
		os.RemoveAll(dir)
	})

	c.writeCerts(t)
	pwfile := filepath.Join(dir, "superuser.pw")
	if err := os.WriteFile(pwfile, []byte(c.SuperPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, dir, uid, gid)

	t0 := time.Now()
	if r := c.run(time.Minute, "initdb", "-D", c.dataDir, "-U", "postgres", "--pwfile", pwfile,
		"--auth=scram-sha-256", "--locale=C", "-E", "UTF8", "--no-sync", "--no-instructions"); r.Code != 0 {
		t.Fatalf("initdb: %s", r)
	}
	os.Remove(pwfile)
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
log_connections = on
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 40
shared_buffers = 16MB
`, c.Port, dir, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	appendFile(t, filepath.Join(c.dataDir, "postgresql.conf"), conf)
	// Order matters: the first matching line decides. scram_user only over TLS, md5_user by MD5
	// (with or without TLS), everyone else (the superuser) by SCRAM.
	hba := `# written by the airlock e2e test
local   all  all                     scram-sha-256
hostssl all  scram_user 127.0.0.1/32 scram-sha-256
host    all  md5_user   127.0.0.1/32 md5
host    all  all        127.0.0.1/32 scram-sha-256
`
	if err := os.WriteFile(filepath.Join(c.dataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, c.dataDir, uid, gid)
	r := c.run(time.Minute, "pg_ctl", "-D", c.dataDir, "-l", c.logFile, "-w", "-t", "30", "start")
	started = true // even on a failed -w wait the postmaster may be up
	if r.Code != 0 {
		t.Fatalf("pg_ctl start: %s", r)
	}
	t.Logf("test cluster (%s) on 127.0.0.1:%d in %s, ready in %v", bin, c.Port, dir, time.Since(t0).Round(time.Millisecond))
	return c
}

// superConn connects as the superuser over TLS with SCRAM.
func (c *pgCluster) superConn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=%s sslmode=verify-full sslrootcert=%s",
		c.Port, c.SuperPassword, db, quoteDSN(c.CAFile)))
	if err != nil {
		t.Fatalf("connect to the test cluster as its superuser: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// run runs a server program as the cluster's OS user.
func (c *pgCluster) run(timeout time.Duration, prog string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.Dir // a cwd the server user can read
	cmd.Env = append(cleanEnv(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	cmd.WaitDelay = 5 * time.Second // pg_ctl start leaves the postmaster behind; never wait on it
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cmdResult{Stdout: out.String(), Stderr: errb.String(), Err: err}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		r.Code = -1
	}
	if ctx.Err() != nil {
		r.Code = -1
		r.Err = fmt.Errorf("%s timed out after %v: %w", prog, timeout, err)
	}
	return r
}

func (c *pgCluster) serverLog() string {
	b, _ := os.ReadFile(c.logFile)
	return string(b)
}

func (c *pgCluster) dumpLog(t testing.TB) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(c.serverLog(), "\n"), "\n")
	if len(lines) > 100 {
		lines = lines[len(lines)-100:]
	}
	t.Logf("test cluster log (%s, last %d lines):\n%s", c.logFile, len(lines), strings.Join(lines, "\n"))
}

// writeCerts writes ca.crt, server.crt/server.key (signed by ca, for 127.0.0.1 and localhost)
// and other-ca.crt (a CA that signed nothing here).
func (c *pgCluster) writeCerts(t testing.TB) {
	t.Helper()
	caCert, caKey := newCA(t, "airlock e2e test CA")
	otherCert, _ := newCA(t, "airlock e2e unrelated CA")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(c.Dir, "server.crt"), "CERTIFICATE", der, 0o644)
	writePEM(t, filepath.Join(c.Dir, "server.key"), "PRIVATE KEY", keyDER, 0o600)
	writePEM(t, c.CAFile, "CERTIFICATE", caCert.Raw, 0o644)
	writePEM(t, c.OtherCAFile, "CERTIFICATE", otherCert.Raw, 0o644)
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// chownTree gives dir and everything under it to uid:gid (a no-op when they are already ours).
func chownTree(t testing.TB, dir string, uid, gid int) {
	t.Helper()
	if uid == os.Getuid() && gid == os.Getgid() {
		return
	}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
