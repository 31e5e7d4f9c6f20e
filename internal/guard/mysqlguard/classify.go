package mysqlguard

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"vitess.io/vitess/go/vt/sqlparser"

	"github.com/airlock-gw/airlock/internal/guard"
)

// maxDepth bounds how deep statements may nest (a PREPARE of a string holding a PREPARE ...).
const maxDepth = 8

var (
	parserOnce sync.Once
	parser     *sqlparser.Parser
	parserErr  error
)

func vitess() (*sqlparser.Parser, error) {
	parserOnce.Do(func() {
		parser, parserErr = sqlparser.New(sqlparser.Options{MySQLServerVersion: "8.0.40"})
	})
	return parser, parserErr
}

// executableComment matches the start of the comments MySQL and MariaDB execute:
// /*! ... */ and /*!50700 ... */ (MySQL and MariaDB), /*M! ... */ and /*M!100100 ... */
// (MariaDB only).
var executableComment = regexp.MustCompile(`/\*M?!\d*`)

// prepareText rewrites sql so that the parser reads what the server executes: every executable
// comment's content as code, whatever its version (over-reading can only find more), and, when
// the session runs with NO_BACKSLASH_ESCAPES, backslashes as ordinary characters (the parser
// always treats them as escapes, so each one is doubled).
func prepareText(sql string, noBackslashEscapes bool) string {
	if strings.Contains(sql, "/*") {
		sql = executableComment.ReplaceAllString(sql, "/*!")
	}
	if noBackslashEscapes && strings.Contains(sql, `\`) {
		sql = strings.ReplaceAll(sql, `\`, `\\`)
	}
	return sql
}

// Classify classifies sql, a string that may hold several statements, with vitess's MySQL
// parser. Text the parser rejects is one statement of kind "unknown" in class unclassifiable (the
// error says why), so that a caller that ignores the error still refuses it. It knows nothing of
// earlier statements: EXECUTE is unclassifiable here; a connection uses a Session.
func Classify(sql string) (guard.Result, error) {
	return classify(sql, false, nil, 0)
}

func classify(sql string, noBackslash bool, s *Session, depth int) (guard.Result, error) {
	r, _, err := classifyState(sql, noBackslash, s, depth)
	return r, err
}

// classifyState is classify that also reports whether the result depends on, or changes, what a
// session remembers (PREPARE, EXECUTE, DEALLOCATE, CREATE PROCEDURE, CALL): only a result that
// does neither is the same whenever the same text is classified, and may be cached.
func classifyState(sql string, noBackslash bool, s *Session, depth int) (r guard.Result, stateful bool, err error) {
	p, err := vitess()
	if err == nil {
		var stmts []sqlparser.Statement
		text := prepareText(sql, noBackslash)
		if stmts, err = p.ParseMultipleIgnoreEmpty(text); err == nil {
			if len(stmts) == 0 {
				return guard.Result{Statements: []guard.Statement{{SQL: sql, Kind: "other", Kinds: []string{"other"}}}}, false, nil
			}
			pieces, perr := p.SplitStatementToPieces(text)
			if perr != nil || len(pieces) != len(stmts) {
				pieces = nil
			}
			a := &analyzer{sess: s, noBackslash: noBackslash}
			out := make([]guard.Statement, 0, len(stmts))
			for i, st := range stmts {
				text := sql
				if pieces != nil {
					text = strings.TrimSpace(pieces[i])
				}
				out = append(out, a.statement(st, text, depth))
			}
			return guard.Result{Statements: out}, a.stateful, nil
		}
	}
	st := guard.Statement{SQL: sql, Kind: "unknown", Kinds: []string{"unknown"},
		Classes: []string{guard.ClassUnclassifiable}, Reasons: []string{guard.ClassUnclassifiable + ": cannot classify: " + err.Error()}}
	return guard.Result{Statements: []guard.Statement{st}}, false, fmt.Errorf("mysqlguard: parse: %w", err)
}

// stmtState accumulates one statement's classification.
type stmtState struct {
	kinds   []string
	rels    []guard.Relation
	classes []string
	reasons []string
}

func (st *stmtState) kind(k string) {
	if k != "" && !slices.Contains(st.kinds, k) {
		st.kinds = append(st.kinds, k)
	}
}

func (st *stmtState) rel(r guard.Relation) {
	if r.Name != "" && !slices.Contains(st.rels, r) {
		st.rels = append(st.rels, r)
	}
}

func (st *stmtState) flag(class, reason string) {
	if !slices.Contains(st.classes, class) {
		st.classes = append(st.classes, class)
	}
	line := class + ": " + reason
	if !slices.Contains(st.reasons, line) && len(st.reasons) < 16 {
		st.reasons = append(st.reasons, line)
	}
}

// merge adds an inner statement (a prepared string, a procedure body) to st.
func (st *stmtState) merge(in guard.Statement) {
	for _, k := range in.Kinds {
		st.kind(k)
	}
	for _, r := range in.Relations {
		st.rel(r)
	}
	for _, c := range in.Classes {
		if !slices.Contains(st.classes, c) {
			st.classes = append(st.classes, c)
		}
	}
	for _, r := range in.Reasons {
		if !slices.Contains(st.reasons, r) && len(st.reasons) < 16 {
			st.reasons = append(st.reasons, r)
		}
	}
}

func (st *stmtState) statement(sql, kind string) guard.Statement {
	st.kind(kind)
	sort.Strings(st.kinds)
	sort.Strings(st.classes)
	return guard.Statement{SQL: sql, Kind: kind, Kinds: st.kinds, Relations: st.rels, Classes: st.classes, Reasons: st.reasons}
}

type analyzer struct {
	sess        *Session
	noBackslash bool
	// stateful: a statement met reads or changes what the session remembers (classifyState).
	stateful bool
}

// statement classifies one top-level (or nested, at depth) statement.
func (a *analyzer) statement(n sqlparser.Statement, sql string, depth int) guard.Statement {
	st := &stmtState{}
	kind := kindOf(n)
	switch n.(type) {
	case *sqlparser.PrepareStmt, *sqlparser.DeallocateStmt, *sqlparser.CreateProcedure, *sqlparser.ExecuteStmt, *sqlparser.CallProc:
		a.stateful = true // what Session.observe remembers, or what it looks up
	}
	a.walk(st, n, depth, true)
	out := st.statement(sql, kind)
	if a.sess != nil && depth == 0 {
		a.sess.observe(n, out)
	}
	return out
}

// kindOf names the kind of a statement node.
func kindOf(n sqlparser.Statement) string {
	switch x := n.(type) {
	case *sqlparser.Select, *sqlparser.Union:
		return "select"
	case *sqlparser.Insert:
		if x.Action == sqlparser.ReplaceAct {
			return "replace"
		}
		return "insert"
	case *sqlparser.Update:
		return "update"
	case *sqlparser.Delete:
		return "delete"
	case *sqlparser.TruncateTable:
		return "truncate"
	case *sqlparser.DropTable, *sqlparser.DropView, *sqlparser.DropDatabase, *sqlparser.DropProcedure:
		return "drop"
	case *sqlparser.CreateTable, *sqlparser.AlterTable, *sqlparser.CreateView, *sqlparser.AlterView,
		*sqlparser.RenameTable, *sqlparser.CreateDatabase, *sqlparser.AlterDatabase, *sqlparser.CreateProcedure:
		return "ddl"
	case *sqlparser.Load:
		return "load"
	case *sqlparser.CallProc:
		return "call"
	case *sqlparser.Set:
		return "set"
	case *sqlparser.Show, *sqlparser.ExplainTab:
		return "show"
	case *sqlparser.Begin, *sqlparser.Commit, *sqlparser.Rollback, *sqlparser.Savepoint, *sqlparser.Release, *sqlparser.SRollback:
		return "transaction"
	case *sqlparser.PrepareStmt:
		return "prepare"
	case *sqlparser.ExecuteStmt:
		return "execute"
	case *sqlparser.DeallocateStmt:
		return "deallocate"
	case *sqlparser.ExplainStmt:
		return "explain"
	case *sqlparser.LockTables, *sqlparser.UnlockTables:
		return "lock"
	case *sqlparser.Flush, *sqlparser.Analyze, *sqlparser.OtherAdmin, *sqlparser.PurgeBinaryLogs:
		return "maintenance"
	case *sqlparser.Use:
		return "use"
	case *sqlparser.Kill:
		return "kill"
	}
	return "other"
}

// walk classifies n into st. exec is false under a plain EXPLAIN, whose statement is planned but
// never run: it still names relations but adds no kinds or classes.
func (a *analyzer) walk(st *stmtState, n sqlparser.SQLNode, depth int, exec bool) {
	_ = sqlparser.Walk(func(node sqlparser.SQLNode) (bool, error) {
		return a.visit(st, node, depth, exec), nil
	}, n)
}

// visit handles the nodes that matter and reports whether the walk descends into node.
func (a *analyzer) visit(st *stmtState, node sqlparser.SQLNode, depth int, exec bool) bool {
	switch n := node.(type) {
	case sqlparser.TableName:
		st.rel(relation(n))
		return false
	case *sqlparser.ColName:
		return false // its qualifier names a table already seen, or an alias
	case *sqlparser.Select:
		if exec {
			st.kind("select")
		}
	case *sqlparser.Insert:
		if exec {
			st.kind(kindOf(n))
		}
	case *sqlparser.Delete:
		if exec {
			st.kind("delete")
			what := tablesText(n.Targets, n.TableExprs)
			if n.Where == nil {
				st.flag(guard.ClassDestructive, "DELETE from "+what+" has no WHERE clause")
			} else if allRows(n.Where.Expr, names(n.Targets, n.TableExprs)) {
				st.flag(guard.ClassDestructive, "DELETE from "+what+" has a WHERE clause that is true for every row")
			}
		}
	case *sqlparser.Update:
		if exec {
			st.kind("update")
			what := tablesText(nil, n.TableExprs)
			if n.Where == nil {
				st.flag(guard.ClassDestructive, "UPDATE of "+what+" has no WHERE clause")
			} else if allRows(n.Where.Expr, names(nil, n.TableExprs)) {
				st.flag(guard.ClassDestructive, "UPDATE of "+what+" has a WHERE clause that is true for every row")
			}
		}
	case *sqlparser.TruncateTable:
		if exec {
			st.kind("truncate")
			st.flag(guard.ClassDestructive, "TRUNCATE")
		}
	case *sqlparser.DropTable:
		if exec {
			st.kind("drop")
			st.flag(guard.ClassDestructive, "DROP TABLE")
		}
	case *sqlparser.DropView:
		if exec {
			st.kind("drop")
			st.flag(guard.ClassDestructive, "DROP VIEW")
		}
	case *sqlparser.DropProcedure:
		if exec {
			st.kind("drop")
			st.flag(guard.ClassDestructive, "DROP PROCEDURE")
		}
	case *sqlparser.DropDatabase:
		if exec {
			st.kind("drop")
			st.flag(guard.ClassDestructive, "DROP DATABASE "+n.DBName.String())
		}
		st.rel(guard.Relation{Schema: n.DBName.String(), Name: "*"})
		return false
	case *sqlparser.AlterTable:
		if exec {
			a.alter(st, n)
		}
	case *sqlparser.CreateTable:
		if exec && !n.FullyParsed {
			st.flag(guard.ClassUnclassifiable, "cannot classify: CREATE TABLE the parser did not fully analyse")
		}
	case *sqlparser.ExplainStmt:
		if n.Type != sqlparser.AnalyzeType {
			a.walk(st, n.Statement, depth, false)
			return false
		}
	case *sqlparser.PrepareStmt:
		a.stateful = true
		if exec {
			st.kind("prepare")
			if inner, ok := a.prepared(st, n, depth); ok {
				st.merge(inner)
			}
		}
		return false
	case *sqlparser.ExecuteStmt:
		a.stateful = true
		if exec {
			st.kind("execute")
			if a.sess == nil {
				st.flag(guard.ClassUnclassifiable, "cannot classify: EXECUTE "+n.Name.String()+" of a statement prepared earlier; use a Session")
			} else {
				a.sess.inheritPrepared(st, strings.ToLower(n.Name.String()))
			}
		}
	case *sqlparser.CreateProcedure:
		a.stateful = true
		if exec {
			st.kind("ddl")
			a.body(st, n.Body, "procedure "+procName(n.Name), depth)
		}
		st.rel(relation(n.Name))
		return false
	case *sqlparser.CallProc:
		a.stateful = true
		if exec {
			st.kind("call")
			if a.sess != nil {
				a.sess.inheritProcedure(st, procName(n.Name))
			}
		}
	case *sqlparser.OtherAdmin:
		if exec {
			st.flag(guard.ClassUnclassifiable, "cannot classify: the parser recognised an administrative statement (DO, REPAIR, OPTIMIZE, ...) but not its contents")
		}
	}
	return true
}

// alter flags the destructive parts of an ALTER TABLE.
func (a *analyzer) alter(st *stmtState, n *sqlparser.AlterTable) {
	if !n.FullyParsed {
		st.flag(guard.ClassUnclassifiable, "cannot classify: ALTER TABLE the parser did not fully analyse")
	}
	for _, o := range n.AlterOptions {
		switch x := o.(type) {
		case *sqlparser.DropColumn:
			st.flag(guard.ClassDestructive, "ALTER ... DROP COLUMN "+sqlparser.String(x.Name))
		case *sqlparser.DropKey:
			st.flag(guard.ClassDestructive, "ALTER ... DROP "+sqlparser.String(x))
		case *sqlparser.TablespaceOperation:
			// DISCARD TABLESPACE deletes the table's data file; IMPORT reads one back.
			if !x.Import {
				st.flag(guard.ClassDestructive, "ALTER ... DISCARD TABLESPACE")
			}
		case sqlparser.TableOptions:
			for _, to := range x {
				// The BLACKHOLE engine stores nothing: converting a table to it drops every row.
				if strings.EqualFold(to.Name, "engine") && strings.EqualFold(strings.Trim(to.String, "`'\""), "blackhole") {
					st.flag(guard.ClassDestructive, "ALTER ... ENGINE=BLACKHOLE")
				}
			}
		}
	}
	if ps := n.PartitionSpec; ps != nil {
		switch ps.Action {
		case sqlparser.DropAction:
			st.flag(guard.ClassDestructive, "ALTER ... DROP PARTITION")
		case sqlparser.TruncateAction:
			st.flag(guard.ClassDestructive, "ALTER ... TRUNCATE PARTITION")
		case sqlparser.DiscardAction:
			st.flag(guard.ClassDestructive, "ALTER ... DISCARD PARTITION TABLESPACE")
		}
	}
}

