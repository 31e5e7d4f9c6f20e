package mysqlguard

import (
	"maps"
	"testing"
)

func TestColumnAliases(t *testing.T) {
	for _, tt := range []struct {
		sql  string
		want map[string]string
	}{
		{"select c from (select cvv as c from t) q", map[string]string{"c": "cvv"}},
		{"select E from (select q1.C as e from (select t.CVV as c from t) q1) q2", map[string]string{"e": "c", "c": "cvv"}},
		{"with w(x, y) as (select id, cvv from t) select y from w", map[string]string{"x": "id", "y": "cvv"}},
		{"select y from (select id, cvv from t union select 1, 2) q(x, y)", map[string]string{"x": "id", "y": "cvv"}},
		{"select upper(cvv) as c, 1 as d from t", nil},
		{"select cvv from t; select id as k from u", map[string]string{"k": "id"}},
		{"not sql at all", nil},
	} {
		if got := ColumnAliases(tt.sql, false); !maps.Equal(got, tt.want) {
			t.Errorf("ColumnAliases(%q) = %v, want %v", tt.sql, got, tt.want)
		}
	}
}
