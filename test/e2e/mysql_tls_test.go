package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTLSMariaDB starts a MariaDB of its own (the machine's has TLS disabled) on a free loopback
// port with a serving certificate from a test CA, and returns its address and the CA file.
func startTLSMariaDB(t *testing.T) (addr, caFile string) {
	t.Helper()
	install, server := requireTool(t, "mariadb-install-db"), "/usr/sbin/mariadbd"
	if _, err := os.Stat(server); err != nil {
		missing(t, "mariadbd not found: %v", err)
	}
	dir := t.TempDir()
	ca, caKey := newCA(t, "airlock e2e mariadb CA")
	caFile = filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", ca.Raw, 0o644)
	cert, key := newLeaf(t, ca, caKey, "mariadb", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", cert, 0o644)
	writePEM(t, filepath.Join(dir, "key.pem"), "EC PRIVATE KEY", key, 0o600)
	if r := run(2*time.Minute, cleanEnv(), nil, install, "--no-defaults", "--datadir="+filepath.Join(dir, "data"), "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db"); r.Code != 0 {
		t.Fatalf("mariadb-install-db: %s", r)
	}
	port := freePort(t)
	cmd := exec.Command(server, "--no-defaults", "--datadir="+filepath.Join(dir, "data"), fmt.Sprintf("--port=%d", port),
		"--socket="+filepath.Join(dir, "sock"), "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
		"--pid-file="+filepath.Join(dir, "pid"), "--ssl-cert="+filepath.Join(dir, "cert.pem"), "--ssl-key="+filepath.Join(dir, "key.pem"))
	logf, _ := os.Create(filepath.Join(dir, "server.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	db, err := sql.Open("mysql", "root@tcp("+addr+")/?tls=skip-verify")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Fatalf("the TLS MariaDB did not start: %v\n%s", err, clip(string(b), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, q := range []string{"create database test",
		"create user 'tlsuser'@'%' identified by 'tls-pw' require ssl", "grant select on test.* to 'tlsuser'@'%'"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return addr, caFile
}

// TestMySQLUpstreamTLS: the gateway speaks TLS to a MariaDB target (tls: verify-full with the
// target's CA; the server sees an encrypted session for a user that REQUIRE SSL), refuses a
// certificate that does not chain to ca_file, and refuses tls: require against a target without
// TLS, each with a clear error for the client.
func TestMySQLUpstreamTLS(t *testing.T) {
	requireMySQL(t)
	addr, caFile := startTLSMariaDB(t)
	otherCA, _ := newCA(t, "not the target's CA")
	wrongCA := filepath.Join(t.TempDir(), "wrong-ca.pem")
	writePEM(t, wrongCA, "CERTIFICATE", otherCA.Raw, 0o644)
	raw := func(ca, mode string) string {
		return fmt.Sprintf("    database: test\n    username: tlsuser\n    password: tls-pw\n    tls: %s\n    ca_file: %s\n", mode, yq(ca))
	}
	g := startMySQLGateway(t, gwConfig{Targets: []targetCfg{
		{Name: "mytls", Type: "mysql", Address: addr, Raw: raw(caFile, "verify-full")},
		{Name: "mywrongca", Type: "mysql", Address: addr, Raw: raw(wrongCA, "verify-full")},
		{Name: "myplain", Type: "mysql", Address: myAddr, Raw: "    database: test\n    username: root\n    password: \"\"\n    tls: require\n"},
	}})
	r := g.mariadb(t, "alice", alicePassword, "mytls", "-e", "select variable_value from information_schema.session_status where variable_name = 'Ssl_version'")
	if r.Code != 0 || !strings.Contains(r.Stdout, "TLSv1.") {
		t.Fatalf("through the gateway to the TLS target: %s", r)
	}
	r = g.mariadb(t, "alice", alicePassword, "mywrongca", "-e", "select 1")
	if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "certificate") {
		t.Fatalf("a target certificate that does not chain to ca_file: %s", r)
	}
	t.Logf("wrong CA: %s", strings.TrimSpace(r.Stderr))
	r = g.mariadb(t, "alice", alicePassword, "myplain", "-e", "select 1")
	if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "tls") {
		t.Fatalf("tls: require against a target without TLS: %s", r)
	}
	t.Logf("no TLS at the target: %s", strings.TrimSpace(r.Stderr))
}
