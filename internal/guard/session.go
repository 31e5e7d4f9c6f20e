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
// What a statement does to the prepared statements (PREPARE, DEALLOCATE, DISCARD ALL, a Parse,
// a Close) takes effect only once the engine has seen the server do it: the server may refuse
// it (a Parse under a name in use, a PREPARE after an error in the same string) or skip it
// (everything after an error up to Sync), and a name must never be taken for a harmless
// statement while the server still holds a destructive one under it. Until then the change is
// pending, under the id ClassifyQuery, Parse or CloseStatement returned, and the engine settles
// it with Settle or Drop as the server answers. Meanwhile a name stands for every statement it
// may hold: the last one known, and every one pending (Prepared merges them), so that the
// decision is that of the most dangerous.
//
// Functions are remembered at classification time, whether or not the statement then runs,
// and never forgotten: that can only make a later call look more dangerous than it is. The zero
// Session is ready to use; it is safe for concurrent use.
type Session struct {
	mu        sync.Mutex
	prepared  map[string]Statement // as the server holds them, as far as its answers told
	pending   []change             // sent, not yet settled, in the order sent
	lastID    uint64
	cur       uint64 // the id of the classification running (mu held)
	curLoose  bool   // its changes are loose (a statement inside a Parse)
	functions map[string]Statement
}

// change is what one statement does to the prepared statements.
type change struct {
	id   uint64
	op   byte // 's': name now holds st; 'd': name deallocated; 'a': every name deallocated
	name string
	st   Statement
	// loose: the change of a statement inside a Parse's query (PREPARE, DEALLOCATE), which
	// happens only if that statement is executed. It is never taken as certain: a loose
	// PREPARE adds to what the name may hold, a loose DEALLOCATE is ignored.
	loose bool
}

// Classify classifies sql like Classify, resolving EXECUTE and calls against what this session
// has seen, and applies the PREPAREs, DEALLOCATEs, DISCARD ALLs and CREATE FUNCTIONs in it as
// if the server had run the whole string. When sql does not parse, the Result is
// unclassifiable (the error is in its reasons). An engine uses ClassifyQuery instead.
func (s *Session) Classify(sql string) Result {
	r, id := s.ClassifyQuery(sql)
	s.Settle(id, true)
	return r
}

// ClassifyQuery classifies the statements of a simple Query like Classify, but what they do to
// the prepared statements is pending under the returned id until Settle (the server answered
// the Query: ok when no error came back, so that every statement ran) or Drop (the Query never
// reached the server).
func (s *Session) ClassifyQuery(sql string) (Result, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newID()
	s.cur, s.curLoose = id, false
	r, _ := classify(sql, s)
	s.cur = 0
	return r, id
}

// Parse classifies the query of an extended-protocol Parse message and notes it pending under
// the statement name ("" is the unnamed statement) and the returned id: Settle(id, true) at
// the server's ParseComplete, Drop(id) when it refused or skipped the Parse.
func (s *Session) Parse(name, sql string) (Result, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newID()
	s.cur, s.curLoose = id, true
	r, _ := classify(sql, s)
	s.cur = 0
	s.pending = append(s.pending, change{id: id, op: 's', name: name, st: flatten(r)})
	return r, id
}

// ParseUnclassifiable notes a Parse like Parse, but takes its query for unclassifiable, for
// reason, without reading it (the engine knows the server may read it otherwise than the parser).
func (s *Session) ParseUnclassifiable(name, sql, reason string) (Result, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newID()
	r := Unclassifiable(sql, reason)
	s.pending = append(s.pending, change{id: id, op: 's', name: name, st: r.Statements[0]})
	return r, id
}

// Unclassifiable is the Result of text in class unclassifiable, for reason, as if it had not
// parsed.
func Unclassifiable(sql, reason string) Result {
	st := Statement{SQL: sql, Kind: "unknown", Kinds: []string{"unknown"}, Classes: []string{ClassUnclassifiable},
		Reasons: []string{ClassUnclassifiable + ": " + reason}}
	return Result{Statements: []Statement{st}}
}

