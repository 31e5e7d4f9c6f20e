package guard

import (
	"slices"
	"strings"
	"testing"
)

// D, P, U: expected class sets.
var (
	D = []string{ClassDestructive}
	P = []string{ClassDestructive, ClassProgram}
	U = []string{ClassUnclassifiable}
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
		{"drop if exists cascade", "drop table if exists public.t cascade", D},
		{"drop schema", "DROP SCHEMA audit CASCADE", D},
		{"drop database", "DROP DATABASE app", D},
		{"drop index", "DROP INDEX CONCURRENTLY i", D},
		{"drop function", "DROP FUNCTION f(int)", D},
		{"drop role", "DROP ROLE bob", D},
		{"drop owned", "DROP OWNED BY bob", D},
		{"truncate", "TRUNCATE t", D},
		{"truncate only many", "TRUNCATE ONLY a, b RESTART IDENTITY", D},
		{"alter drop column", "ALTER TABLE t DROP COLUMN c", D},
		{"alter drop constraint", "ALTER TABLE t DROP CONSTRAINT t_pkey", D},
		{"alter type drop attribute", "ALTER TYPE ty DROP ATTRIBUTE a", D},
		{"alter column type using", "ALTER TABLE t ALTER COLUMN c TYPE text USING NULL", D},
		{"alter column set data type using", "alter table t alter c set data type int using 0", D},
		{"delete no where", "DELETE FROM t", D},
		{"delete using no where", "DELETE FROM t USING u", D},
		{"update no where", "UPDATE t SET a = 1", D},
		{"delete 1=1", "DELETE FROM t WHERE 1=1", D},
		{"delete true", "DELETE FROM t WHERE true", D},
		{"delete 'a'='a'", "DELETE FROM t WHERE 'a'='a'", D},
		{"delete not false", "DELETE FROM t WHERE NOT false", D},
		{"delete x=x", "DELETE FROM t WHERE id = id", D},
		{"delete x>=x", "DELETE FROM t WHERE t.id >= t.id", D},
		{"delete not distinct self", "DELETE FROM t WHERE a IS NOT DISTINCT FROM a", D},
		{"delete not x<>x", "DELETE FROM t WHERE NOT (id <> id)", D},
		{"delete string true", "DELETE FROM t WHERE 'yes'", D},
		{"delete cast", "DELETE FROM t WHERE 1::boolean", D},
		{"delete or true", "DELETE FROM t WHERE id = 5 OR 2 > 1", D},
		{"delete and true true", "DELETE FROM t WHERE true AND 'x' = 'x'", D},
		{"delete param", "DELETE FROM t WHERE $1", D},
		{"delete function const", "DELETE FROM t WHERE now() > '2000-01-01'", D},
		{"delete exists star", "DELETE FROM t WHERE EXISTS (SELECT * FROM pg_class)", D},
		{"delete exists local", "DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = 1)", D},
		{"delete null is null", "DELETE FROM t WHERE NULL IS NULL", D},
		{"update 1=1", "UPDATE t SET a = 1 WHERE 1 = 1", D},
		{"merge not matched by source", "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE", D},
		{"merge on true", "MERGE INTO t USING s ON true WHEN MATCHED THEN UPDATE SET a = 1", D},
		{"cte delete", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", D},
		{"cte update in insert", "WITH u AS (UPDATE t SET a = 0 RETURNING id) INSERT INTO log SELECT id FROM u", D},
		{"explain analyze delete", "EXPLAIN ANALYZE DELETE FROM t", D},
		{"explain (analyze) drop cte", "EXPLAIN (ANALYZE, BUFFERS) WITH d AS (DELETE FROM t RETURNING 1) SELECT 1", D},
		{"explain (analyze true)", "EXPLAIN (ANALYZE true) UPDATE t SET a = 1", D},
		{"prepare delete", "PREPARE p AS DELETE FROM t", D},
		{"prepare param where", "PREPARE p(bool) AS DELETE FROM t WHERE $1", D},
		{"copy to program", "COPY t TO PROGRAM 'rm -rf /'", P},
		{"copy from program", "COPY t FROM PROGRAM 'curl x'", P},
		{"copy query to program", "COPY (SELECT 1) TO PROGRAM 'cat'", P},
		{"do delete", "DO $$ BEGIN DELETE FROM t; END $$", D},
		{"do nested if", "DO $$ DECLARE n int := 1; BEGIN IF n > 0 THEN TRUNCATE t; END IF; END $$", D},
		{"do execute const", "DO $$ BEGIN EXECUTE 'DROP ' || 'TABLE t'; END $$", D},
		{"do language sql? no: plpgsql explicit", "DO LANGUAGE plpgsql $x$ BEGIN DROP TABLE t; END $x$", D},
		{"do nested do", "DO $a$ BEGIN EXECUTE $b$DO $c$ BEGIN DROP TABLE t; END $c$$b$; END $a$", D},
		{"function plpgsql", "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; END $$", D},
		{"function sql string", "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'TRUNCATE t'", D},
		{"function sql atomic", "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END", D},
		{"procedure", "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN DROP TABLE t; END $$", D},
		{"trigger function body", "CREATE OR REPLACE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; RETURN NEW; END $$", D},
		{"perform dblink", "DO $$ BEGIN PERFORM dblink_exec('dbname=x', 'DROP TABLE t'); END $$", D},
		{"assign with subscript call", "DO $$ DECLARE a int[]; BEGIN a[1] := dblink_exec('TRUNCATE t'); END $$", D},
		{"rule instead delete", "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u", D},
		{"rule also truncate-like update", "CREATE RULE r AS ON UPDATE TO t DO ALSO UPDATE u SET a = 1", D},
		{"dblink_exec select", "SELECT dblink_exec('host=h', 'DELETE FROM t')", D},
		{"query_to_xml", "SELECT query_to_xml('WITH d AS (DELETE FROM t RETURNING 1) SELECT 1', true, true, '')", D},

		// Obfuscation.
		{"case", "dRoP tAbLe T", D},
		{"comments", "/* hi */ DROP -- x\n /* nested /* c */ */ TABLE t", D},
		{"quoted", `DROP TABLE "Public"."T"`, D},
		{"unicode escape", `DROP TABLE U&"\0074"`, D},
		{"unicode escape string", `DO U&'BEGIN \0044ROP TABLE t; END'`, D},
		{"dollar quote", "DO $fn$ BEGIN DROP TABLE t; END $fn$", D},
		{"escape string in execute", `DO $$ BEGIN EXECUTE E'DROP\x20TABLE t'; END $$`, D},
		{"multi second destructive", "SELECT 1; DROP TABLE t", D},
		{"multi many", "BEGIN; SELECT 1; UPDATE t SET a=1 WHERE id=1; TRUNCATE t; COMMIT", D},

		// Unclassifiable.
		{"parse error", "DROP TABLE", U},
		{"garbage", "SELEC 1", U},
		{"do dynamic", "DO $$ DECLARE n text := 't'; BEGIN EXECUTE 'DROP TABLE ' || n; END $$", U},
		{"do format", "DO $$ BEGIN EXECUTE format('DELETE FROM %I', 't'); END $$", U},
		{"function python", "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'return 1'", U},
		{"function c", "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'", U},
		{"do bad plpgsql", "DO $$ BEGIN NOT VALID; END $$", U},
		{"execute stateless", "EXECUTE p", U},
		{"explain analyze execute", "EXPLAIN ANALYZE EXECUTE p", U},
		{"dblink dynamic", "SELECT dblink_exec('h', current_setting('x'))", U},

		// Near misses: not destructive.
		{"select", "SELECT * FROM t WHERE id = 1", N},
		{"select 1=1", "SELECT * FROM t WHERE 1=1", N},
		{"select drop literal", "select 'drop table t'", N},
		{"drop in comment", "SELECT 1 -- DROP TABLE t", N},
		{"drop in block comment", "/* DROP TABLE t; */ SELECT 1", N},
		{"drop in dollar string", "SELECT $$DROP TABLE t$$", N},
		{"delete where", "DELETE FROM t WHERE id = 5", N},
		{"delete where param", "DELETE FROM t WHERE id = $1", N},
		{"delete 1=0", "DELETE FROM t WHERE 1 = 0", N},
		{"delete false", "DELETE FROM t WHERE false", N},
		{"delete 'a'='b'", "DELETE FROM t WHERE 'a' = 'b'", N},
		{"delete and", "DELETE FROM t WHERE true AND id = 5", N},
		{"delete current of", "DELETE FROM t WHERE CURRENT OF c", N},
		{"delete correlated", "DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.t_id = t.id)", N},
		{"delete in subquery", "DELETE FROM t WHERE id IN (SELECT id FROM old)", N},
		{"update where", "UPDATE t SET a = a + 1 WHERE id = 7", N},
		{"insert", "INSERT INTO t VALUES (1)", N},
		{"insert on conflict", "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2", N},
		{"merge upsert", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.id)", N},
		{"merge matched delete with on", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", N},
		{"explain delete", "EXPLAIN DELETE FROM t", N},
		{"explain analyze off", "EXPLAIN (ANALYZE false) DELETE FROM t", N},
		{"explain execute", "EXPLAIN EXECUTE p", N},
		{"prepare select", "PREPARE p AS SELECT * FROM t WHERE id = $1", N},
		{"cte select", "WITH x AS (SELECT 1) SELECT * FROM x", N},
		{"cte delete where", "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d", N},
		{"alter drop not null", "ALTER TABLE t ALTER COLUMN c DROP NOT NULL", N},
		{"alter drop default", "ALTER TABLE t ALTER COLUMN c DROP DEFAULT", N},
		{"alter add column", "ALTER TABLE t ADD COLUMN c int", N},
		{"alter column type", "ALTER TABLE t ALTER COLUMN c TYPE bigint", N},
		{"create table", "CREATE TABLE t (id int)", N},
		{"copy to stdout", "COPY t TO STDOUT", N},
		{"copy from stdin", "COPY t FROM STDIN", N},
		{"do harmless", "DO $$ BEGIN RAISE NOTICE 'drop table t'; END $$", N},
		{"do update where", "DO $$ BEGIN UPDATE t SET a = 1 WHERE id = 2; END $$", N},
		{"function harmless", "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x + 1'", N},
		{"function plpgsql harmless", "CREATE FUNCTION f(x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN x + 1; END $$", N},
		{"rule nothing", "CREATE RULE r AS ON DELETE TO t DO INSTEAD NOTHING", N},
		{"trigger stateless", "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION trg()", N},
		{"set", "SET search_path = public", N},
		{"transaction", "BEGIN ISOLATION LEVEL SERIALIZABLE", N},
		{"dblink select", "SELECT * FROM dblink('h', 'SELECT 1') AS x(a int)", N},
		{"empty", "", N},
		{"only comment", "-- nothing", N},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := Classify(tt.sql)
			got := r.Classes()
			if !slices.Equal(got, tt.classes) {
				t.Errorf("Classify(%q) classes = %v, want %v\n%+v", tt.sql, got, tt.classes, r.Statements)
			}
		})
	}
}

