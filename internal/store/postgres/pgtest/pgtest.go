// Package pgtest is the PostgreSQL server that tests of the PostgreSQL store, and of what
// runs on it, reach: AIRLOCK_TEST_POSTGRES, or the local test database.
package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DSN is the test server's connection string.
func DSN() string {
	if dsn := os.Getenv("AIRLOCK_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Connect returns a connection to the test server, closed when the test ends. Without a server
// the test is skipped, except with CI=true, where a missing server must fail rather than pass
// by skipping.
func Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, DSN())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and no PostgreSQL for the tests (AIRLOCK_TEST_POSTGRES, default 127.0.0.1:5432): %v", err)
		}
		t.Skipf("no PostgreSQL for the tests (set AIRLOCK_TEST_POSTGRES): %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