// prepared classifies the text of a SQL-level PREPARE. Only a string literal can be read; a
// user variable holds text set at run time.
func (a *analyzer) prepared(st *stmtState, n *sqlparser.PrepareStmt, depth int) (guard.Statement, bool) {
	e := n.Statement
	if in, ok := e.(*sqlparser.IntroducerExpr); ok {
		e = in.Expr
	}
	lit, ok := e.(*sqlparser.Literal)
	if !ok || lit.Type != sqlparser.StrVal {
		st.flag(guard.ClassUnclassifiable, "cannot classify: PREPARE "+n.Name.String()+" FROM "+sqlparser.String(n.Statement)+" (text known only at run time)")
		return guard.Statement{}, false
	}
	if depth >= maxDepth {
		st.flag(guard.ClassUnclassifiable, "cannot classify: statements nested too deep")
		return guard.Statement{}, false
	}
	r, _ := classify(lit.Val, a.noBackslash, nil, depth+1)
	return flatten(r), true
}

// body classifies the statements of a stored program's body into st.
func (a *analyzer) body(st *stmtState, body sqlparser.CompoundStatement, what string, depth int) {
	if depth >= maxDepth {
		st.flag(guard.ClassUnclassifiable, "cannot classify: statements nested too deep")
		return
	}
	var stmts []sqlparser.Statement
	var collect func(c sqlparser.CompoundStatement)
	collect = func(c sqlparser.CompoundStatement) {
		switch x := c.(type) {
		case *sqlparser.SingleStatement:
			stmts = append(stmts, x.Statement)
		case *sqlparser.BeginEndStatement:
			if x.Statements != nil {
				for _, s := range x.Statements.Statements {
					collect(s)
				}
			}
		case *sqlparser.IfStatement:
			for _, l := range []*sqlparser.CompoundStatements{x.ThenStatements, x.ElseStatements} {
				if l != nil {
					for _, s := range l.Statements {
						collect(s)
					}
				}
			}
			for _, b := range x.ElseIfBlocks {
				if b.ThenStatements != nil {
					for _, s := range b.ThenStatements.Statements {
						collect(s)
					}
				}
			}
		case *sqlparser.DeclareHandler:
			collect(x.Statement)
		case *sqlparser.DeclareVar, *sqlparser.DeclareCondition, *sqlparser.Signal, nil:
		default:
			st.flag(guard.ClassUnclassifiable, fmt.Sprintf("cannot classify: %T in the body of %s", c, what))
		}
	}
	collect(body)
	inner := &analyzer{noBackslash: a.noBackslash}
	for _, s := range stmts {
		in := inner.statement(s, sqlparser.String(s), depth+1)
		st.merge(in)
		for _, c := range in.Classes {
			st.flag(c, what+" runs "+in.Kind)
		}
	}
}

