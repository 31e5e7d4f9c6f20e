package mysqlguard

import (
	"slices"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/guard"
)

// D, U, N: expected class sets.
var (
	D = []string{guard.ClassDestructive}
	U = []string{guard.ClassUnclassifiable}
	N = []string(nil)
)

func TestClassifyClasses(t *testing.T) {
	tests := []struct {
		name    string
		sql     string
		classes []string // union over statements, sorted
	}{
		// Destructive forms.
		{"drop table", "DROP TABLE t", D},
		{"drop if exists many", "drop table if exists test.t, u", D},
		{"drop temporary", "DROP TEMPORARY TABLE t", D},
		{"drop view", "DROP VIEW v", D},
		{"drop database", "DROP DATABASE app", D},
		{"drop schema", "DROP SCHEMA app", D},
		{"drop procedure", "DROP PROCEDURE p", D},
		{"drop index", "DROP INDEX i ON t", D},
		{"truncate", "TRUNCATE TABLE t", D},
		{"truncate short", "TRUNCATE t", D},
		{"alter drop column", "ALTER TABLE t DROP COLUMN c", D},
		{"alter several", "ALTER TABLE t ADD COLUMN d int, DROP c", D},
		{"alter drop primary key", "ALTER TABLE t DROP PRIMARY KEY", D},
		{"alter drop partition", "ALTER TABLE t DROP PARTITION p0", D},
		{"alter truncate partition", "ALTER TABLE t TRUNCATE PARTITION p0", D},
		{"alter engine blackhole", "ALTER TABLE t ENGINE=BLACKHOLE", D},
		{"alter engine blackhole lower quoted", "alter table t engine = 'blackhole'", D},
		{"alter engine blackhole backquoted", "ALTER TABLE t ENGINE `BlackHole`", D},
		{"alter engine blackhole with other option", "ALTER TABLE t COMMENT 'x', ENGINE=BLACKHOLE", D},
		{"alter discard tablespace", "ALTER TABLE t DISCARD TABLESPACE", D},
		{"alter discard partition tablespace", "ALTER TABLE t DISCARD PARTITION p0 TABLESPACE", D},
		{"alter discard all partitions", "ALTER TABLE t DISCARD PARTITION ALL TABLESPACE", D},
		{"alter blackhole in versioned comment", "ALTER TABLE t /*!50000 ENGINE=BLACKHOLE */", D},
		{"delete no where", "DELETE FROM t", D},
		{"delete limit no where", "DELETE FROM t LIMIT 10", D},
		{"delete 1=1", "DELETE FROM t WHERE 1=1", D},
		{"delete where 1", "DELETE FROM t WHERE 1", D},
		{"delete true", "DELETE FROM t WHERE true", D},
		{"delete 'a'='a'", "DELETE FROM t WHERE 'a'='a'", D},
		// Strings compare under a collation: case- and trailing-space-insensitive in most,
		// accent-insensitive in some, so only identical strings are known to be equal, and no
		// other comparison of two strings is known to be false.
		{"delete 'a'='A'", "DELETE FROM t WHERE 'a' = 'A'", D},
		{"delete trailing space", "DELETE FROM t WHERE 'a' = 'a '", D},
		{"delete or 'a'='A'", "DELETE FROM t WHERE id = 1 OR 'a' = 'A'", D},
		{"delete accent", "DELETE FROM t WHERE 'a' = 'á'", D},
		{"delete 'a'='b'", "DELETE FROM t WHERE 'a' = 'b'", D},
		{"delete not 'a'<>'A'", "DELETE FROM t WHERE NOT 'a' <> 'A'", D},
		{"update 'B'>'a'", "UPDATE t SET a = 1 WHERE 'B' > 'a'", D},
		{"delete string true", "DELETE FROM t WHERE '1x'", D},
		{"delete not false", "DELETE FROM t WHERE NOT false", D},
		{"delete x=x", "DELETE FROM t WHERE id = id", D},
		{"delete x<=>x", "DELETE FROM t WHERE t.id <=> t.id", D},
		{"delete not x<>x", "DELETE FROM t WHERE NOT (id <> id)", D},
		{"delete or true", "DELETE FROM t WHERE id = 5 OR 2 > 1", D},
		{"delete minus minus", "DELETE FROM t WHERE id=1 --1 OR 1=1", D},
		{"delete null is null", "DELETE FROM t WHERE NULL IS NULL", D},
		{"delete function const", "DELETE FROM t WHERE now() > '2000-01-01'", D},
		{"delete exists local", "DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = 1)", D},
		{"delete variable", "DELETE FROM t WHERE @x", D},
		{"multi-table delete", "DELETE t1 FROM t1 JOIN t2 ON t1.a = t2.a", D},
		{"update no where", "UPDATE t SET a = 1", D},
		{"update 1=1", "UPDATE t SET a = 1 WHERE 1 = 1", D},
		{"update join no where", "UPDATE t JOIN u ON t.id = u.id SET t.a = u.a", D},
		{"cte delete", "WITH x AS (SELECT 1) DELETE FROM t", D},
		{"explain analyze delete", "EXPLAIN ANALYZE DELETE FROM t", D},
		{"prepare delete", "PREPARE s FROM 'DELETE FROM t'", D},
		{"prepare concatenated literal", "PREPARE s FROM 'DROP ' 'TABLE t'", D},
		{"prepare introducer", "PREPARE s FROM _utf8mb4'drop table t'", D},
		{"prepare nested prepare", `PREPARE s FROM 'PREPARE s2 FROM ''DROP TABLE t'''`, D},
		{"procedure body", "CREATE PROCEDURE p() BEGIN DELETE FROM t; END", D},
		{"procedure if body", "CREATE DEFINER=root@localhost PROCEDURE p(x int) BEGIN IF x > 0 THEN TRUNCATE t; END IF; END", D},

		// Obfuscation.
		{"case", "dRoP tAbLe T", D},
		{"comments", "/* hi */ DROP -- x\n /* c */ TABLE t", D},
		{"hash comment", "SELECT 1 #x\n;DROP TABLE t", D},
		{"backticks", "DROP TABLE `te``st`.`T`", D},
		{"versioned comment", "/*!50000 DROP TABLE t */", D},
		{"versioned comment no version", "/*! DROP TABLE t */", D},
		{"versioned comment in middle", "SELECT 1; /*!40101 TRUNCATE t */", D},
		{"mariadb comment", "/*M! DROP TABLE t */", D},
		{"mariadb versioned comment", "/*M!100100 DROP TABLE t */", D},
		{"mariadb comment in where", "DELETE FROM t WHERE id = 5 /*M! OR 1=1 */", D},
		{"versioned comment in where", "DELETE FROM t WHERE id = 5 /*!50000 OR 1 */", D},
		{"multi second destructive", "SELECT 1; DROP TABLE t", D},
		{"multi many", "BEGIN; SELECT 1; UPDATE t SET a=1 WHERE id=1; TRUNCATE t; COMMIT", D},

		// Unclassifiable.
		{"parse error", "DROP TABLE", U},
		{"garbage", "SELEC 1", U},
		{"prepare from variable", "SET @q = 'DROP TABLE t'; PREPARE s FROM @q", U},
		{"prepare from hex", "PREPARE s FROM x'44524f50205441424c452074'", U},
		{"execute stateless", "EXECUTE s", U},
		{"trigger", "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW DELETE FROM u", U},
		{"event", "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO DROP TABLE t", U},
		{"function", "CREATE FUNCTION f() RETURNS INT BEGIN DELETE FROM t; RETURN 1; END", U},
		{"procedure with dynamic sql", "CREATE PROCEDURE p() BEGIN PREPARE s FROM @q; EXECUTE s; END", U},
		{"do", "DO (SELECT 1)", U},
		{"mariadb analyze statement", "ANALYZE DELETE FROM t", U},
		{"grant", "GRANT ALL ON *.* TO bob", U},

		// Near misses: not destructive.
		{"select", "SELECT * FROM t WHERE id = 1", N},
		{"select 1=1", "SELECT * FROM t WHERE 1=1", N},
		{"select drop literal", "select 'drop table t'", N},
		{"drop in comment", "SELECT 1 -- DROP TABLE t", N},
		{"drop in hash comment", "SELECT 1 # DROP TABLE t", N},
		{"drop in block comment", "/* DROP TABLE t; */ SELECT 1", N},
		{"drop in backslash string", `SELECT 'it\'s; DROP TABLE t'`, N},
		{"delete where", "DELETE FROM t WHERE id = 5", N},
		{"delete where param", "DELETE FROM t WHERE id = ?", N},
		{"delete 1=0", "DELETE FROM t WHERE 1 = 0", N},
		{"delete false", "DELETE FROM t WHERE false", N},
		{"delete 'a'<>'a'", "DELETE FROM t WHERE 'a' <> 'a'", N},
		{"delete and 'a'='A'", "DELETE FROM t WHERE id = 5 AND 'a' = 'A'", N},
		{"delete and", "DELETE FROM t WHERE true AND id = 5", N},
		{"delete in subquery", "DELETE FROM t WHERE id IN (SELECT id FROM old)", N},
		{"delete correlated", "DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.t_id = t.id)", N},
		{"multi-table delete where", "DELETE t1 FROM t1 JOIN t2 ON t1.a = t2.a WHERE t2.b = 3", N},
		{"update where", "UPDATE t SET a = a + 1 WHERE id = 7", N},
		{"insert", "INSERT INTO t VALUES (1)", N},
		{"insert on duplicate", "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2", N},
		{"replace", "REPLACE INTO t VALUES (1)", N},
		{"explain delete", "EXPLAIN DELETE FROM t", N},
		{"prepare select", "PREPARE s FROM 'SELECT * FROM t WHERE id = ?'", N},
		{"alter add column", "ALTER TABLE t ADD COLUMN c int", N},
		{"alter engine innodb", "ALTER TABLE t ENGINE=InnoDB", N},
		{"alter import tablespace", "ALTER TABLE t IMPORT TABLESPACE", N},
		{"create table blackhole", "CREATE TABLE t (a int) ENGINE=BLACKHOLE", N},
		{"create table", "CREATE TABLE t (id int primary key)", N},
		{"procedure harmless", "CREATE PROCEDURE p() BEGIN SELECT 1; END", N},
		{"load data", "LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t", N},
		{"set", "SET NAMES utf8mb4", N},
		{"use", "USE test", N},
		{"show", "SHOW TABLES", N},
		{"transaction", "START TRANSACTION", N},
		{"empty", "", N},
		{"only comment", "-- nothing", N},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := Classify(tt.sql)
			if got := r.Classes(); !slices.Equal(got, tt.classes) {
				t.Errorf("Classify(%q) classes = %v, want %v\n%+v", tt.sql, got, tt.classes, r.Statements)
			}
		})
	}
}

