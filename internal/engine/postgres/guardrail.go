package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/engine/guardrail"
	"github.com/airlock-gw/airlock/internal/guard"
)

// guardrails holds a guarded session's rules and its classifier state. A session with no
// guardrails has none, and pays nothing.
type guardrails struct {
	rules []guard.Rule
	s     guard.Session
	// nonStandardStrings: the target reported standard_conforming_strings off, so a backslash
	// in a '...' string escapes the quote there, where the classifier (which parses as with it
	// on) would see the string end (see ambiguousStrings).
	nonStandardStrings atomic.Bool
}

// ambiguousStrings reports whether the target may read the quoted strings of text otherwise
// than the classifier: text holds a backslash, and standard_conforming_strings is off on the
// target, or may be by the time it parses text (requests before it are unanswered: one of them
// may turn it off, set_config('standard_conforming_strings', 'off', false)). Such text is
// unclassifiable: 'x\” ; DROP TABLE t; -- ' is one string to the classifier and a DROP to
// the target. pending is how many requests before this one await an answer.
func (g *guardrails) ambiguousStrings(text string, pending int) bool {
	return strings.IndexByte(text, '\\') >= 0 && (g.nonStandardStrings.Load() || pending > 0)
}

// ambiguousReason is the reason of the refusal of such text.
const ambiguousReason = "cannot classify: the text holds a backslash and standard_conforming_strings is (or may by then be) off on the target, where a backslash can end a string the classifier reads on"

// newGuardrails makes a session's guardrails from its policy decision; nil when there are none.
func newGuardrails(classes []string, custom []config.GuardrailRule) *guardrails {
	rules := guardrail.Rules(classes, custom)
	if len(rules) == 0 {
		return nil
	}
	return &guardrails{rules: rules}
}

// decide evaluates a classified statement, asks for approval when a rule says so, and records
// the decision as its own event (internal/engine/guardrail).
func (r *relay) decide(ctx context.Context, sql string, res guard.Result) guardrail.Verdict {
	d := guardrail.Decider{Rules: r.guard.rules, Approvals: r.e.d.Approvals, Rec: r.rec, User: r.c.id.User, Target: r.c.target}
	return d.Decide(ctx, sql, res)
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

// refusalPrefix starts the message of every guardrail refusal.
const refusalPrefix = guardrail.RefusalPrefix

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
