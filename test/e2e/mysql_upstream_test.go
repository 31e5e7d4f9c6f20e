package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMySQLUpstreamPassword: the gateway logs in to MariaDB as a user with a password
// (mysql_native_password, MariaDB's plugin for IDENTIFIED BY), from password_file; a wrong
// password is a clear 1045 for the client, naming the target, without the password.
func TestMySQLUpstreamPassword(t *testing.T) {
	db := requireMySQL(t)
	user, pw := uniq("airlock_up"), "Up-"+uniq("pw")
	user = strings.ReplaceAll(user, "_", "")[:16] // MariaDB user names: at most 80, keep it short
	for _, q := range []string{
		fmt.Sprintf("create user '%s'@'127.0.0.1' identified by '%s'", user, pw),
		fmt.Sprintf("create user '%s'@'localhost' identified by '%s'", user, pw),
		fmt.Sprintf("grant select on test.* to '%s'@'127.0.0.1'", user),
		fmt.Sprintf("grant select on test.* to '%s'@'localhost'", user),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		db.Exec(fmt.Sprintf("drop user if exists '%s'@'127.0.0.1'", user))
		db.Exec(fmt.Sprintf("drop user if exists '%s'@'localhost'", user))
	})
	var plugin string
	if err := db.QueryRow("select plugin from mysql.user where user = ? and host = '127.0.0.1'", user).Scan(&plugin); err != nil || plugin != "mysql_native_password" {
		t.Fatalf("the test user's plugin is %q (%v), want mysql_native_password", plugin, err)
	}
	pwFile := filepath.Join(t.TempDir(), "target.pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startMySQLGateway(t, gwConfig{Targets: []targetCfg{
		{Name: "myp", Type: "mysql", Address: myAddr, Raw: fmt.Sprintf("    database: test\n    username: %s\n    password_file: %s\n", user, yq(pwFile))},
		{Name: "mybad", Type: "mysql", Address: myAddr, Raw: fmt.Sprintf("    database: test\n    username: %s\n    password: wrong-%s\n", user, pw)},
	}})
	r := g.mariadb(t, "alice", alicePassword, "myp", "-e", "select current_user()")
	if r.Code != 0 || !strings.Contains(r.Stdout, user+"@") {
		t.Fatalf("through the gateway as %s: %s", user, r)
	}
	r = g.mariadb(t, "alice", alicePassword, "mybad", "-e", "select 1")
	if r.Code == 0 || !strings.Contains(r.Stderr, "1045") || strings.Contains(r.Stderr, pw) {
		t.Fatalf("a target password the server refuses: %s", r)
	}
}
