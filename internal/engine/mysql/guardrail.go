package mysql

import (
	"context"
	"fmt"
	"strings"

	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/guard"
	"github.com/airlock-gw/airlock/internal/guard/mysqlguard"
)

// guardrails holds a guarded session's rules and its classifier state. A session with no
// guardrails has none, and pays nothing.
type guardrails struct {
	rules []guard.Rule
	s     mysqlguard.Session
}

// newGuardrails turns a policy decision's guardrails ("ACTION:CLASS") and custom rules into
// classifier rules; nil when there are none.
func newGuardrails(classes []string, custom []config.GuardrailRule) *guardrails {
	var rules []guard.Rule
	for _, g := range classes {
		action, class, _ := strings.Cut(g, ":")
		rules = append(rules, guard.Rule{Name: class, Classes: []string{class}, Action: action})
	}
	for _, c := range custom {
		rules = append(rules, guard.Rule{Name: c.Name, Kinds: c.Kinds, Relations: c.Relations, Classes: c.Classes, Action: c.Action})
	}
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

// verdict is what the relay does with a statement.
type verdict struct {
	allow bool
	msg   string // for a refusal: what the client is told
}

// refusalPrefix starts the message of every guardrail refusal.
const refusalPrefix = "statement refused by guardrail "

// decide evaluates a classified statement, asks for approval when a rule says so, and records
// the decision as its own event.
func (r *relay) decide(ctx context.Context, sql string, res guard.Result) verdict {
	d := guard.Evaluate(r.guard.rules, res)
	ev := event.GuardrailData{Action: d.Action, Rule: d.Rule, Reason: d.Reason, Classes: res.Classes(), Statement: sql}
	v := verdict{allow: true}
	switch d.Action {
	case guard.ActionDeny:
		v = verdict{msg: refusalPrefix + d.Rule + ": " + d.Reason}
	case guard.ActionApprove:
		v = r.approve(ctx, sql, d, &ev)
	}
	r.rec.Record(event.Guardrail, ev, nil)
	return v
}

func (r *relay) approve(ctx context.Context, sql string, d guard.Decision, ev *event.GuardrailData) verdict {
	if r.e.d.Approvals == nil {
		return verdict{msg: "statement needs approval (guardrail " + d.Rule + ") but the gateway has no approver configured"}
	}
	// Tell the recording (and so an auditor watching) that the statement waits.
	r.rec.Record(event.Guardrail, event.GuardrailData{Action: d.Action, Rule: d.Rule, Reason: "waiting for approval: " + d.Reason, Statement: sql}, nil)
	r.rec.Commit()
	out, err := r.e.d.Approvals.Request(ctx, approval.Request{Session: r.rec.ID(), User: r.c.id.User, Target: r.c.target,
		Statement: sql, Rule: d.Rule, Reason: d.Reason})
	if err != nil {
		return verdict{msg: "statement needs approval (guardrail " + d.Rule + ") and could not be submitted: " + err.Error()}
	}
	ok := out.Approved
	ev.Approved, ev.By = &ok, out.By
	if !ok {
		who := out.By
		if who == "" {
			who = "nobody"
		}
		return verdict{msg: fmt.Sprintf("statement not approved (guardrail %s): %s by %s", d.Rule, out.Reason, who)}
	}
	return verdict{allow: true}
}