// flatten merges every statement of r into one (a prepared string that held several must not
// lose any).
func flatten(r guard.Result) guard.Statement {
	if len(r.Statements) == 1 {
		return r.Statements[0]
	}
	var acc stmtState
	sqls := make([]string, 0, len(r.Statements))
	for _, st := range r.Statements {
		acc.merge(st)
		sqls = append(sqls, st.SQL)
	}
	kind := "other"
	if len(r.Statements) > 0 {
		kind = r.Statements[0].Kind
	}
	return acc.statement(strings.Join(sqls, "; "), kind)
}

func relation(t sqlparser.TableName) guard.Relation {
	return guard.Relation{Schema: t.Qualifier.String(), Name: t.Name.String()}
}

func procName(t sqlparser.TableName) string {
	return strings.ToLower(t.Name.String())
}

// names are the table names and aliases a DELETE or UPDATE changes rows of.
func names(targets sqlparser.TableNames, exprs []sqlparser.TableExpr) map[string]bool {
	out := map[string]bool{}
	for _, t := range targets {
		out[strings.ToLower(t.Name.String())] = true
	}
	for _, te := range exprs {
		_ = sqlparser.Walk(func(n sqlparser.SQLNode) (bool, error) {
			if at, ok := n.(*sqlparser.AliasedTableExpr); ok {
				if tn, ok := at.Expr.(sqlparser.TableName); ok {
					out[strings.ToLower(tn.Name.String())] = true
				}
				if !at.As.IsEmpty() {
					out[strings.ToLower(at.As.String())] = true
				}
				return false, nil
			}
			return true, nil
		}, te)
	}
	return out
}

