package mysqlguard

import (
	"strings"
	"sync"

	"vitess.io/vitess/go/vt/sqlparser"

	"github.com/airlock-gw/airlock/internal/guard"
)

// Session classifies the statements of one connection. It remembers what the connection
// prepared, with SQL PREPARE (by name) and with COM_STMT_PREPARE (by the engine's name for the
// statement id), so that EXECUTE inherits the classes of its PREPARE, and the procedures it
// created, so that CALL inherits the classes of the body.
//
// It records at classification time, whether or not the statement then runs: a refused PREPARE
// is still remembered, which can only make a later EXECUTE look more dangerous. The zero Session
// is ready to use; it is safe for concurrent use.
type Session struct {
	mu         sync.Mutex
	prepared   map[string]guard.Statement
	procedures map[string]guard.Statement
}

// Classify classifies sql like Classify, resolving EXECUTE and CALL against what this session
// has seen. noBackslashEscapes says the session runs with sql_mode NO_BACKSLASH_ESCAPES (the
// server reports it in every OK packet's status).
func (s *Session) Classify(sql string, noBackslashEscapes bool) guard.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return classifyCached(sql, noBackslashEscapes, s)
}

// Prepare classifies a statement prepared with the binary protocol (COM_STMT_PREPARE) and
// remembers it under name for Prepared.
func (s *Session) Prepare(name, sql string, noBackslashEscapes bool) guard.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := classifyCached(sql, noBackslashEscapes, s)
	s.remember(name, flatten(r))
	return r
}

// Prepared returns the classification of a prepared statement; ok is false when the session has
// not seen it prepared (the engine then refuses it on a guarded target).
func (s *Session) Prepared(name string) (st guard.Statement, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok = s.prepared[name]
	return st, ok
}

// Close forgets a prepared statement (COM_STMT_CLOSE).
func (s *Session) Close(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.prepared, name)
}

// Reset forgets every prepared statement (COM_RESET_CONNECTION). Procedures stay: they live in
// the database, not in the connection.
func (s *Session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prepared = nil
}

func (s *Session) remember(name string, st guard.Statement) {
	if s.prepared == nil {
		s.prepared = make(map[string]guard.Statement)
	}
	s.prepared[name] = st
}

// observe updates the session after a top-level statement was classified (mu held).
func (s *Session) observe(n sqlparser.Statement, st guard.Statement) {
	switch x := n.(type) {
	case *sqlparser.PrepareStmt:
		inner := st
		inner.Kinds = without(st.Kinds, "prepare")
		if len(inner.Kinds) > 0 {
			inner.Kind = inner.Kinds[0]
		}
		s.remember(strings.ToLower(x.Name.String()), inner)
	case *sqlparser.DeallocateStmt:
		delete(s.prepared, strings.ToLower(x.Name.String()))
	case *sqlparser.CreateProcedure:
		if len(st.Classes) == 0 {
			return
		}
		if s.procedures == nil {
			s.procedures = make(map[string]guard.Statement)
		}
		body := st
		body.Kinds = without(st.Kinds, "ddl")
		s.procedures[procName(x.Name)] = body
	}
}

// inheritPrepared merges the classes of prepared statement name into st (mu held).
func (s *Session) inheritPrepared(st *stmtState, name string) {
	p, ok := s.prepared[name]
	if !ok {
		st.flag(guard.ClassUnclassifiable, "cannot classify: EXECUTE "+name+" of a statement this session did not prepare")
		return
	}
	st.merge(p)
}

// inheritProcedure merges the classes of a procedure this session created (mu held). Procedures
// are matched by their unqualified name, which can only over-match.
func (s *Session) inheritProcedure(st *stmtState, name string) {
	p, ok := s.procedures[name]
	if !ok {
		return
	}
	st.merge(p)
	for _, c := range p.Classes {
		st.flag(c, "CALL runs "+name+"(), created in this session")
	}
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
