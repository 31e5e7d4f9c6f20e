package guard

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Built-in classes.
const (
	// ClassDestructive marks a statement that can destroy data or schema: DROP, TRUNCATE,
	// ALTER ... DROP COLUMN/CONSTRAINT, DELETE/UPDATE/MERGE that can touch every row, and
	// anything that contains or creates one (CTEs, EXPLAIN ANALYZE, PREPARE, DO, function
	// bodies, rules, triggers), and COPY ... PROGRAM.
	ClassDestructive = "destructive"
	// ClassProgram marks COPY ... TO/FROM PROGRAM, which runs a shell command on the database
	// server. It always comes together with ClassDestructive.
	ClassProgram = "program"
	// ClassUnclassifiable marks what the classifier cannot analyse: text the parser rejects,
	// EXECUTE of a prepared statement it has not seen, function bodies in languages other than
	// SQL and PL/pgSQL, dynamic SQL built at run time. A guarded target refuses it.
	ClassUnclassifiable = "unclassifiable"
)

// maxDepth bounds how deep bodies may nest (DO inside a function body inside a string ...).
const maxDepth = 8

// Result is the classification of one string, which may hold several statements.
type Result struct {
	Statements []Statement `json:"statements"`
}

// Statement is the classification of one statement.
type Statement struct {
	// SQL is the statement's text as sent.
	SQL string `json:"sql"`
	// Kind is the top-level kind: select, insert, update, delete, merge, ddl, drop, truncate,
	// copy, do, call, set, show, transaction, prepare, execute, deallocate, explain, grant,
	// lock, maintenance, cursor, notify, other; "unknown" when the text did not parse.
	Kind string `json:"kind"`
	// Kinds is Kind plus the kinds of every statement it runs or embeds: the DELETE in a CTE,
	// the statement under EXPLAIN ANALYZE or PREPARE, the statements of a DO block or of a
	// function or rule body. Sorted, no duplicates.
	Kinds []string `json:"kinds"`
	// Relations are the tables, views, sequences and indexes the statement names, as written
	// (schema-qualified when it was), identifiers folded the way PostgreSQL folds them.
	Relations []Relation `json:"relations,omitempty"`
	// Classes are the classes the statement belongs to (destructive, program, unclassifiable).
	Classes []string `json:"classes,omitempty"`
	// Reasons say why, one line per finding, each starting with its class.
	Reasons []string `json:"reasons,omitempty"`
}

// Relation is a relation name. Schema is empty when the statement did not qualify the name
// (the search_path decides, which the classifier does not know). Name "*" stands for every
// relation of Schema (DROP SCHEMA); Schema "*" with Name "*" for every relation (DROP DATABASE,
// DROP OWNED).
type Relation struct {
	Schema string `json:"schema,omitempty"`
	Name   string `json:"name"`
}

func (r Relation) String() string {
	if r.Schema == "" {
		return r.Name
	}
	return r.Schema + "." + r.Name
}

// Has reports whether any statement belongs to class.
func (r Result) Has(class string) bool {
	for i := range r.Statements {
		if slices.Contains(r.Statements[i].Classes, class) {
			return true
		}
	}
	return false
}

// Unclassifiable reports whether any statement could not be classified. A guarded target
// refuses such a string as a whole.
func (r Result) Unclassifiable() bool { return r.Has(ClassUnclassifiable) }

