package mysql

import (
	"context"

	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/engine/guardrail"
	"github.com/airlock-gw/airlock/internal/guard"
	"github.com/airlock-gw/airlock/internal/guard/mysqlguard"
)

// guardrails holds a guarded session's rules and its classifier state. A session with no
// guardrails has none, and pays nothing.
type guardrails struct {
	rules []guard.Rule
	s     mysqlguard.Session
}

// newGuardrails makes a session's guardrails from its policy decision; nil when there are none.
func newGuardrails(classes []string, custom []config.GuardrailRule) *guardrails {
	rules := guardrail.Rules(classes, custom)
	if len(rules) == 0 {
		return nil
	}
	return &guardrails{rules: rules}
}

// classify classifies a COM_QUERY string in the session's current sql_mode.
func (r *relay) classify(sql string) guard.Result {
	return r.guard.s.Classify(sql, r.noBackslashEscapes())
}

// prepared is the classification of a statement prepared with COM_STMT_PREPARE; one the session
// did not see prepared is unclassifiable (and so refused).
func (g *guardrails) prepared(name string) guard.Result {
	st, ok := g.s.Prepared(name)
	if !ok {
		st = guard.Statement{SQL: name, Kind: "unknown", Kinds: []string{"unknown"}, Classes: []string{guard.ClassUnclassifiable},
			Reasons: []string{guard.ClassUnclassifiable + ": statement " + name + " was not seen being prepared on this guarded target"}}
	}
	return guard.Result{Statements: []guard.Statement{st}}
}

// decide evaluates a classified statement, asks for approval when a rule says so, and records
// the decision as its own event (internal/engine/guardrail).
func (r *relay) decide(ctx context.Context, sql string, res guard.Result) guardrail.Verdict {
	d := guardrail.Decider{Rules: r.guard.rules, Approvals: r.e.d.Approvals, Rec: r.rec, User: r.c.id.User, Target: r.c.target}
	return d.Decide(ctx, sql, res)
}
