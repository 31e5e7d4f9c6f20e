package guard

import (
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

var pgParse = pg.Parse

// pgbench's select-only transaction, and a five-statement string of its read-write one.
const (
	benchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"
	benchMulti  = "BEGIN; UPDATE pgbench_accounts SET abalance = abalance + -2371 WHERE aid = 48213; " +
		"SELECT abalance FROM pgbench_accounts WHERE aid = 48213; " +
		"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -2371, CURRENT_TIMESTAMP); END;"
)

func BenchmarkClassifySelect(b *testing.B) {
	for b.Loop() {
		if _, err := Classify(benchSelect); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClassifyFiveStatements(b *testing.B) {
	for b.Loop() {
		if _, err := Classify(benchMulti); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClassifyDoBlock(b *testing.B) {
	const do = "DO $$ BEGIN UPDATE t SET a = 1 WHERE id = 2; PERFORM pg_sleep(0); END $$"
	for b.Loop() {
		if _, err := Classify(do); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseOnly is the parser alone, for comparison: most of Classify's time.
func BenchmarkParseOnly(b *testing.B) {
	for b.Loop() {
		if _, err := pgParse(benchSelect); err != nil {
			b.Fatal(err)
		}
	}
}
