package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/approval"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/guard"
)

// guardrails holds a guarded session's rules and its classifier state. A session with no
// guardrails has none, and pays nothing.
type guardrails struct {
	rules []guard.Rule
	s     guard.Session
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

// verdict is what the relay does with a statement.
type verdict struct {
	allow bool
	msg   string // for a refusal: what the client is told
}

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

// refusalQuery is a statement that makes the target itself answer with our error: an
// ErrorResponse with SQLSTATE 42501 followed by ReadyForQuery, in order with everything else
// the client pipelined, and with the transaction state a real error leaves. Nothing of the
// refused statement reaches the target.
func refusalQuery(msg string) []byte {
	return encodeQuery(refusalSQL(msg))
}

func encodeQuery(sql string) []byte {
	b, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	return b
}

// refusalSQL is the DO block of refusalQuery.
func refusalSQL(msg string) string {
	tag := "airlock_" + randomHex(6)
	for strings.Contains(msg, tag) {
		tag = "airlock_" + randomHex(6)
	}
	hint := "A guardrail of the gateway's policy refused this statement; ask an administrator (airlock policy explain)."
	return fmt.Sprintf("DO $%[1]s$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = $m%[1]s$%[2]s$m%[1]s$, HINT = $h%[1]s$%[3]s$h%[1]s$; END$%[1]s$",
		tag, msg, hint)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// refusalPrefix starts the message of every guardrail refusal the target raises for us.
const refusalPrefix = "statement refused by guardrail "

// tidyRefusal drops the PL/pgSQL context ("inline_code_block line 1 at RAISE") from the error
// that refusalQuery makes the target raise: it describes our DO block, not the client's
// statement.
func tidyRefusal(buf []byte, start int) []byte {
	var e pgproto3.ErrorResponse
	if e.Decode(buf[start+5:]) != nil || e.Code != codeInsufficientPriv || e.Where == "" ||
		!(strings.HasPrefix(e.Message, refusalPrefix) || strings.HasPrefix(e.Message, "statement not approved") ||
			strings.HasPrefix(e.Message, "statement needs approval")) {
		return buf
	}
	e.Where = ""
	out, err := e.Encode(buf[:start])
	if err != nil {
		return buf
	}
	return out
}
