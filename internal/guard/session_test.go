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
	r, id := s.Parse("s1", "DELETE FROM t")
	if !r.Has(ClassDestructive) {
		t.Fatalf("Parse result = %+v", r)
	}
	st, ok := s.Prepared("s1")
	if !ok || !st.has(ClassDestructive) {
		t.Fatalf("Prepared(s1) = %+v, %v", st, ok)
	}
	s.Settle(id, true) // ParseComplete
	// The protocol-level statement is visible to SQL EXECUTE, as in PostgreSQL.
	if r := s.Classify("EXECUTE s1"); !r.Has(ClassDestructive) {
		t.Errorf("EXECUTE s1 = %+v", r)
	}
	_, id = s.Parse("", "SELECT 1")
	s.Settle(id, true)
	if st, ok := s.Prepared(""); !ok || len(st.Classes) != 0 {
		t.Errorf("unnamed = %+v, %v", st, ok)
	}
	id = s.CloseStatement("s1")
	if _, ok := s.Prepared("s1"); !ok {
		t.Error("a Close not yet answered forgot s1")
	}
	s.Settle(id, true) // CloseComplete
	if _, ok := s.Prepared("s1"); ok {
		t.Error("Close did not forget s1")
	}
	if r, _ := s.Parse("bad", "DELETE FROM"); !r.Unclassifiable() {
		t.Errorf("unparseable Parse = %+v", r)
	}
}

// TestSessionNameStillHoldsDestructive: a name the server holds a destructive statement under
// is never taken for a harmless one on the word of a Parse or PREPARE the server refused or
// skipped (a name in use, an error earlier in the string or pipeline), or of a DEALLOCATE in a
// string that was refused or failed.
func TestSessionNameStillHoldsDestructive(t *testing.T) {
	var s Session
	_, id := s.Parse("s", "DROP TABLE t")
	s.Settle(id, true)
	destructive := func(step string) {
		t.Helper()
		if st, ok := s.Prepared("s"); !ok || !st.has(ClassDestructive) {
			t.Fatalf("after %s: Prepared(s) = %+v, %v; the server still holds DROP TABLE t", step, st, ok)
		}
		if r := s.Classify("EXECUTE s"); !r.Has(ClassDestructive) {
			t.Fatalf("after %s: EXECUTE s = %+v", step, r)
		}
	}
	// Parse under the name in use: 42P05, nothing changes.
	_, id = s.Parse("s", "SELECT 1")
	destructive("a Parse not yet answered")
	s.Drop(id)
	destructive("a refused Parse")
	// PREPARE under the name in use, in a string that then fails.
	r, id := s.ClassifyQuery("PREPARE s AS SELECT 1")
	if r.Has(ClassDestructive) {
		t.Fatalf("PREPARE s AS SELECT 1 = %+v", r)
	}
	destructive("a PREPARE not yet answered")
	s.Settle(id, false)
	destructive("a PREPARE that failed")
	// A string the gateway refused never ran.
	_, id = s.ClassifyQuery("DEALLOCATE s; PREPARE s AS SELECT 1; DROP TABLE x")
	destructive("a refused string, before it is dropped")
	s.Drop(id)
	destructive("a refused string")
	// A string that failed before its DEALLOCATE.
	_, id = s.ClassifyQuery("SELECT 1/0; DEALLOCATE s; PREPARE s AS SELECT 1")
	s.Settle(id, false)
	destructive("a failed string")
	// A Close skipped after an error.
	id = s.CloseStatement("s")
	s.Drop(id)
	destructive("a skipped Close")
	// Once the server did all of a string, its effect is known.
	_, id = s.ClassifyQuery("DEALLOCATE s; PREPARE s AS SELECT 1")
	s.Settle(id, true)
	if st, ok := s.Prepared("s"); !ok || len(st.Classes) != 0 {
		t.Errorf("after DEALLOCATE and PREPARE ran: Prepared(s) = %+v, %v", st, ok)
	}
	// A PREPARE inside a Parse's query runs only if it is executed: it adds, never replaces.
	_, id = s.Parse("", "PREPARE s AS DELETE FROM t")
	s.Settle(id, true)
	destructive("a Parse of PREPARE")
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