func TestClassifyKindsAndRelations(t *testing.T) {
	tests := []struct {
		sql   string
		kinds [][]string // per statement
		rels  []string   // union, as strings
	}{
		{"SELECT * FROM app.payments p JOIN users u ON u.id = p.uid", [][]string{{"select"}}, []string{"app.payments", "users"}},
		{"INSERT INTO t SELECT * FROM s; UPDATE x SET a=1 WHERE b=2", [][]string{{"insert", "select"}, {"update"}}, []string{"t", "s", "x"}},
		{"EXPLAIN DELETE FROM t", [][]string{{"explain"}}, []string{"t"}},
		{"EXPLAIN ANALYZE DELETE FROM t", [][]string{{"delete", "explain"}}, []string{"t"}},
		{"DROP TABLE a.b, c", [][]string{{"drop"}}, []string{"a.b", "c"}},
		{"DROP DATABASE audit", [][]string{{"drop"}}, []string{"audit.*"}},
		{"TRUNCATE pay", [][]string{{"truncate"}}, []string{"pay"}},
		{"PREPARE s FROM 'DELETE FROM x.y WHERE a = 1'", [][]string{{"delete", "prepare"}}, []string{"x.y"}},
		{"CALL p(1)", [][]string{{"call"}}, []string{"p"}},
		{"SHOW TABLES; SET @x = 1; COMMIT", [][]string{{"show"}, {"set"}, {"transaction"}}, nil},
		{"LOAD DATA LOCAL INFILE '/x' INTO TABLE t", [][]string{{"load"}}, nil},
		{"KILL 5", [][]string{{"kill"}}, nil},
		{"KILL QUERY 7", [][]string{{"kill"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			r, err := Classify(tt.sql)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Statements) != len(tt.kinds) {
				t.Fatalf("got %d statements, want %d", len(r.Statements), len(tt.kinds))
			}
			var rels []string
			for i, st := range r.Statements {
				if !slices.Equal(st.Kinds, tt.kinds[i]) {
					t.Errorf("statement %d kinds = %v, want %v", i, st.Kinds, tt.kinds[i])
				}
				for _, rel := range st.Relations {
					rels = append(rels, rel.String())
				}
			}
			slices.Sort(rels)
			if want := slices.Sorted(slices.Values(tt.rels)); !slices.Equal(rels, want) {
				t.Errorf("relations = %v, want %v", rels, want)
			}
		})
	}
}

