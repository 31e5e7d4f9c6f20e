// Package guardrail carries out a guarded session's guardrails for the database engines: it
// turns a policy decision's guardrails into classifier rules, and for each classified statement
// decides to let it through, refuse it, or hold it for an approver, recording every decision as
// its own event before the engine acts on it. What a statement is (its kinds, relations and
// classes) is the dialect's classifier's job (internal/guard, internal/guard/mysqlguard); how a
// refusal reaches the client is the engine's.
package guardrail

import (
	"context"
	"fmt"
	"strings"

	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/guard"
)

// RefusalPrefix starts the message of every guardrail refusal.
const RefusalPrefix = "statement refused by guardrail "

// Rules turns a policy decision's guardrails ("ACTION:CLASS") and custom rules into classifier
// rules; nil when there are none, so that an unguarded session pays nothing.
func Rules(classes []string, custom []config.GuardrailRule) []guard.Rule {
	var rules []guard.Rule
	for _, g := range classes {
		action, class, _ := strings.Cut(g, ":")
		rules = append(rules, guard.Rule{Name: class, Classes: []string{class}, Action: action})
	}
	for _, c := range custom {
		rules = append(rules, guard.Rule{Name: c.Name, Kinds: c.Kinds, Relations: c.Relations, Classes: c.Classes, Action: c.Action})
	}
	return rules
}

// Approver holds a statement until an approver allows or denies it (internal/approval.Broker).
type Approver interface {
	Request(ctx context.Context, r approval.Request) (approval.Outcome, error)
}

// Recording is the part of a session's recording the guardrails write to.
type Recording interface {
	Record(t event.Type, data any, raw []byte)
	Commit() error
	ID() string
}

// Verdict is what the engine does with a statement.
type Verdict struct {
	Allow bool
	Msg   string // for a refusal: what the client is told
}

// Decider decides a guarded session's statements.
type Decider struct {
	Rules     []guard.Rule
	Approvals Approver // nil: statements sent for approval are refused
	Rec       Recording
	User      string
	Target    string
}

// Decide evaluates a classified statement, asks for approval when a rule says so, and records
// the decision as its own event.
func (d *Decider) Decide(ctx context.Context, sql string, res guard.Result) Verdict {
	dec := guard.Evaluate(d.Rules, res)
	ev := event.GuardrailData{Action: dec.Action, Rule: dec.Rule, Reason: dec.Reason, Classes: res.Classes(), Statement: sql}
	v := Verdict{Allow: true}
	switch dec.Action {
	case guard.ActionDeny:
		v = Verdict{Msg: RefusalPrefix + dec.Rule + ": " + dec.Reason}
	case guard.ActionApprove:
		v = d.approve(ctx, sql, dec.Rule, dec.Reason, &ev)
	}
	d.Rec.Record(event.Guardrail, ev, nil)
	return v
}

// Hold sends what a policy rule requires approval for (statement: the request as an approver
// reads it) to the approvers, waits for the answer, and records the wait and the decision like
// a guardrail's.
func (d *Decider) Hold(ctx context.Context, statement, rule, reason string) Verdict {
	ev := event.GuardrailData{Action: guard.ActionApprove, Rule: rule, Reason: reason, Statement: statement}
	v := d.approve(ctx, statement, rule, reason, &ev)
	d.Rec.Record(event.Guardrail, ev, nil)
	return v
}

func (d *Decider) approve(ctx context.Context, sql, rule, reason string, ev *event.GuardrailData) Verdict {
	if d.Approvals == nil {
		return Verdict{Msg: "statement needs approval (guardrail " + rule + ") but the gateway has no approver configured"}
	}
	// Tell the recording (and so an auditor watching) that the statement waits.
	d.Rec.Record(event.Guardrail, event.GuardrailData{Action: guard.ActionApprove, Rule: rule, Reason: "waiting for approval: " + reason, Statement: sql}, nil)
	d.Rec.Commit()
	out, err := d.Approvals.Request(ctx, approval.Request{Session: d.Rec.ID(), User: d.User, Target: d.Target,
		Statement: sql, Rule: rule, Reason: reason})
	if err != nil {
		return Verdict{Msg: "statement needs approval (guardrail " + rule + ") and could not be submitted: " + err.Error()}
	}
	ok := out.Approved
	ev.Approved, ev.By = &ok, out.By
	if !ok {
		who := out.By
		if who == "" {
			who = "nobody"
		}
		return Verdict{Msg: fmt.Sprintf("statement not approved (guardrail %s): %s by %s", rule, out.Reason, who)}
	}
	return Verdict{Allow: true}
}
