package mysqlguard

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/airlock-gw/airlock/internal/guard"
)

// TestCacheSameAsParse: a text classified from the cache gets exactly what parsing it gives,
// and texts that differ by a byte, or by the sql_mode they are read in, are told apart.
func TestCacheSameAsParse(t *testing.T) {
	texts := []string{
		"SELECT c FROM sbtest1 WHERE id=?",
		"DELETE FROM t WHERE id = 1",
		"DELETE FROM t WHERE id = id",
		"DELETE FROM t WHERE id=1 --1 OR 1=1",
		"DELETE FROM t WHERE id=1 -- 1 OR 1=1",
		"/*!50000 DROP TABLE t */",
		"/*M!100100 DELETE FROM t */",
		"SELECT 1; DROP TABLE t",
		`SELECT 'x\'; DROP TABLE t; -- '`,
		"BEGIN",
		"COMMIT",
		"this is not sql",
		"",
	}
	var s Session
	for _, sql := range texts {
		for _, nbe := range []bool{false, true} {
			want, _ := classify(sql, nbe, nil, 0)
			for round := range 2 { // the second from the cache
				if got := s.Classify(sql, nbe); !reflect.DeepEqual(got, want) {
					t.Errorf("%q (no_backslash_escapes %v, round %d): %+v, want %+v", sql, nbe, round, got, want)
				}
			}
		}
	}
}

// TestCacheKeepsNoSessionState: statements whose classification reads or changes what the
// session remembers are classified every time.
func TestCacheKeepsNoSessionState(t *testing.T) {
	var s Session
	for _, sql := range []string{
		"PREPARE p FROM 'DELETE FROM t'", "EXECUTE p", "DEALLOCATE PREPARE p", "EXECUTE p",
		"CREATE PROCEDURE wipe() BEGIN TRUNCATE t; END", "CALL wipe()", "SELECT 1; EXECUTE p",
	} {
		s.Classify(sql, false)
		if _, ok := results.get(sql, false); ok {
			t.Errorf("%q was cached", sql)
		}
	}
	// A procedure created in one session makes CALL destructive there, not in another.
	var other Session
	if r := other.Classify("CALL wipe()", false); r.Has(guard.ClassDestructive) {
		t.Errorf("CALL in another session: %+v", r.Statements)
	}
	if r := s.Classify("CALL wipe()", false); !r.Has(guard.ClassDestructive) {
		t.Errorf("CALL in the creating session: %+v", r.Statements)
	}
}

// TestCacheResultsNotShared: what one caller appends to a cached result does not reach the next.
func TestCacheResultsNotShared(t *testing.T) {
	var s Session
	const sql = "DELETE FROM cache_shared"
	s.Classify(sql, false)
	r := s.Classify(sql, false)
	// Full slices: an append copies (one with room would write into the cache's array).
	for _, st := range r.Statements {
		if cap(st.Classes) != len(st.Classes) || cap(st.Kinds) != len(st.Kinds) || cap(st.Reasons) != len(st.Reasons) || cap(st.Relations) != len(st.Relations) {
			t.Errorf("cached slices have room: %+v", st)
		}
	}
	if cap(r.Statements) != len(r.Statements) {
		t.Errorf("cached statements have room")
	}
	_ = append(r.Statements[0].Classes, "tampered")
	_ = append(r.Statements[0].Kinds, "tampered")
	_ = append(r.Statements, guard.Statement{Kind: "tampered"})
	again := s.Classify(sql, false)
	if len(again.Statements) != 1 || !slices.Equal(again.Statements[0].Classes, []string{guard.ClassDestructive}) ||
		!slices.Equal(again.Statements[0].Kinds, []string{"delete"}) {
		t.Errorf("cached result changed: %+v", again.Statements)
	}
}

func TestCacheBounded(t *testing.T) {
	var s Session
	for i := range cacheMaxEntries + 100 {
		s.Classify(fmt.Sprintf("SELECT %d", i), false)
	}
	results.mu.Lock()
	n := len(results.m)
	results.mu.Unlock()
	if n > cacheMaxEntries {
		t.Errorf("%d entries, limit %d", n, cacheMaxEntries)
	}
	long := "SELECT '" + string(make([]byte, cacheMaxText)) + "'"
	s.Classify(long, false)
	if _, ok := results.get(long, false); ok {
		t.Error("a text over cacheMaxText was cached")
	}
}

// sysbench's point select, as a text query (--db-ps-mode=disable) and prepared.
const benchPointSelect = "SELECT c FROM sbtest1 WHERE id=4993"

func BenchmarkClassifyParse(b *testing.B) {
	for b.Loop() {
		classify(benchPointSelect, false, nil, 0)
	}
}

func BenchmarkClassifyCached(b *testing.B) {
	var s Session
	for b.Loop() {
		s.Classify(benchPointSelect, false)
	}
}

// FuzzCacheSameAsParse: whatever the text, a new session's classification of it (from the cache
// the second time, unless the text reads or changes session state) is what parsing it gives.
func FuzzCacheSameAsParse(f *testing.F) {
	for _, s := range []string{"SELECT 1", "DELETE FROM t WHERE 1=1", "/*!50000 DROP TABLE t */", `SELECT 'a\'; DROP TABLE t`, "EXECUTE p", "CALL p()"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, sql string, noBackslash bool) {
		want, _ := classify(sql, noBackslash, &Session{}, 0) // parsed, in a session of its own
		for round := range 2 {
			var s Session // new each round: what the text prepares must not make the difference
			if got := s.Classify(sql, noBackslash); !reflect.DeepEqual(got, want) {
				t.Fatalf("%q round %d: %+v, want %+v", sql, round, got, want)
			}
		}
	})
}