// CloseStatement notes an extended-protocol Close of a statement, pending under the returned
// id: Settle(id, true) at the server's CloseComplete.
func (s *Session) CloseStatement(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newID()
	s.pending = append(s.pending, change{id: id, op: 'd', name: name})
	return id
}

// Settle applies the changes pending under id: exactly when ok (the server did them all), and
// when not (an error came back, after some of them perhaps) only by adding what a PREPARE may
// have created to what its name may hold.
func (s *Session) Settle(id uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.takePending(id) {
		exact := ok && !c.loose
		switch {
		case c.op == 's' && exact:
			s.remember(c.name, c.st)
		case c.op == 's':
			if old, had := s.prepared[c.name]; had {
				s.remember(c.name, mergeStatements([]Statement{old, c.st}))
			} else {
				s.remember(c.name, c.st)
			}
		case c.op == 'd' && exact:
			delete(s.prepared, c.name)
		case c.op == 'a' && exact:
			s.prepared = nil
		}
	}
}

// takePending removes the changes pending under id and returns them, in the order sent. It runs
// under mu.
func (s *Session) takePending(id uint64) []change {
	var taken []change
	kept := s.pending[:0]
	for _, c := range s.pending {
		if c.id == id {
			taken = append(taken, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(s.pending[len(kept):])
	s.pending = kept
	return taken
}

// Drop forgets the changes pending under id: the server never did them.
func (s *Session) Drop(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.takePending(id)
}

// Prepared returns what the prepared statement name may be: the last statement the server is
// known to hold under it merged with every one pending; ok is false when the session knows of
// none (the engine should then refuse it on a guarded target).
func (s *Session) Prepared(name string) (st Statement, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.candidates(name)
	if len(c) == 0 {
		return Statement{}, false
	}
	return mergeStatements(c), true
}

// candidates lists what name may hold (mu held). Within the string being classified,
// statements run in order, each only if those before it did: there, a PREPARE replaces and a
// DEALLOCATE removes.
func (s *Session) candidates(name string) []Statement {
	var out []Statement
	if st, ok := s.prepared[name]; ok {
		out = append(out, st)
	}
	for _, c := range s.pending {
		own := c.id == s.cur && !c.loose && !s.curLoose
		switch {
		case c.op == 's' && c.name == name && own:
			out = append(out[:0], c.st)
		case c.op == 's' && c.name == name:
			out = append(out, c.st)
		case own && (c.op == 'a' || c.op == 'd' && c.name == name):
			out = out[:0]
		}
	}
	return out
}

func (s *Session) newID() uint64 {
	s.lastID++
	return s.lastID
}

func (s *Session) remember(name string, st Statement) {
	if s.prepared == nil {
		s.prepared = make(map[string]Statement)
	}
	s.prepared[name] = st
}

// mergeStatements merges what a name may hold into one statement, with the classes of all.
func mergeStatements(sts []Statement) Statement {
	if len(sts) == 1 {
		return sts[0]
	}
	return flatten(Result{Statements: sts})
}

// Merged is r as one statement: the statement when it holds one, else all of them merged (their
// texts joined, every kind, relation and class), as the prepared statement of a Parse is.
func (r Result) Merged() Statement { return flatten(r) }

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
		s.pending = append(s.pending, change{id: s.cur, op: 's', name: x.PrepareStmt.Name, st: inner, loose: s.curLoose})
	case *pg.Node_DeallocateStmt:
		if x.DeallocateStmt.Isall {
			s.pending = append(s.pending, change{id: s.cur, op: 'a', loose: s.curLoose})
		} else {
			s.pending = append(s.pending, change{id: s.cur, op: 'd', name: x.DeallocateStmt.Name, loose: s.curLoose})
		}
	case *pg.Node_DiscardStmt:
		if x.DiscardStmt.Target == pg.DiscardMode_DISCARD_ALL {
			s.pending = append(s.pending, change{id: s.cur, op: 'a', loose: s.curLoose})
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
	c := s.candidates(name)
	if len(c) == 0 {
		st.flag(ClassUnclassifiable, "cannot classify: EXECUTE "+name+" of a statement this session did not prepare")
		return
	}
	for _, p := range c {
		st.merge(p)
	}
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
