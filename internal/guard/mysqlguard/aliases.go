package mysqlguard

import (
	"strings"

	"vitess.io/vitess/go/vt/sqlparser"
)

// ColumnAliases returns the names sql gives to plain column references, lowercased: `cvv AS c`
// anywhere in it (a derived table's or CTE's select list included), and the column lists of
// CTEs and derived tables (`WITH c(x) AS (SELECT cvv ...)`, `(SELECT cvv ...) q(x)`), each name
// mapped to the column it renames. MySQL reports a derived table's or CTE's column by its new
// name only, so masking needs this to follow a ruled column through the rename. Text the parser
// rejects gives nil.
func ColumnAliases(sql string, noBackslashEscapes bool) map[string]string {
	p, err := vitess()
	if err != nil {
		return nil
	}
	stmts, err := p.ParseMultipleIgnoreEmpty(prepareText(sql, noBackslashEscapes))
	if err != nil {
		return nil
	}
	var out map[string]string
	add := func(alias, col string) {
		if alias == "" || col == "" {
			return
		}
		if out == nil {
			out = map[string]string{}
		}
		out[strings.ToLower(alias)] = strings.ToLower(col)
	}
	// positional maps a column list onto the select list of the first SELECT of sel.
	positional := func(cols sqlparser.Columns, sel sqlparser.TableStatement) {
		first, err := sqlparser.GetFirstSelect(sel)
		if err != nil || first == nil || first.SelectExprs == nil {
			return
		}
		for i, c := range cols {
			if i >= len(first.SelectExprs.Exprs) {
				return
			}
			if ae, ok := first.SelectExprs.Exprs[i].(*sqlparser.AliasedExpr); ok {
				if cn, ok := ae.Expr.(*sqlparser.ColName); ok {
					add(c.String(), cn.Name.String())
				}
			}
		}
	}
	for _, st := range stmts {
		_ = sqlparser.Walk(func(n sqlparser.SQLNode) (bool, error) {
			switch x := n.(type) {
			case *sqlparser.AliasedExpr:
				if cn, ok := x.Expr.(*sqlparser.ColName); ok && !x.As.IsEmpty() {
					add(x.As.String(), cn.Name.String())
				}
			case *sqlparser.CommonTableExpr:
				if len(x.Columns) > 0 {
					positional(x.Columns, x.Subquery)
				}
			case *sqlparser.AliasedTableExpr:
				if dt, ok := x.Expr.(*sqlparser.DerivedTable); ok && len(x.Columns) > 0 {
					positional(x.Columns, dt.Select)
				}
			}
			return true, nil
		}, st)
	}
	return out
}
