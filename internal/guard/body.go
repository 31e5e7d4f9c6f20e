package guard

import (
	"encoding/json"
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// body classifies the body of a DO block or a CREATE FUNCTION/PROCEDURE from its options
// (DefElem "as" and "language"). A function with a SQL-standard body (BEGIN ATOMIC, RETURN)
// has no "as": its statements are ordinary nodes that walk visits anyway.
func (a *analyzer) body(opts []*pg.Node, what, sql string, depth int, needBody bool) {
	st := a.cur
	lang, src, parts := "", "", 0
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		switch d.Defname {
		case "language":
			if s := d.Arg.GetString_(); s != nil {
				lang = strings.ToLower(s.Sval)
			}
		case "as":
			ns := names(d.Arg)
			parts = len(ns)
			if parts > 0 {
				src = ns[0]
			}
		}
	}
	if parts == 0 {
		if needBody && what == "DO block" {
			st.flag(ClassUnclassifiable, "cannot classify: DO block without a body")
		}
		return
	}
	if lang == "" {
		lang = "sql"
		if what == "DO block" {
			lang = "plpgsql"
		}
	}
	if depth >= maxDepth {
		st.flag(ClassUnclassifiable, "cannot classify: bodies nested too deep")
		return
	}
	switch {
	case parts > 1:
		st.flag(ClassUnclassifiable, fmt.Sprintf("cannot classify: %s is object code (language %s)", what, lang))
	case lang == "sql":
		a.nested(src, what, depth)
	case lang == "plpgsql":
		a.plpgsql(sql, what, depth)
	default:
		st.flag(ClassUnclassifiable, fmt.Sprintf("cannot classify: %s is in language %s", what, lang))
	}
}

// nested classifies SQL text found inside the current statement and merges it in.
func (a *analyzer) nested(text, what string, depth int) {
	st := a.cur
	stmts, err := a.parse(text, depth+1)
	if err != nil {
		st.flag(ClassUnclassifiable, fmt.Sprintf("cannot classify: %s: %v", what, err))
		return
	}
	for _, s := range stmts {
		st.merge(s)
	}
}

// plpgsql compiles the PL/pgSQL body of the statement text sql (a DO or CREATE FUNCTION) and
// classifies every SQL statement and expression in it.
func (a *analyzer) plpgsql(sql, what string, depth int) {
	st := a.cur
	out, err := pg.ParsePlPgSqlToJSON(sql)
	if err != nil {
		st.flag(ClassUnclassifiable, fmt.Sprintf("cannot classify: %s: %v", what, strings.TrimSpace(err.Error())))
		return
	}
	var tree any
	if err := json.Unmarshal([]byte(out), &tree); err != nil {
		st.flag(ClassUnclassifiable, fmt.Sprintf("cannot classify: %s: %v", what, err))
		return
	}
	a.plNode(tree, "", "", what, depth)
}

// plNode walks the PL/pgSQL JSON. owner is the PLpgSQL_* type of the enclosing object, key
// the field that holds v.
func (a *analyzer) plNode(v any, owner, key, what string, depth int) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			a.plNode(e, owner, key, what, depth)
		}
	case map[string]any:
		if len(x) == 1 {
			for typ, inner := range x {
				if strings.HasPrefix(typ, "PLpgSQL_") {
					if typ == "PLpgSQL_expr" {
						a.plExpr(inner, owner, key, what, depth)
						return
					}
					a.plNode(inner, typ, "", what, depth)
					return
				}
			}
		}
		for k, e := range x {
			a.plNode(e, owner, k, what, depth)
		}
	}
}