func tablesText(targets sqlparser.TableNames, exprs []sqlparser.TableExpr) string {
	if len(targets) > 0 {
		return sqlparser.String(targets)
	}
	parts := make([]string, 0, len(exprs))
	for _, e := range exprs {
		parts = append(parts, sqlparser.String(e))
	}
	return strings.Join(parts, ", ")
}

// allRows reports whether a WHERE condition can select every row: it is a tautology (x = x,
// 1 = 1, anything OR true), or it does not depend on the row at all (then it selects all rows or
// none) and is not provably false.
func allRows(e sqlparser.Expr, tables map[string]bool) bool {
	switch x := e.(type) {
	case *sqlparser.OrExpr:
		return allRows(x.Left, tables) || allRows(x.Right, tables)
	case *sqlparser.AndExpr:
		return allRows(x.Left, tables) && allRows(x.Right, tables)
	case *sqlparser.ComparisonExpr:
		switch x.Operator {
		case sqlparser.EqualOp, sqlparser.GreaterEqualOp, sqlparser.LessEqualOp, sqlparser.NullSafeEqualOp, sqlparser.LikeOp:
			if sqlparser.String(x.Left) == sqlparser.String(x.Right) {
				return true
			}
		}
	case *sqlparser.NotExpr:
		if c, ok := x.Expr.(*sqlparser.ComparisonExpr); ok && (c.Operator == sqlparser.NotEqualOp || c.Operator == sqlparser.LessThanOp || c.Operator == sqlparser.GreaterThanOp) &&
			sqlparser.String(c.Left) == sqlparser.String(c.Right) {
			return true
		}
	}
	if dependsOnRow(e, tables) {
		return false
	}
	v, known := constBool(e)
	return !known || v
}

