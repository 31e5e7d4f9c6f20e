package mysqlguard

import "testing"

// FuzzClassify: any text from a client must classify (possibly as unclassifiable), and give its
// column renames to masking, never panic.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"SELECT 1", "/*!50000 DROP TABLE t */", "/*M!100100 DELETE FROM t */", "PREPARE s FROM 'DROP TABLE t'",
		"CREATE PROCEDURE p() BEGIN IF 1 THEN DELETE FROM t; END IF; END", `SELECT 'a\'; DROP TABLE t`, "DELETE FROM t WHERE id=1 --1 OR 1=1",
		"WITH w(x) AS (SELECT cvv FROM t) SELECT x FROM (SELECT x AS y FROM w) q(z)"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, sql string, noBackslash bool) {
		var s Session
		s.Classify(sql, noBackslash)
		s.Prepare("#1", sql, noBackslash)
		ColumnAliases(sql, noBackslash)
	})
}
