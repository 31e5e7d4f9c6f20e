package guard

import (
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Session classifies the statements of one connection. It remembers what the connection
// prepared (SQL PREPARE and the extended protocol's Parse share one namespace in PostgreSQL)
// so that EXECUTE inherits the classes of its PREPARE, and the functions it created, so that
// calling one, or a trigger executing one, inherits the classes of its body.
//
// It records at classification time, whether or not the statement then runs: a PREPARE that
// was refused is still remembered, which can only make a later EXECUTE look more dangerous
// than it is, never less. The zero Session is ready to use; it is safe for concurrent use.
type Session struct {
	mu        sync.Mutex
	prepared  map[string]Statement
	functions map[string]Statement
}

// Classify classifies sql like Classify, resolving EXECUTE and calls against what this session
// has seen, and remembers the PREPAREs, DEALLOCATEs, DISCARD ALLs and CREATE FUNCTIONs in it.
// When sql does not parse, the Result is unclassifiable (the error is in its reasons).
func (s *Session) Classify(sql string) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := classify(sql, s)
	return r
}

// Parse classifies the query of an extended-protocol Parse message and remembers it under the
// statement name ("" is the unnamed statement), for Prepared to return at Bind/Execute.
func (s *Session) Parse(name, sql string) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := classify(sql, s)
	s.remember(name, flatten(r))
	return r
}

// Prepared returns the classification of a prepared statement, by name; ok is false when the
// session has not seen it (the engine should then refuse it on a guarded target).
func (s *Session) Prepared(name string) (st Statement, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok = s.prepared[name]
	return st, ok
}

// Close forgets a prepared statement (extended-protocol Close of a statement).
func (s *Session) Close(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.prepared, name)
}

func (s *Session) remember(name string, st Statement) {
	if s.prepared == nil {
		s.prepared = make(map[string]Statement)
	}
	s.prepared[name] = st
}

// flatten merges every statement of r into one (a Parse message carries one statement, but a
// string that held several must not lose any).
func flatten(r Result) Statement {
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

// observe updates the session after a top-level statement was classified (called with mu held).
func (s *Session) observe(n *pg.Node, st Statement) {
	switch x := n.GetNode().(type) {
	case *pg.Node_PrepareStmt:
		inner := st
		inner.Kinds = without(st.Kinds, "prepare")
		inner.Kind = kindOf(x.PrepareStmt.Query)
		s.remember(x.PrepareStmt.Name, inner)
	case *pg.Node_DeallocateStmt:
		if x.DeallocateStmt.Isall {
			s.prepared = nil
		} else {
			delete(s.prepared, x.DeallocateStmt.Name)
		}
	case *pg.Node_DiscardStmt:
		if x.DiscardStmt.Target == pg.DiscardMode_DISCARD_ALL {
			s.prepared = nil
		}
	case *pg.Node_CreateFunctionStmt:
		if len(st.Classes) == 0 {
			return
		}
		if s.functions == nil {
			s.functions = make(map[string]Statement)
		}
		body := st
		body.Kinds = without(st.Kinds, "ddl")
		s.functions[baseName(qualName(x.CreateFunctionStmt.Funcname))] = body
	}
}

// inheritPrepared merges the classes of prepared statement name into st (mu held).
func (s *Session) inheritPrepared(st *stmtState, name string) {
	p, ok := s.prepared[name]
	if !ok {
		st.flag(ClassUnclassifiable, "cannot classify: EXECUTE "+name+" of a statement this session did not prepare")
		return
	}
	st.merge(p)
}

// inheritFunction merges the classes of a function this session created (mu held). Functions
// are matched by their unqualified name, which can only over-match.
func (s *Session) inheritFunction(st *stmtState, name, why string) {
	f, ok := s.functions[baseName(name)]
	if !ok {
		return
	}
	st.merge(f)
	for _, c := range f.Classes {
		st.flag(c, why+" "+name+"(), created in this session")
	}
}

func baseName(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return name
}

func without(list []string, drop string) []string {
	out := make([]string, 0, len(list))
	for _, x := range list {
		if x != drop {
			out = append(out, x)
		}
	}
	return out
}
