package guard

import (
	"slices"
	"testing"
)

func TestSessionPrepareExecute(t *testing.T) {
	var s Session
	steps := []struct {
		sql     string
		classes []string
	}{
		{"EXECUTE p", U}, // never prepared
		{"PREPARE p AS SELECT * FROM t WHERE id = $1", N},
		{"EXECUTE p(1)", N},
		{"PREPARE d AS DELETE FROM t", D},
		{"EXECUTE d", D},
		{"explain analyze execute d", D},
		{"EXPLAIN EXECUTE d", N},
		{"DEALLOCATE d", N},
		{"EXECUTE d", U},
		{"PREPARE q AS DELETE FROM t WHERE 1=1; EXECUTE q", D},
		{"DEALLOCATE ALL", N},
		{"EXECUTE p", U},
		{"PREPARE p AS UPDATE t SET a = 1; DISCARD ALL; EXECUTE p", append(append([]string{}, D...), U...)},
	}
	for _, st := range steps {
		got := s.Classify(st.sql).Classes()
		if !slices.Equal(got, st.classes) {
			t.Errorf("%q: classes = %v, want %v", st.sql, got, st.classes)
		}
	}
	r := s.Classify("PREPARE k AS DELETE FROM pay.cards WHERE true; EXECUTE k")
	ex := r.Statements[1]
	if !slices.Contains(ex.Kinds, "delete") || !slices.Contains(ex.Relations, Relation{Schema: "pay", Name: "cards"}) {
		t.Errorf("EXECUTE does not inherit kinds/relations: %+v", ex)
	}
}

func TestSessionExtendedProtocol(t *testing.T) {
	var s Session
	if r := s.Parse("s1", "DELETE FROM t"); !r.Has(ClassDestructive) {
		t.Fatalf("Parse result = %+v", r)
	}
	st, ok := s.Prepared("s1")
	if !ok || !st.has(ClassDestructive) {
		t.Fatalf("Prepared(s1) = %+v, %v", st, ok)
	}
	// The protocol-level statement is visible to SQL EXECUTE, as in PostgreSQL.
	if r := s.Classify("EXECUTE s1"); !r.Has(ClassDestructive) {
		t.Errorf("EXECUTE s1 = %+v", r)
	}
	s.Parse("", "SELECT 1")
	if st, ok := s.Prepared(""); !ok || len(st.Classes) != 0 {
		t.Errorf("unnamed = %+v, %v", st, ok)
	}
	s.Close("s1")
	if _, ok := s.Prepared("s1"); ok {
		t.Error("Close did not forget s1")
	}
	if r := s.Parse("bad", "DELETE FROM"); !r.Unclassifiable() {
		t.Errorf("unparseable Parse = %+v", r)
	}
}

func TestSessionFunctions(t *testing.T) {
	var s Session
	if r := s.Classify("CREATE FUNCTION wipe() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; RETURN NULL; END $$"); !r.Has(ClassDestructive) {
		t.Fatalf("create = %+v", r)
	}
	for _, q := range []string{
		"CREATE TRIGGER tr AFTER INSERT ON u FOR EACH ROW EXECUTE FUNCTION wipe()",
		"SELECT public.wipe()",
		"CALL wipe()",
	} {
		if r := s.Classify(q); !r.Has(ClassDestructive) {
			t.Errorf("%q = %+v", q, r)
		}
	}
	if r := s.Classify("SELECT other()"); len(r.Classes()) != 0 {
		t.Errorf("unrelated call = %+v", r)
	}
}
