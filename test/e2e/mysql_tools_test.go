package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMySQLDump dumps a database through the gateway with the stock mariadb-dump (which connects
// before naming a database, so the target rides in the user name: alice/my), compares it with a
// direct dump, and restores it through the gateway.
func TestMySQLDump(t *testing.T) {
	dump := requireTool(t, "mariadb-dump")
	direct := requireMySQL(t)
	g := startMySQLGateway(t, gwConfig{})
	db := fmt.Sprintf("airlock_dump_%d", time.Now().UnixNano()%1e12)
	mustMy(t, direct, "create database "+db)
	t.Cleanup(func() {
		direct.Exec("drop database if exists " + db)
		direct.Exec("drop database if exists " + db + "_r")
	})
	mustMy(t, direct, fmt.Sprintf(`create table %[1]s.a (id int primary key, s varchar(20), d datetime(6), b blob, j json, n decimal(12,3))`, db))
	mustMy(t, direct, fmt.Sprintf(`insert into %[1]s.a values (1, 'x''y\\z', '2020-01-02 03:04:05.678901', 0x00ff10, '{"k": [1, 2]}', -12.5),
		(2, NULL, NULL, NULL, NULL, NULL)`, db))
	var big strings.Builder
	for i := 3; i < 2000; i++ {
		fmt.Fprintf(&big, "(%d, 'row %d', now(), repeat('b', %d), null, %d.25),", i, i, i%300, i)
	}
	mustMy(t, direct, fmt.Sprintf("insert into %s.a values %s", db, strings.TrimSuffix(big.String(), ",")))
	mustMy(t, direct, fmt.Sprintf("create view %[1]s.v as select id, s from %[1]s.a", db))
	mustMy(t, direct, fmt.Sprintf("create procedure %[1]s.p() select count(*) from %[1]s.a", db))

	args := []string{"--routines", "--triggers", "--skip-dump-date", db}
	viaGW := run(2*time.Minute, cleanEnv(), nil, dump, append([]string{"--no-defaults", "--ssl", "-h", "127.0.0.1", "-P", fmt.Sprint(g.Port("mysql")),
		"-u", "alice/my", "-p" + alicePassword}, args...)...)
	if viaGW.Code != 0 {
		t.Fatalf("mariadb-dump through the gateway: %s", viaGW)
	}
	straight := run(2*time.Minute, cleanEnv(), nil, dump, append([]string{"--no-defaults", "-h", "127.0.0.1", "-P", "3306", "-u", "root"}, args...)...)
	if straight.Code != 0 {
		t.Fatalf("direct mariadb-dump: %s", straight)
	}
	version := regexp.MustCompile(`(?m)^-- Server version.*$`)
	a, b := version.ReplaceAllString(straight.Stdout, ""), version.ReplaceAllString(viaGW.Stdout, "")
	if a != b {
		t.Errorf("dump through the gateway differs from the direct dump (%d vs %d bytes)", len(b), len(a))
	}
	if !strings.Contains(b, "CREATE TABLE `a`") || !strings.Contains(b, "INSERT INTO `a` VALUES") || !strings.Contains(b, "PROCEDURE `p`") {
		t.Errorf("dump lacks the table, its rows or the procedure:\n%s", clip(b, 3000))
	}

	// Restore it into a new database through the gateway, with the stock client.
	mustMy(t, direct, "create database "+db+"_r")
	r := run(2*time.Minute, cleanEnv(), strings.NewReader(viaGW.Stdout), requireTool(t, "mariadb"), "--no-defaults", "--ssl",
		"-h", "127.0.0.1", "-P", fmt.Sprint(g.Port("mysql")), "-u", "alice", "-p"+alicePassword, "-D", "my/"+db+"_r")
	if r.Code != 0 {
		t.Fatalf("restore through the gateway: %s", r)
	}
	var c1, c2 string
	direct.QueryRow(fmt.Sprintf("checksum table %s.a", db)).Scan(new(string), &c1)
	direct.QueryRow(fmt.Sprintf("checksum table %s_r.a", db)).Scan(new(string), &c2)
	if c1 == "" || c1 != c2 {
		t.Errorf("restored table checksum %q, original %q", c2, c1)
	}
	_, ev := g.mySession(t, "SHOW CREATE TABLE `a`")
	if n := len(rowsOf(ev)); n < 10 {
		t.Errorf("the dump's session recorded %d rows", n)
	}
}

// TestMySQLSysbench runs sysbench oltp_read_write (prepared statements, transactions) through
// the gateway; the deadlocks its default --mysql-ignore-errors retries are the server's own. sysbench's --mysql-ssl loads client-key.pem, client-cert.pem and cacert.pem from
// its working directory, so the test makes them.
func TestMySQLSysbench(t *testing.T) {
	sb := requireTool(t, "sysbench")
	direct := requireMySQL(t)
	g := startMySQLGateway(t, gwConfig{})
	db := fmt.Sprintf("airlock_sb_%d", time.Now().UnixNano()%1e12)
	mustMy(t, direct, "create database "+db)
	t.Cleanup(func() { direct.Exec("drop database if exists " + db) })
	dir := sysbenchTLSDir(t, g)
	common := []string{"--mysql-host=127.0.0.1", fmt.Sprintf("--mysql-port=%d", g.Port("mysql")), "--mysql-user=alice",
		"--mysql-password=" + alicePassword, "--mysql-db=my/" + db, "--mysql-ssl=on", "--tables=2", "--table-size=500"}
	sysbench := func(args ...string) cmdResult { return runIn(dir, 3*time.Minute, sb, args...) }
	if r := sysbench(append([]string{"oltp_read_write"}, append(common, "prepare")...)...); r.Code != 0 {
		t.Fatalf("sysbench prepare: %s", r)
	}
	r := sysbench(append([]string{"oltp_read_write"}, append(common, "--threads=2", "--time=5", "run")...)...)
	if r.Code != 0 || strings.Contains(r.Stdout+r.Stderr, "FATAL") {
		t.Fatalf("sysbench run: %s", r)
	}
	m := regexp.MustCompile(`transactions:\s+(\d+)`).FindStringSubmatch(r.Stdout)
	if m == nil || m[1] == "0" {
		t.Fatalf("sysbench ran no transactions: %s", r)
	}
	t.Logf("sysbench oltp_read_write through the gateway: %s transactions in 5s", m[1])
	// Its sessions are recorded, with its prepared statements and their parameters.
	ss, evs := g.mySessions(t, "SELECT c FROM sbtest1 WHERE id=?")
	var withParams int
	for _, ev := range evs {
		for _, e := range ofType(ev, "query") {
			if e.str("protocol") == "binary" && e.Data["params"] != nil {
				withParams++
			}
		}
	}
	if len(ss) != 2 || withParams == 0 {
		t.Errorf("%d sessions (want one per thread: 2), %d binary-protocol queries with parameters recorded", len(ss), withParams)
	}
}

// sysbenchTLSDir makes a directory holding what sysbench --mysql-ssl=on loads: a throwaway
// client key and certificate, and the gateway's certificate as cacert.pem.
func sysbenchTLSDir(t testing.TB, g *gateway) string {
	t.Helper()
	dir := t.TempDir()
	openssl := requireTool(t, "openssl")
	r := run(time.Minute, cleanEnv(), nil, openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		"-keyout", filepath.Join(dir, "client-key.pem"), "-out", filepath.Join(dir, "client-cert.pem"), "-days", "1", "-subj", "/CN=sysbench")
	if r.Code != 0 {
		t.Fatalf("openssl: %s", r)
	}
	cert, err := os.ReadFile(filepath.Join(g.DataDir, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cacert.pem"), cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runIn is run in a working directory, with the test's clean environment.
func runIn(dir string, timeout time.Duration, name string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cmdResult{Stdout: out.String(), Stderr: errb.String(), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		r.Code = -1
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
		r.Code = -1
	}
	return r
}
