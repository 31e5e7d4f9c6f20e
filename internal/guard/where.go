package guard

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// truth says what a predicate can do across the rows of a table: be true for every row, be
// false for every row. A predicate that reads no column is the same for every row, so it can
// do either (unless it is a constant we can evaluate); one that reads a column is assumed to
// tell rows apart, except for the self-comparisons x = x, x <= x, x >= x and
// x IS NOT DISTINCT FROM x (true for every row where x is not null).
type truth struct{ allTrue, allFalse bool }

var (
	always    = truth{allTrue: true}
	never     = truth{allFalse: true}
	either    = truth{allTrue: true, allFalse: true}
	selective = truth{}
)

// allRows reports whether where can be true for every row of target.
func allRows(where *pg.Node, target *pg.RangeVar) bool {
	return eval(where, target).allTrue
}

func eval(n *pg.Node, target *pg.RangeVar) truth {
	if n == nil {
		return always
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_BoolExpr:
		b := x.BoolExpr
		switch b.Boolop {
		case pg.BoolExprType_NOT_EXPR:
			if len(b.Args) == 1 {
				t := eval(b.Args[0], target)
				return truth{allTrue: t.allFalse, allFalse: t.allTrue}
			}
		case pg.BoolExprType_AND_EXPR:
			out := always
			for _, arg := range b.Args {
				t := eval(arg, target)
				out.allTrue = out.allTrue && t.allTrue
				out.allFalse = out.allFalse || t.allFalse
			}
			return out
		case pg.BoolExprType_OR_EXPR:
			out := never
			for _, arg := range b.Args {
				t := eval(arg, target)
				out.allTrue = out.allTrue || t.allTrue
				out.allFalse = out.allFalse && t.allFalse
			}
			return out
		}
	case *pg.Node_AExpr:
		if t, ok := evalCompare(x.AExpr); ok {
			return t
		}
	case *pg.Node_CurrentOfExpr:
		return selective
	}
	if v, ok := constBool(n); ok {
		if v {
			return always
		}
		return never
	}
	if readsRows(n) {
		return selective
	}
	return either
}

// evalCompare evaluates comparisons of a column with itself and of two literals.
func evalCompare(e *pg.A_Expr) (truth, bool) {
	op := ""
	if len(e.Name) == 1 {
		if s := e.Name[0].GetString_(); s != nil {
			op = s.Sval
		}
	}
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_NOT_DISTINCT, pg.A_Expr_Kind_AEXPR_DISTINCT:
		if sameExpr(e.Lexpr, e.Rexpr) {
			if e.Kind == pg.A_Expr_Kind_AEXPR_NOT_DISTINCT {
				return always, true
			}
			return never, true
		}
		return truth{}, false
	case pg.A_Expr_Kind_AEXPR_OP:
	default:
		return truth{}, false
	}
	if readsRows(e.Lexpr) && sameExpr(e.Lexpr, e.Rexpr) {
		switch op {
		case "=", "<=", ">=":
			return always, true
		case "<>", "!=", "<", ">":
			return never, true
		}
		return truth{}, false
	}
	l, lok := literal(e.Lexpr)
	r, rok := literal(e.Rexpr)
	if !lok || !rok {
		return truth{}, false
	}
	c, eqOnly, ok := compareLiterals(l, r)
	if !ok || (eqOnly && op != "=" && op != "<>" && op != "!=") {
		return truth{}, false
	}
	var v bool
	switch op {
	case "=":
		v = c == 0
	case "<>", "!=":
		v = c != 0
	case "<":
		v = c < 0
	case "<=":
		v = c <= 0
	case ">":
		v = c > 0
	case ">=":
		v = c >= 0
	default:
		return truth{}, false
	}
	if v {
		return always, true
	}
	return never, true
}

// literal unwraps casts around a constant.
func literal(n *pg.Node) (*pg.A_Const, bool) {
	for n != nil {
		switch x := n.GetNode().(type) {
		case *pg.Node_TypeCast:
			n = x.TypeCast.Arg
		case *pg.Node_AConst:
			return x.AConst, !x.AConst.Isnull
		default:
			return nil, false
		}
	}
	return nil, false
}

// compareLiterals compares two literals the way PostgreSQL would coerce them for the common
// cases (numbers with numbers or numeric strings, strings with strings for equality, booleans);
// eqOnly says the result is only good for = and <> (strings: ordering depends on collation);
// ok is false when it would need more than that.
func compareLiterals(l, r *pg.A_Const) (c int, eqOnly, ok bool) {
	if lf, ok := number(l); ok {
		if rf, ok := number(r); ok {
			switch {
			case lf < rf:
				return -1, false, true
			case lf > rf:
				return 1, false, true
			}
			return 0, false, true
		}
	}
	lb, lok := l.Val.(*pg.A_Const_Boolval)
	rb, rok := r.Val.(*pg.A_Const_Boolval)
	if lok && rok {
		if lb.Boolval.Boolval == rb.Boolval.Boolval {
			return 0, true, true
		}
		return 1, true, true
	}
	ls, lok := l.Val.(*pg.A_Const_Sval)
	rs, rok := r.Val.(*pg.A_Const_Sval)
	if lok && rok {
		if ls.Sval.Sval == rs.Sval.Sval {
			return 0, true, true
		}
		return 1, true, true
	}
	return 0, false, false
}