// Classes returns the union of the statements' classes, sorted.
func (r Result) Classes() []string {
	var out []string
	for i := range r.Statements {
		for _, c := range r.Statements[i].Classes {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Classify parses sql with the PostgreSQL parser and classifies every statement in it. When
// the parser rejects the text, the error says why and the Result holds one statement of kind
// "unknown" in class unclassifiable, so a caller that ignores the error still refuses it.
//
// Classify knows nothing of earlier statements: EXECUTE of a prepared statement is
// unclassifiable here. A connection should use a Session instead.
func Classify(sql string) (Result, error) {
	return classify(sql, nil)
}

func classify(sql string, s *Session) (Result, error) {
	a := &analyzer{sess: s}
	stmts, err := a.parse(sql, 0)
	if err != nil {
		st := Statement{SQL: sql, Kind: "unknown", Kinds: []string{"unknown"}}
		st.Classes = []string{ClassUnclassifiable}
		st.Reasons = []string{ClassUnclassifiable + ": cannot classify: " + err.Error()}
		return Result{Statements: []Statement{st}}, fmt.Errorf("guard: parse: %w", err)
	}
	return Result{Statements: stmts}, nil
}

// analyzer walks parse trees. One analyzer serves one call of Classify; state is per
// statement, reset by parse for each top-level statement.
type analyzer struct {
	sess *Session
	cur  *stmtState
}

type stmtState struct {
	kinds   []string
	rels    []Relation
	classes []string
	reasons []string
}

func (st *stmtState) kind(k string) {
	if k != "" && !slices.Contains(st.kinds, k) {
		st.kinds = append(st.kinds, k)
	}
}

func (st *stmtState) rel(r Relation) {
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

// merge adds everything of an inner statement (a body, a prepared statement) to st.
func (st *stmtState) merge(in Statement) {
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

func (st *stmtState) statement(sql, kind string) Statement {
	st.kind(kind)
	sort.Strings(st.kinds)
	sort.Strings(st.classes)
	return Statement{SQL: sql, Kind: kind, Kinds: st.kinds, Relations: st.rels, Classes: st.classes, Reasons: st.reasons}
}

// parse parses text and analyses each statement in it. depth counts nested bodies.
func (a *analyzer) parse(text string, depth int) ([]Statement, error) {
	tree, err := pg.Parse(text)
	if err != nil {
		return nil, err
	}
	out := make([]Statement, 0, len(tree.Stmts))
	saved := a.cur
	defer func() { a.cur = saved }()
	for _, raw := range tree.Stmts {
		sql := stmtText(text, raw)
		a.cur = &stmtState{}
		kind := kindOf(raw.Stmt)
		a.walk(raw.Stmt, sql, depth, true)
		st := a.cur.statement(sql, kind)
		if depth == 0 && a.sess != nil {
			a.sess.observe(raw.Stmt, st)
		}
		out = append(out, st)
	}
	return out, nil
}

// stmtText cuts one statement out of the text it was parsed from (locations are byte offsets).
func stmtText(text string, raw *pg.RawStmt) string {
	start := int(raw.StmtLocation)
	end := len(text)
	if raw.StmtLen > 0 {
		end = start + int(raw.StmtLen)
	}
	if start < 0 || start > len(text) || end > len(text) || end < start {
		return text
	}
	return strings.TrimSpace(text[start:end])
}

// walk visits n and everything under it. exec is false under a plain EXPLAIN, whose statement
// is planned but never run: it still names relations but adds no kinds or classes.
func (a *analyzer) walk(n *pg.Node, sql string, depth int, exec bool) {
	if n == nil {
		return
	}
	a.visit(n.ProtoReflect(), sql, depth, exec)
}

func (a *analyzer) visit(m protoreflect.Message, sql string, depth int, exec bool) {
	if !a.special(m.Interface(), sql, depth, exec) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind:
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				a.visit(l.Get(i).Message(), sql, depth, exec)
			}
		case fd.IsMap():
		default:
			a.visit(v.Message(), sql, depth, exec)
		}
		return true
	})
}

// special handles the nodes that matter and reports whether walk should descend into m.
func (a *analyzer) special(msg protoreflect.ProtoMessage, sql string, depth int, exec bool) bool {
	st := a.cur
	switch n := msg.(type) {
	case *pg.RangeVar:
		st.rel(Relation{Schema: n.Schemaname, Name: n.Relname})
		return false
	case *pg.SelectStmt:
		if exec {
			st.kind("select")
		}
	case *pg.InsertStmt:
		if exec {
			st.kind("insert")
		}
	case *pg.DeleteStmt:
		if exec {
			st.kind("delete")
			if n.WhereClause == nil {
				st.flag(ClassDestructive, "DELETE from "+rv(n.Relation)+" has no WHERE clause")
			} else if allRows(n.WhereClause, n.Relation) {
				st.flag(ClassDestructive, "DELETE from "+rv(n.Relation)+" has a WHERE clause that is true for every row")
			}
		}
	case *pg.UpdateStmt:
		if exec {
			st.kind("update")
			if n.WhereClause == nil {
				st.flag(ClassDestructive, "UPDATE of "+rv(n.Relation)+" has no WHERE clause")
			} else if allRows(n.WhereClause, n.Relation) {
				st.flag(ClassDestructive, "UPDATE of "+rv(n.Relation)+" has a WHERE clause that is true for every row")
			}
		}
	case *pg.MergeStmt:
		if exec {
			st.kind("merge")
			a.merge(n)
		}
	case *pg.TruncateStmt:
		if exec {
			st.kind("truncate")
			st.flag(ClassDestructive, "TRUNCATE")
		}
	case *pg.DropStmt:
		if exec {
			st.kind("drop")
			st.flag(ClassDestructive, "DROP "+objectType(n.RemoveType))
		}
		dropRelations(st, n)
	case *pg.DropdbStmt, *pg.DropOwnedStmt:
		if exec {
			st.kind("drop")
			st.flag(ClassDestructive, "DROP "+strings.TrimSuffix(strings.TrimPrefix(string(msg.ProtoReflect().Descriptor().Name()), "Drop"), "Stmt"))
		}
		st.rel(Relation{Schema: "*", Name: "*"})
	case *pg.AlterTableCmd:
		if exec && (n.Subtype == pg.AlterTableType_AT_DropColumn || n.Subtype == pg.AlterTableType_AT_DropConstraint) {
			what := "COLUMN"
			if n.Subtype == pg.AlterTableType_AT_DropConstraint {
				what = "CONSTRAINT"
			}
			st.flag(ClassDestructive, "ALTER ... DROP "+what+" "+n.Name)
		}
		// ALTER COLUMN c TYPE ... USING expr writes expr into every row, as an UPDATE without
		// WHERE does (USING NULL empties the column).
		if cd := n.Def.GetColumnDef(); exec && n.Subtype == pg.AlterTableType_AT_AlterColumnType && cd != nil && cd.RawDefault != nil {
			st.flag(ClassDestructive, "ALTER ... ALTER COLUMN "+n.Name+" TYPE ... USING rewrites every row")
		}
	case *pg.CopyStmt:
		if exec && n.IsProgram {
			dir := "TO"
			if n.IsFrom {
				dir = "FROM"
			}
			st.flag(ClassProgram, "COPY "+dir+" PROGRAM runs a shell command on the database server")
			st.flag(ClassDestructive, "COPY "+dir+" PROGRAM runs a shell command on the database server")
		}
	case *pg.ExplainStmt:
		if !explainAnalyze(n) {
			a.walk(n.Query, sql, depth, false)
			return false
		}
	case *pg.DoStmt:
		if exec {
			st.kind("do")
			a.body(n.Args, "DO block", sql, depth, true)
		}
		return false
	case *pg.CreateFunctionStmt:
		if exec {
			a.body(n.Options, "function "+qualName(n.Funcname), sql, depth, n.SqlBody == nil)
		}
	case *pg.CreateTrigStmt:
		if exec && a.sess != nil {
			a.sess.inheritFunction(st, qualName(n.Funcname), "trigger executes")
		}
	case *pg.FuncCall:
		if exec {
			a.funcCall(n, depth)
		}
	case *pg.ExecuteStmt:
		if exec {
			st.kind("execute")
			if a.sess == nil {
				st.flag(ClassUnclassifiable, "cannot classify: EXECUTE "+n.Name+" of a statement prepared earlier; use a Session")
			} else {
				a.sess.inheritPrepared(st, n.Name)
			}
		}
	default:
		// DROP ROLE, DROP TABLESPACE, DROP SUBSCRIPTION, DROP USER MAPPING, ...
		name := string(msg.ProtoReflect().Descriptor().Name())
		if exec && strings.HasPrefix(name, "Drop") && strings.HasSuffix(name, "Stmt") {
			st.kind("drop")
			st.flag(ClassDestructive, "DROP "+strings.ToUpper(strings.TrimSuffix(strings.TrimPrefix(name, "Drop"), "Stmt")))
		}
	}
	return true
}

// rv names a RangeVar for a reason line.
func rv(r *pg.RangeVar) string {
	if r == nil {
		return "?"
	}
	return Relation{Schema: r.Schemaname, Name: r.Relname}.String()
}

// merge flags a MERGE that can touch every row of its target: a WHEN NOT MATCHED BY SOURCE
// action that updates or deletes (with an empty source that is every row), or a WHEN MATCHED
// one when the join condition is true for every pair.
func (a *analyzer) merge(n *pg.MergeStmt) {
	for _, w := range n.MergeWhenClauses {
		c := w.GetMergeWhenClause()
		if c == nil || (c.CommandType != pg.CmdType_CMD_DELETE && c.CommandType != pg.CmdType_CMD_UPDATE) {
			continue
		}
		if c.Condition != nil && !allRows(c.Condition, n.Relation) {
			continue
		}
		verb := "DELETE"
		if c.CommandType == pg.CmdType_CMD_UPDATE {
			verb = "UPDATE"
		}
		switch c.MatchKind {
		case pg.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_SOURCE:
			a.cur.flag(ClassDestructive, "MERGE into "+rv(n.Relation)+" WHEN NOT MATCHED BY SOURCE THEN "+verb+" can touch every row")
		case pg.MergeMatchKind_MERGE_WHEN_MATCHED:
			if allRows(n.JoinCondition, n.Relation) {
				a.cur.flag(ClassDestructive, "MERGE into "+rv(n.Relation)+" with a join condition that is true for every row, WHEN MATCHED THEN "+verb)
			}
		}
	}
}

func explainAnalyze(n *pg.ExplainStmt) bool {
	for _, o := range n.Options {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		// EXPLAIN (ANALYZE off) plans only; any other value, or none, runs the statement.
		if v, ok := optionBool(d.Arg); ok && !v {
			continue
		}
		return true
	}
	return false
}

// optionBool reads the value of a boolean option (EXPLAIN (ANALYZE off)).
func optionBool(n *pg.Node) (bool, bool) {
	switch x := n.GetNode().(type) {
	case *pg.Node_String_:
		return parseBool(x.String_.Sval)
	case *pg.Node_Boolean:
		return x.Boolean.Boolval, true
	case *pg.Node_Integer:
		return x.Integer.Ival != 0, true
	}
	return constBool(n)
}

func dropRelations(st *stmtState, n *pg.DropStmt) {
	for _, o := range n.Objects {
		switch n.RemoveType {
		case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
			pg.ObjectType_OBJECT_INDEX, pg.ObjectType_OBJECT_SEQUENCE, pg.ObjectType_OBJECT_FOREIGN_TABLE:
			st.rel(nameRelation(names(o)))
		case pg.ObjectType_OBJECT_TRIGGER, pg.ObjectType_OBJECT_RULE, pg.ObjectType_OBJECT_POLICY:
			if ns := names(o); len(ns) > 1 {
				st.rel(nameRelation(ns[:len(ns)-1]))
			}
		case pg.ObjectType_OBJECT_SCHEMA:
			if ns := names(o); len(ns) == 1 {
				st.rel(Relation{Schema: ns[0], Name: "*"})
			}
		}
	}
}

// names flattens a String node or a List of String nodes.
func names(n *pg.Node) []string {
	if s := n.GetString_(); s != nil {
		return []string{s.Sval}
	}
	var out []string
	if l := n.GetList(); l != nil {
		for _, it := range l.Items {
			if s := it.GetString_(); s != nil {
				out = append(out, s.Sval)
			}
		}
	}
	return out
}

func nameRelation(ns []string) Relation {
	switch len(ns) {
	case 0:
		return Relation{}
	case 1:
		return Relation{Name: ns[0]}
	default:
		return Relation{Schema: ns[len(ns)-2], Name: ns[len(ns)-1]}
	}
}

// qualName joins a qualified name (function names) with dots.
func qualName(ns []*pg.Node) string {
	var parts []string
	for _, n := range ns {
		if s := n.GetString_(); s != nil {
			parts = append(parts, s.Sval)
		}
	}
	return strings.Join(parts, ".")
}

func objectType(t pg.ObjectType) string {
	return strings.ReplaceAll(strings.TrimPrefix(t.String(), "OBJECT_"), "_", " ")
}