func TestClassifyStatementText(t *testing.T) {
	r, err := Classify("SELECT 1;  DROP TABLE t ;\nSELECT 'a;b'")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SELECT 1", "DROP TABLE t", "SELECT 'a;b'"}
	if len(r.Statements) != len(want) {
		t.Fatalf("statements %+v", r.Statements)
	}
	for i, st := range r.Statements {
		if st.SQL != want[i] {
			t.Errorf("statement %d SQL = %q, want %q", i, st.SQL, want[i])
		}
	}
	if !strings.HasPrefix(r.Statements[1].Reasons[0], "destructive: DROP TABLE") {
		t.Errorf("reason = %q", r.Statements[1].Reasons)
	}
}

// TestNoBackslashEscapes: with sql_mode NO_BACKSLASH_ESCAPES a backslash does not escape the
// quote, so what looks like one string literal is a literal and a second statement.
func TestNoBackslashEscapes(t *testing.T) {
	sql := `SELECT 'x\'; DROP TABLE t; -- '`
	var s Session
	if r := s.Classify(sql, false); r.Has(guard.ClassDestructive) {
		t.Errorf("default sql_mode: %+v, want one harmless SELECT", r.Statements)
	}
	if r := s.Classify(sql, true); !r.Has(guard.ClassDestructive) {
		t.Errorf("NO_BACKSLASH_ESCAPES: %+v, want the DROP found", r.Statements)
	}
}

