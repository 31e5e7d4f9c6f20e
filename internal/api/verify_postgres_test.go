package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-gw/airlock/internal/store/postgres"
	"github.com/airlock-gw/airlock/internal/store/postgres/pgtest"
	"github.com/airlock-gw/airlock/internal/verify"
)

// pgStore opens the PostgreSQL store in a schema of its own, on the server the store's own
// tests use (pgtest), and returns a superuser connection for tampering.
func pgStore(t *testing.T) (*postgres.Store, *pgx.Conn, string) {
	t.Helper()
	c := pgtest.Connect(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "airlock_apitest_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	st, err := postgres.Open(context.Background(), pgtest.DSN(), postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, c, schema
}

// TestVerifyPostgresTampered: rows changed by someone who can get past the append-only
// triggers (a superuser, with session_replication_role = replica). The table keeps events in
// seq order only, so a reordering is a change of seq, which the hash covers: altered, as is the
// event after (it chains to the row before it, whatever that holds).
func TestVerifyPostgresTampered(t *testing.T) {
	tests := []struct {
		name      string
		sql       string
		want      []finding
		endedOnly bool // a running session has no end to insert after
	}{
		{"intact", ``, []finding{}, false},
		{"altered", `UPDATE events SET data = convert_to(replace(convert_from(data, 'UTF8'), 'select 1', 'select 9'), 'UTF8') WHERE seq = 4`,
			[]finding{{verify.Altered, 4}}, false},
		{"deleted", `DELETE FROM events WHERE seq = 4`, []finding{{verify.Missing, 4}}, false},
		{"inserted after the end", `INSERT INTO events SELECT session_id, 9, type, offset_ns, time_ns, data, raw, hash FROM events WHERE seq = 4`,
			[]finding{{verify.Inserted, 9}, {verify.Altered, 9}}, true}, // a copy of event 4: its hash is not its own
		{"seq swapped", `UPDATE events SET seq = 1000 WHERE seq = 4; UPDATE events SET seq = 4 WHERE seq = 5; UPDATE events SET seq = 5 WHERE seq = 1000`,
			// Event 6 is not changed, but it hashes over the stored hash of the row before it,
			// which now is event 4's.
			[]finding{{verify.Altered, 4}, {verify.Altered, 5}, {verify.Altered, 6}}, false},
	}
	for _, ended := range []bool{true, false} {
		name := "ended"
		if !ended {
			name = "running"
		}
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				if tt.endedOnly && !ended {
					continue
				}
				t.Run(tt.name, func(t *testing.T) {
					want := tt.want
					f := newFixture(t)
					st, c, schema := pgStore(t)
					id, _ := recordSigned(t, f, st, ended)
					if tt.sql != "" {
						ctx := context.Background()
						tx, err := c.Begin(ctx)
						if err != nil {
							t.Fatal(err)
						}
						for _, q := range []string{`SET LOCAL session_replication_role = replica`,
							`SET LOCAL search_path = ` + pgx.Identifier{schema}.Sanitize(), tt.sql} {
							if _, err := tx.Exec(ctx, q); err != nil {
								t.Fatalf("%s: %v", q, err)
							}
						}
						if err := tx.Commit(ctx); err != nil {
							t.Fatal(err)
						}
					}
					r, got := verifyFindings(t, f, id)
					if !slices.Equal(got, want) || r.Intact != (len(want) == 0) {
						t.Fatalf("findings %v, want %v: %+v", got, want, r)
					}
				})
			}
		})
	}
}