// dependsOnRow reports whether e reads a column of the rows being changed: an unqualified
// column outside a subquery, or one qualified with a changed table's name or alias anywhere.
func dependsOnRow(e sqlparser.Expr, tables map[string]bool) bool {
	found := false
	var walk func(n sqlparser.SQLNode, inSub bool)
	walk = func(n sqlparser.SQLNode, inSub bool) {
		_ = sqlparser.Walk(func(node sqlparser.SQLNode) (bool, error) {
			if found {
				return false, nil
			}
			switch c := node.(type) {
			case *sqlparser.Subquery:
				walk(c.Select, true)
				return false, nil
			case *sqlparser.ColName:
				q := strings.ToLower(c.Qualifier.Name.String())
				if (q == "" && !inSub) || tables[q] {
					found = true
				}
				return false, nil
			}
			return true, nil
		}, n)
	}
	walk(e, false)
	return found
}

// constBool evaluates a condition that does not depend on the row; known is false when it
// cannot tell (a function, a subquery, a variable).
func constBool(e sqlparser.Expr) (v, known bool) {
	switch x := e.(type) {
	case sqlparser.BoolVal:
		return bool(x), true
	case *sqlparser.NullVal:
		return false, true
	case *sqlparser.Literal:
		f, ok := literalNumber(x)
		return f != 0, ok
	case *sqlparser.NotExpr:
		b, ok := constBool(x.Expr)
		return !b, ok
	case *sqlparser.AndExpr:
		l, lok := constBool(x.Left)
		r, rok := constBool(x.Right)
		if (lok && !l) || (rok && !r) {
			return false, true
		}
		return l && r, lok && rok
	case *sqlparser.OrExpr:
		l, lok := constBool(x.Left)
		r, rok := constBool(x.Right)
		if (lok && l) || (rok && r) {
			return true, true
		}
		return false, lok && rok
	case *sqlparser.ComparisonExpr:
		l, lok := x.Left.(*sqlparser.Literal)
		r, rok := x.Right.(*sqlparser.Literal)
		if !lok || !rok {
			return false, false
		}
		cmp, ok := compareLiterals(l, r)
		if !ok {
			return false, false
		}
		switch x.Operator {
		case sqlparser.EqualOp, sqlparser.NullSafeEqualOp:
			return cmp == 0, true
		case sqlparser.NotEqualOp:
			return cmp != 0, true
		case sqlparser.LessThanOp:
			return cmp < 0, true
		case sqlparser.LessEqualOp:
			return cmp <= 0, true
		case sqlparser.GreaterThanOp:
			return cmp > 0, true
		case sqlparser.GreaterEqualOp:
			return cmp >= 0, true
		}
	case *sqlparser.IsExpr:
		_, isNull := x.Left.(*sqlparser.NullVal)
		switch x.Right {
		case sqlparser.IsNullOp:
			if isNull {
				return true, true
			}
			if _, ok := x.Left.(*sqlparser.Literal); ok {
				return false, true
			}
		case sqlparser.IsNotNullOp:
			if isNull {
				return false, true
			}
			if _, ok := x.Left.(*sqlparser.Literal); ok {
				return true, true
			}
		}
	}
	return false, false
}

