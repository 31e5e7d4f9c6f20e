package guard

import (
	"strings"
	"testing"
)

func TestEvaluate(t *testing.T) {
	rules := []Rule{
		{Name: "no-destructive", Classes: []string{ClassDestructive}, Action: ActionDeny},
		{Name: "payments-writes", Kinds: []string{"insert", "update", "delete", "merge"}, Relations: []string{"public.payments"}, Action: ActionApprove},
		{Name: "audit-any", Relations: []string{"audit.*"}, Action: ActionWarn},
		{Name: "audit-log-exact", Relations: []string{"audit.log"}, Action: ActionWarn},
		{Name: "copy-program", Classes: []string{ClassProgram}, Action: ActionDeny},
	}
	tests := []struct {
		sql    string
		action string
		rule   string
	}{
		{"SELECT 1", ActionAllow, ""},
		{"DROP TABLE t", ActionDeny, "no-destructive"},
		{"UPDATE payments SET a = 1 WHERE id = 1", ActionApprove, "payments-writes"},
		{"UPDATE public.payments SET a = 1 WHERE id = 1", ActionApprove, "payments-writes"},
		{"UPDATE other.payments SET a = 1 WHERE id = 1", ActionAllow, ""},
		{"WITH d AS (DELETE FROM payments WHERE id = 1 RETURNING *) SELECT * FROM d", ActionApprove, "payments-writes"},
		{"SELECT * FROM payments", ActionAllow, ""},
		{"SELECT * FROM audit.events", ActionWarn, "audit-any"},
		{"SELECT * FROM audit.log", ActionWarn, "audit-log-exact"},
		{"SELECT * FROM audit.log; UPDATE payments SET a=1 WHERE id=2", ActionApprove, "payments-writes"},
		{"SELECT * FROM audit.log; DELETE FROM payments", ActionDeny, "no-destructive"},
		{"DROP SCHEMA audit", ActionDeny, "no-destructive"},
		{"COPY t TO PROGRAM 'x'", ActionDeny, "copy-program"}, // more specific: names both classes? no: same spec, first wins
		{"SELEC 1", ActionDeny, "unclassifiable"},
		{"EXECUTE p", ActionDeny, "unclassifiable"},
	}
	for _, tt := range tests {
		r, _ := Classify(tt.sql)
		d := Evaluate(rules, r)
		if tt.sql == "COPY t TO PROGRAM 'x'" {
			// Both deny rules have one field; the first in the list is named.
			tt.rule = "no-destructive"
		}
		if d.Action != tt.action || d.Rule != tt.rule {
			t.Errorf("%q: decision = %+v, want %s by %q", tt.sql, d, tt.action, tt.rule)
		}
		if d.Action != ActionAllow && !strings.Contains(d.Reason, tt.rule) {
			t.Errorf("%q: reason %q does not name the rule", tt.sql, d.Reason)
		}
	}
}

func TestEvaluateSpecificity(t *testing.T) {
	rules := []Rule{
		{Name: "all-deletes", Kinds: []string{"delete"}, Action: ActionDeny},
		{Name: "delete-payments", Kinds: []string{"delete"}, Relations: []string{"payments"}, Action: ActionDeny},
	}
	r, _ := Classify("DELETE FROM public.payments WHERE id = 3")
	if d := Evaluate(rules, r); d.Rule != "delete-payments" {
		t.Errorf("decision = %+v, want the more specific rule", d)
	}
}

func TestEvaluateUnclassifiableOverride(t *testing.T) {
	r, _ := Classify("DO $$ BEGIN EXECUTE format('x %s', 1); END $$")
	if d := Evaluate(nil, r); d.Action != ActionAllow {
		t.Errorf("no rules: %+v", d)
	}
	rules := []Rule{{Name: "hold-unknown", Classes: []string{ClassUnclassifiable}, Action: ActionApprove}}
	if d := Evaluate(rules, r); d.Action != ActionApprove || d.Rule != "hold-unknown" {
		t.Errorf("override: %+v", d)
	}
	if d := Evaluate([]Rule{{Name: "x", Kinds: []string{"select"}, Action: ActionWarn}}, r); d.Action != ActionDeny || d.Rule != "unclassifiable" {
		t.Errorf("builtin: %+v", d)
	}
}

func TestMatchRelation(t *testing.T) {
	tests := []struct {
		pattern string
		rel     Relation
		want    bool
	}{
		{"public.payments", Relation{"public", "payments"}, true},
		{"public.payments", Relation{"", "payments"}, true},
		{"public.payments", Relation{"other", "payments"}, false},
		{"PUBLIC.Payments", Relation{"public", "payments"}, true},
		{"payments", Relation{"any", "payments"}, true},
		{"audit.*", Relation{"audit", "log"}, true},
		{"audit.*", Relation{"public", "log"}, false},
		{"audit.log", Relation{"audit", "*"}, true},
		{"x.y", Relation{"*", "*"}, true},
		{"pay*", Relation{"s", "payments"}, true},
		{"audit.*", Relation{"", "payments"}, false},
		{"audit.log", Relation{"", "log"}, true},
		{"public.*", Relation{"", "payments"}, true},
		{"[", Relation{"s", "t"}, true}, // malformed: fails closed
	}
	for _, tt := range tests {
		if got := matchRelation(tt.pattern, tt.rel); got != tt.want {
			t.Errorf("matchRelation(%q, %v) = %v, want %v", tt.pattern, tt.rel, got, tt.want)
		}
	}
	if err := (Rule{Name: "x", Relations: []string{"["}, Action: ActionDeny}).Validate(); err == nil {
		t.Error("Validate accepted a malformed pattern")
	}
	if err := (Rule{Name: "x", Action: "block"}).Validate(); err == nil {
		t.Error("Validate accepted an unknown action")
	}
}