func (a *analyzer) plExpr(v any, owner, key, what string, depth int) {
	st := a.cur
	m, _ := v.(map[string]any)
	query, _ := m["query"].(string)
	mode, _ := m["parseMode"].(float64)
	if query == "" {
		return
	}
	dynamic := key == "dynquery" ||
		(key == "query" && (owner == "PLpgSQL_stmt_dynexecute" || owner == "PLpgSQL_stmt_dynfors"))
	if dynamic {
		s, ok := constStringExpr(query)
		if !ok {
			st.flag(ClassUnclassifiable, "cannot classify: "+what+" runs dynamic SQL: EXECUTE "+query)
			return
		}
		a.nested(s, what+": EXECUTE", depth)
		return
	}
	switch int(mode) {
	case 0: // a whole SQL statement
		a.nested(query, what, depth)
	case 2: // an expression
		a.nested("SELECT "+query, what, depth)
	case 3, 4, 5: // target := expression
		a.nested(assignmentAsSelect(query), what, depth)
	default:
		a.nested(query, what, depth)
	}
}

// assignmentAsSelect turns "target := expr" into "SELECT target, expr" at the token level so
// that both the target's subscripts and the expression are classified.
func assignmentAsSelect(q string) string {
	sc, err := pg.Scan(q)
	if err != nil {
		return q // unparseable either way; the caller reports it
	}
	level := 0
	for _, t := range sc.Tokens {
		switch t.Token {
		case pg.Token_ASCII_40, pg.Token_ASCII_91:
			level++
		case pg.Token_ASCII_41, pg.Token_ASCII_93:
			level--
		case pg.Token_COLON_EQUALS, pg.Token_ASCII_61:
			if level == 0 && int(t.End) <= len(q) {
				return "SELECT " + q[:t.Start] + ", " + q[t.End:]
			}
		}
	}
	return q
}

// constStringExpr evaluates a PL/pgSQL expression that is a string literal or a concatenation
// of string literals.
func constStringExpr(expr string) (string, bool) {
	tree, err := pg.Parse("SELECT " + expr)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 || len(sel.FromClause) != 0 || sel.WhereClause != nil {
		return "", false
	}
	rt := sel.TargetList[0].GetResTarget()
	if rt == nil {
		return "", false
	}
	return constString(rt.Val)
}

// constString folds string literals, casts of them and || between them.
func constString(n *pg.Node) (string, bool) {
	switch x := n.GetNode().(type) {
	case *pg.Node_AConst:
		if s, ok := x.AConst.Val.(*pg.A_Const_Sval); ok && !x.AConst.Isnull {
			return s.Sval.Sval, true
		}
	case *pg.Node_TypeCast:
		return constString(x.TypeCast.Arg)
	case *pg.Node_AExpr:
		e := x.AExpr
		if e.Kind == pg.A_Expr_Kind_AEXPR_OP && len(e.Name) == 1 && e.Name[0].GetString_().GetSval() == "||" {
			l, lok := constString(e.Lexpr)
			r, rok := constString(e.Rexpr)
			return l + r, lok && rok
		}
	}
	return "", false
}

// sqlTextFuncs run SQL given to them as text: dblink and friends on a remote (often the same)
// server, the query_to_xml family and ts_stat locally.
var sqlTextFuncs = map[string]bool{
	"dblink": true, "dblink_exec": true, "dblink_send_query": true, "dblink_open": true,
	"query_to_xml": true, "query_to_xmlschema": true, "query_to_xml_and_xmlschema": true,
	"ts_stat": true,
}

// funcCall classifies the SQL text handed to sqlTextFuncs, and, in a Session, inherits the
// classes of functions created earlier in the session.
func (a *analyzer) funcCall(f *pg.FuncCall, depth int) {
	name := qualName(f.Funcname)
	base := name
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		base = base[i+1:]
	}
	if sqlTextFuncs[base] {
		for _, arg := range f.Args {
			if _, isBool := constBool(arg); isBool {
				continue
			}
			s, ok := constString(arg)
			if !ok {
				a.cur.flag(ClassUnclassifiable, "cannot classify: "+base+"() runs SQL computed at run time")
				continue
			}
			if depth >= maxDepth {
				a.cur.flag(ClassUnclassifiable, "cannot classify: bodies nested too deep")
				continue
			}
			// Connection strings and cursor names do not parse as SQL; the query does.
			if stmts, err := a.parse(s, depth+1); err == nil {
				for _, st := range stmts {
					a.cur.merge(st)
				}
			}
		}
	}
	if a.sess != nil {
		a.sess.inheritFunction(a.cur, name, "calls")
	}
}