// compareLiterals compares two literals the way the server would, when that is certain. Two
// strings compare under the connection's collation, which the gateway does not know: most are
// case-insensitive and ignore trailing spaces, some ignore accents ('a' = 'A', 'a' = 'a ' and
// 'a' = 'á' can all be true), so only identical strings have a known order (equal).
func compareLiterals(l, r *sqlparser.Literal) (int, bool) {
	if l.Type == sqlparser.StrVal && r.Type == sqlparser.StrVal {
		return 0, l.Val == r.Val
	}
	a, aok := literalNumber(l)
	b, bok := literalNumber(r)
	if !aok || !bok {
		return 0, false
	}
	switch {
	case a < b:
		return -1, true
	case a > b:
		return 1, true
	}
	return 0, true
}

// literalNumber is a literal's value in a numeric context (a string converts from its numeric
// prefix, as MySQL does: 'abc' is 0, '1x' is 1).
func literalNumber(l *sqlparser.Literal) (float64, bool) {
	switch l.Type {
	case sqlparser.IntVal, sqlparser.FloatVal, sqlparser.DecimalVal:
		f, err := strconv.ParseFloat(l.Val, 64)
		return f, err == nil
	case sqlparser.StrVal:
		s := strings.TrimSpace(l.Val)
		end := 0
		for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.' || (end == 0 && (s[end] == '-' || s[end] == '+'))) {
			end++
		}
		f, err := strconv.ParseFloat(s[:end], 64)
		if err != nil {
			return 0, true
		}
		return f, true
	}
	return 0, false
}