func TestClassifyKindsAndRelations(t *testing.T) {
	tests := []struct {
		sql   string
		kinds [][]string // per statement
		kind  []string
		rels  []string // union, as strings
	}{
		{"SELECT * FROM public.payments p JOIN users u ON u.id = p.uid", [][]string{{"select"}}, []string{"select"}, []string{"public.payments", "users"}},
		{"WITH d AS (DELETE FROM audit.log WHERE id=1 RETURNING *) SELECT * FROM d", [][]string{{"delete", "select"}}, []string{"select"}, []string{"audit.log", "d"}},
		{"INSERT INTO t SELECT * FROM s; UPDATE x SET a=1 WHERE b=2", [][]string{{"insert", "select"}, {"update"}}, []string{"insert", "update"}, []string{"t", "s", "x"}},
		{"EXPLAIN DELETE FROM t", [][]string{{"explain"}}, []string{"explain"}, []string{"t"}},
		{"EXPLAIN ANALYZE DELETE FROM t", [][]string{{"delete", "explain"}}, []string{"explain"}, []string{"t"}},
		{"DROP TABLE a.b, c", [][]string{{"drop"}}, []string{"drop"}, []string{"a.b", "c"}},
		{"DROP SCHEMA audit", [][]string{{"drop"}}, []string{"drop"}, []string{"audit.*"}},
		{`DROP TABLE "Weird"."Na.me"`, [][]string{{"drop"}}, []string{"drop"}, []string{"Weird.Na.me"}},
		{"TRUNCATE pay", [][]string{{"truncate"}}, []string{"truncate"}, []string{"pay"}},
		{"COPY t TO STDOUT", [][]string{{"copy"}}, []string{"copy"}, []string{"t"}},
		{"DO $$ BEGIN DELETE FROM x.y WHERE a = 1; END $$", [][]string{{"delete", "do"}}, []string{"do"}, []string{"x.y"}},
		{"CREATE INDEX i ON t (a)", [][]string{{"ddl"}}, []string{"ddl"}, []string{"t"}},
		{"GRANT SELECT ON t TO bob", [][]string{{"grant"}}, []string{"grant"}, []string{"t"}},
		{"CALL p(1)", [][]string{{"call"}}, []string{"call"}, nil},
		{"VACUUM t", [][]string{{"maintenance"}}, []string{"maintenance"}, []string{"t"}},
		{"LOCK TABLE t", [][]string{{"lock"}}, []string{"lock"}, []string{"t"}},
		{"SHOW x; SET x = 1; COMMIT", [][]string{{"show"}, {"set"}, {"transaction"}}, []string{"show", "set", "transaction"}, nil},
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
				if st.Kind != tt.kind[i] {
					t.Errorf("statement %d kind = %q, want %q", i, st.Kind, tt.kind[i])
				}
				if !slices.Equal(st.Kinds, tt.kinds[i]) {
					t.Errorf("statement %d kinds = %v, want %v", i, st.Kinds, tt.kinds[i])
				}
				for _, rel := range st.Relations {
					rels = append(rels, rel.String())
				}
			}
			slices.Sort(rels)
			want := slices.Sorted(slices.Values(tt.rels))
			if !slices.Equal(rels, want) {
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
	for i, st := range r.Statements {
		if st.SQL != want[i] {
			t.Errorf("statement %d SQL = %q, want %q", i, st.SQL, want[i])
		}
	}
	if !r.Statements[1].has(ClassDestructive) || r.Statements[0].has(ClassDestructive) {
		t.Errorf("classes per statement wrong: %+v", r.Statements)
	}
	if !strings.HasPrefix(r.Statements[1].Reasons[0], "destructive: DROP TABLE") {
		t.Errorf("reason = %q", r.Statements[1].Reasons)
	}
}

func TestClassifyParseError(t *testing.T) {
	r, err := Classify("DELETE FROM")
	if err == nil {
		t.Fatal("no error for a parse failure")
	}
	if !r.Unclassifiable() || len(r.Statements) != 1 || r.Statements[0].Kind != "unknown" {
		t.Fatalf("parse failure result = %+v", r)
	}
}

func (s Statement) has(class string) bool { return slices.Contains(s.Classes, class) }
