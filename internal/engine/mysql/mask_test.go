package mysql

import (
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/airlock-gw/airlock/internal/masking"
)

// TestColumnRuled: column rules follow a base table's original column, and fall back to the
// column's names where MySQL reports a derived table, CTE or view (or nothing) as its table. The
// fields are as MariaDB 10.11 describes them.
func TestColumnRuled(t *testing.T) {
	m, err := masking.New([]string{"column:test.tbl.cvv"})
	if err != nil {
		t.Fatal(err)
	}
	mk := newMasker(m)
	field := func(schema, orgTable, name, orgName string) *gomysql.Field {
		return &gomysql.Field{Schema: []byte(schema), Table: []byte(orgTable), OrgTable: []byte(orgTable), Name: []byte(name), OrgName: []byte(orgName)}
	}
	for _, tt := range []struct {
		name string
		f    *gomysql.Field
		want bool
	}{
		{"select cvv from tbl", field("test", "tbl", "cvv", "cvv"), true},
		{"select cvv as c2 from tbl", field("test", "tbl", "c2", "cvv"), true},
		{"select id as cvv from tbl", field("test", "tbl", "cvv", "id"), false},
		{"select id from tbl", field("test", "tbl", "id", "id"), false},
		{"select cvv from (select cvv from tbl) q", field("test", "q", "cvv", "cvv"), true},
		{"with c as (select cvv from tbl) select cvv from c", field("test", "c", "cvv", "cvv"), true},
		{"select cvv from view_of_tbl", field("test", "view_of_tbl", "cvv", "cvv"), true},
		{"select concat(cvv) as cvv from tbl", field("", "", "cvv", ""), true},
		{"select cvv from other.tbl (a name match: more than asked)", field("other", "tbl", "cvv", "cvv"), true},
		{"select d from (select 1 as d) q", field("test", "q", "d", "d"), false},
		// Renamed inside a derived table or CTE: MariaDB reports the new name only.
		{"select c from (select cvv as c from tbl) q", field("test", "q", "c", "c"), true},
		{"select e from (select c as e from (select cvv as c from tbl) q1) q2", field("test", "q2", "e", "e"), true},
		{"with w(x) as (select cvv from tbl) select x from w", field("test", "w", "x", "x"), true},
		{"select c from (select id as c from tbl) q", field("test", "q", "c", "c"), false},
		{"select c from (select upper(cvv) as c from tbl) q", field("test", "q", "c", "c"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mk.statement(tt.name, false)
			if got := mk.columnRuled(tt.f); got != tt.want {
				t.Errorf("columnRuled = %v, want %v", got, tt.want)
			}
		})
	}
}
