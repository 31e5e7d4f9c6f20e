package guardrail

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/guard"
)

type recording struct {
	events  []event.GuardrailData
	commits int
}

func (r *recording) Record(t event.Type, data any, raw []byte) {
	if t == event.Guardrail {
		r.events = append(r.events, data.(event.GuardrailData))
	}
}
func (r *recording) Commit() error { r.commits++; return nil }
func (r *recording) ID() string    { return "s1" }

type approver struct {
	got approval.Request
	out approval.Outcome
	err error
}

func (a *approver) Request(ctx context.Context, r approval.Request) (approval.Outcome, error) {
	a.got = r
	return a.out, a.err
}

func destructive() guard.Result {
	return guard.Result{Statements: []guard.Statement{{SQL: "truncate t", Kind: "truncate", Classes: []string{guard.ClassDestructive},
		Reasons: []string{"TRUNCATE"}}}}
}

func TestRules(t *testing.T) {
	if Rules(nil, nil) != nil {
		t.Fatal("no guardrails must give no rules")
	}
	rules := Rules([]string{"deny:destructive"}, []config.GuardrailRule{{Name: "no-ddl", Kinds: []string{"drop"}, Action: "approve"}})
	if len(rules) != 2 || rules[0].Name != "destructive" || rules[0].Action != "deny" || rules[1].Name != "no-ddl" || rules[1].Kinds[0] != "drop" {
		t.Fatalf("rules: %+v", rules)
	}
}

func TestDecide(t *testing.T) {
	ctx := context.Background()
	yes, no := true, false
	for _, tc := range []struct {
		name     string
		action   string
		appr     *approver
		allow    bool
		msg      string // prefix of the refusal
		approved *bool
		events   int
	}{
		{name: "allowed", action: "warn", allow: true, events: 1},
		{name: "denied", action: "deny", msg: RefusalPrefix + "destructive: rule \"destructive\" (deny)", events: 1},
		{name: "no approver", action: "approve", msg: "statement needs approval (guardrail destructive) but the gateway has no approver", events: 1},
		{name: "approved", action: "approve", appr: &approver{out: approval.Outcome{Approved: true, By: "bob"}}, allow: true, approved: &yes, events: 2},
		{name: "rejected", action: "approve", appr: &approver{out: approval.Outcome{By: "bob", Reason: "not now"}},
			msg: "statement not approved (guardrail destructive): not now by bob", approved: &no, events: 2},
		{name: "timed out", action: "approve", appr: &approver{out: approval.Outcome{Reason: approval.ReasonTimedOut}},
			msg: "statement not approved (guardrail destructive): " + approval.ReasonTimedOut + " by nobody", approved: &no, events: 2},
		{name: "not submitted", action: "approve", appr: &approver{err: errors.New("audit log unavailable")},
			msg: "statement needs approval (guardrail destructive) and could not be submitted: audit log unavailable", events: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recording{}
			d := Decider{Rules: Rules([]string{tc.action + ":destructive"}, nil), Rec: rec, User: "alice", Target: "db"}
			if tc.appr != nil {
				d.Approvals = tc.appr
			}
			v := d.Decide(ctx, "truncate t", destructive())
			if v.Allow != tc.allow || !strings.HasPrefix(v.Msg, tc.msg) || (tc.allow && v.Msg != "") {
				t.Fatalf("verdict %+v, want allow=%v msg %q", v, tc.allow, tc.msg)
			}
			if len(rec.events) != tc.events {
				t.Fatalf("%d guardrail events, want %d: %+v", len(rec.events), tc.events, rec.events)
			}
			last := rec.events[len(rec.events)-1]
			if last.Action != tc.action || last.Rule != "destructive" || last.Statement != "truncate t" || len(last.Classes) != 1 {
				t.Fatalf("decision event %+v", last)
			}
			if (last.Approved == nil) != (tc.approved == nil) || (last.Approved != nil && *last.Approved != *tc.approved) {
				t.Fatalf("approved %v, want %v", last.Approved, tc.approved)
			}
			if tc.appr != nil {
				// The wait is recorded and made durable before the approver is asked.
				if rec.commits != 1 || !strings.HasPrefix(rec.events[0].Reason, "waiting for approval: ") {
					t.Fatalf("wait not recorded first: %d commits, %+v", rec.commits, rec.events[0])
				}
				if g := tc.appr.got; g.Session != "s1" || g.User != "alice" || g.Target != "db" || g.Rule != "destructive" || g.Statement != "truncate t" {
					t.Fatalf("approval request %+v", g)
				}
			}
		})
	}
}

func TestHold(t *testing.T) {
	rec := &recording{}
	a := &approver{out: approval.Outcome{Approved: true, By: "bob"}}
	d := Decider{Approvals: a, Rec: rec, User: "alice", Target: "kind-1"}
	if v := d.Hold(context.Background(), "delete configmaps/x", "cm-approval", "policy rule cm-approval requires approval"); !v.Allow {
		t.Fatalf("approved hold refused: %+v", v)
	}
	if len(rec.events) != 2 || rec.commits != 1 || !strings.HasPrefix(rec.events[0].Reason, "waiting for approval") {
		t.Fatalf("events %+v, commits %d", rec.events, rec.commits)
	}
	last := rec.events[1]
	if last.Action != "approve" || last.Rule != "cm-approval" || last.Statement != "delete configmaps/x" || last.Approved == nil || !*last.Approved || last.By != "bob" {
		t.Fatalf("decision %+v", last)
	}
	if a.got.Statement != "delete configmaps/x" || a.got.Target != "kind-1" {
		t.Fatalf("request %+v", a.got)
	}
	d.Approvals = nil
	if v := d.Hold(context.Background(), "delete configmaps/y", "cm-approval", "r"); v.Allow || !strings.Contains(v.Msg, "no approver") {
		t.Fatalf("hold without approvers: %+v", v)
	}
}
