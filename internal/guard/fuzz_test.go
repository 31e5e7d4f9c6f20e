package guard

import (
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// FuzzClassify checks that Classify never panics, and never calls a string safe (no class)
// when the parser rejects it.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", "DROP TABLE t", "DELETE FROM t WHERE 1=1", "select 'drop table t'",
		"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
		"EXPLAIN ANALYZE DELETE FROM t", "PREPARE p AS DELETE FROM t; EXECUTE p",
		"DO $$ BEGIN EXECUTE 'DROP ' || 'TABLE t'; END $$", "COPY t TO PROGRAM 'x'",
		`DROP TABLE U&"\0074"`, "/* c */ TRUNCATE t; SELECT 2",
		"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		r, err := Classify(sql)
		_, perr := pg.Parse(sql)
		if (err == nil) != (perr == nil) {
			t.Fatalf("Classify error %v, parser error %v", err, perr)
		}
		if perr != nil && !r.Unclassifiable() {
			t.Fatalf("parser rejects %q but Classify says %+v", sql, r)
		}
		var s Session
		if sr := s.Classify(sql); perr != nil && !sr.Unclassifiable() {
			t.Fatalf("Session: parser rejects %q but Classify says %+v", sql, sr)
		}
	})
}