func TestSessionPrepareExecute(t *testing.T) {
	var s Session
	steps := []struct {
		sql     string
		classes []string
	}{
		{"EXECUTE p", U}, // never prepared
		{"PREPARE p FROM 'SELECT * FROM t WHERE id = ?'", N},
		{"EXECUTE p USING @a", N},
		{"PREPARE d FROM 'DELETE FROM t'", D},
		{"EXECUTE d", D},
		{"EXPLAIN EXECUTE d", N}, // planned, not run
		{"DEALLOCATE PREPARE d", N},
		{"EXECUTE d", U},
		{"PREPARE q FROM 'DELETE FROM t WHERE 1=1'; EXECUTE q", D},
		{"CREATE PROCEDURE wipe() BEGIN TRUNCATE t; END", D},
		{"CALL wipe()", D},
		{"CALL other()", N},
	}
	for _, st := range steps {
		if got := s.Classify(st.sql, false).Classes(); !slices.Equal(got, st.classes) {
			t.Errorf("%q: classes = %v, want %v", st.sql, got, st.classes)
		}
	}
	// The binary protocol's prepared statements.
	if r := s.Prepare("#1", "DELETE FROM t", false); !r.Has(guard.ClassDestructive) {
		t.Fatalf("Prepare = %+v", r)
	}
	if st, ok := s.Prepared("#1"); !ok || !slices.Contains(st.Classes, guard.ClassDestructive) {
		t.Errorf("Prepared(#1) = %+v, %v", st, ok)
	}
	s.Close("#1")
	if _, ok := s.Prepared("#1"); ok {
		t.Error("Close did not forget #1")
	}
	s.Prepare("#2", "SELECT 1", false)
	s.Reset()
	if _, ok := s.Prepared("#2"); ok {
		t.Error("Reset did not forget #2")
	}
}

func TestEvaluateWithRules(t *testing.T) {
	rules := []guard.Rule{{Name: "destructive", Classes: []string{guard.ClassDestructive}, Action: guard.ActionDeny},
		{Name: "no-payments", Relations: []string{"*.payments"}, Kinds: []string{"select"}, Action: guard.ActionWarn}}
	r, _ := Classify("SELECT * FROM app.payments")
	if d := guard.Evaluate(rules, r); d.Action != guard.ActionWarn || d.Rule != "no-payments" {
		t.Errorf("select payments: %+v", d)
	}
	r, _ = Classify("/*!50000 DROP TABLE t */")
	if d := guard.Evaluate(rules, r); d.Action != guard.ActionDeny || d.Rule != "destructive" {
		t.Errorf("versioned drop: %+v", d)
	}
	r, _ = Classify("SELEC garbage")
	if d := guard.Evaluate(rules, r); d.Action != guard.ActionDeny || d.Rule != "unclassifiable" {
		t.Errorf("garbage: %+v", d)
	}
}