func number(c *pg.A_Const) (float64, bool) {
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		return float64(v.Ival.Ival), true
	case *pg.A_Const_Fval:
		f, err := strconv.ParseFloat(v.Fval.Fval, 64)
		return f, err == nil
	case *pg.A_Const_Sval:
		f, err := strconv.ParseFloat(strings.TrimSpace(v.Sval.Sval), 64)
		return f, err == nil
	}
	return 0, false
}

// constBool evaluates a boolean literal: true/false, and strings PostgreSQL accepts as a
// boolean ('t', 'yes', 'on', '1', ...), possibly cast.
func constBool(n *pg.Node) (bool, bool) {
	c, ok := literal(n)
	if !ok {
		return false, false
	}
	switch v := c.Val.(type) {
	case *pg.A_Const_Boolval:
		return v.Boolval.Boolval, true
	case *pg.A_Const_Sval:
		return parseBool(v.Sval.Sval)
	case *pg.A_Const_Ival:
		// An integer cast to boolean: 0 is false, anything else true.
		if _, cast := n.GetNode().(*pg.Node_TypeCast); cast {
			return v.Ival.Ival != 0, true
		}
	}
	return false, false
}

func parseBool(s string) (bool, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return false, false
	}
	// PostgreSQL accepts any unique prefix of true/false/yes/no, and on/off/1/0.
	for _, w := range []string{"true", "yes"} {
		if strings.HasPrefix(w, s) {
			return true, true
		}
	}
	for _, w := range []string{"false", "no"} {
		if strings.HasPrefix(w, s) {
			return false, true
		}
	}
	switch s {
	case "on", "1":
		return true, true
	case "off", "of", "0":
		return false, true
	}
	return false, false
}

// readsRows reports whether an expression may depend on the row: it names a column of the
// statement, or one a subquery cannot resolve itself (so it may be correlated). Columns of a
// subquery's own FROM items, and * in its target list, do not count.
func readsRows(n *pg.Node) bool {
	return columnRefs(n.ProtoReflect(), nil)
}

func columnRefs(m protoreflect.Message, local []string) bool {
	switch x := m.Interface().(type) {
	case *pg.ColumnRef:
		if len(x.Fields) == 1 && x.Fields[0].GetAStar() != nil {
			return len(local) == 0
		}
		if len(x.Fields) > 1 && len(local) > 0 {
			if s := x.Fields[0].GetString_(); s != nil && contains(local, s.Sval) {
				return false
			}
		}
		return true
	case *pg.CurrentOfExpr:
		return true
	case *pg.SelectStmt:
		local = append(local[:len(local):len(local)], fromNames(x.FromClause)...)
		if len(local) == 0 {
			// A subquery without FROM: its bare * is meaningless, but keep the outer rule.
			local = append(local, "")
		}
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind, fd.IsMap():
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				found = columnRefs(l.Get(i).Message(), local)
			}
		default:
			found = columnRefs(v.Message(), local)
		}
		return !found
	})
	return found
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fromNames lists the names a FROM clause makes visible (aliases, else relation names).
func fromNames(from []*pg.Node) []string {
	var out []string
	for _, f := range from {
		collectFrom(f, &out)
	}
	return out
}

func collectFrom(n *pg.Node, out *[]string) {
	switch x := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		if x.RangeVar.Alias != nil {
			*out = append(*out, x.RangeVar.Alias.Aliasname)
		} else {
			*out = append(*out, x.RangeVar.Relname)
		}
	case *pg.Node_RangeSubselect:
		if x.RangeSubselect.Alias != nil {
			*out = append(*out, x.RangeSubselect.Alias.Aliasname)
		}
	case *pg.Node_RangeFunction:
		if x.RangeFunction.Alias != nil {
			*out = append(*out, x.RangeFunction.Alias.Aliasname)
		}
	case *pg.Node_JoinExpr:
		collectFrom(x.JoinExpr.Larg, out)
		collectFrom(x.JoinExpr.Rarg, out)
		if x.JoinExpr.Alias != nil {
			*out = append(*out, x.JoinExpr.Alias.Aliasname)
		}
	}
}

// sameExpr compares two expressions ignoring source locations.
func sameExpr(a, b *pg.Node) bool {
	if a == nil || b == nil {
		return false
	}
	return sameMsg(a.ProtoReflect(), b.ProtoReflect())
}

func sameMsg(a, b protoreflect.Message) bool {
	if a.Descriptor() != b.Descriptor() {
		return false
	}
	same := true
	fields := a.Descriptor().Fields()
	for i := 0; i < fields.Len() && same; i++ {
		fd := fields.Get(i)
		if fd.Name() == "location" {
			continue
		}
		if a.Has(fd) != b.Has(fd) {
			return false
		}
		if !a.Has(fd) {
			continue
		}
		va, vb := a.Get(fd), b.Get(fd)
		switch {
		case fd.IsList():
			la, lb := va.List(), vb.List()
			if la.Len() != lb.Len() {
				return false
			}
			for j := 0; j < la.Len() && same; j++ {
				if fd.Kind() == protoreflect.MessageKind {
					same = sameMsg(la.Get(j).Message(), lb.Get(j).Message())
				} else {
					same = la.Get(j).Equal(lb.Get(j))
				}
			}
		case fd.IsMap():
			same = va.Equal(vb)
		case fd.Kind() == protoreflect.MessageKind:
			same = sameMsg(va.Message(), vb.Message())
		default:
			same = va.Equal(vb)
		}
	}
	return same
}
