// Package policy decides whether an identity may reach a target, and names the rule that said so.
package policy

import (
	"fmt"
	"path"
	"strings"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/target"
)

// Decision is the outcome for one identity and target.
type Decision struct {
	Allow  bool   `json:"allow"`
	Rule   string `json:"rule"`   // the rule that decided; "default" without policies
	Reason string `json:"reason"` // human-readable
}

// Engine evaluates rules. With no rules at all every authenticated identity reaches every
// target (the embedded default). With rules, access is denied unless a rule allows it, and a
// matching deny wins over any allow.
type Engine struct {
	Rules []config.Policy
}

// Decide evaluates the rules for id and t.
func (e *Engine) Decide(id *auth.Identity, t target.Target) Decision {
	if len(e.Rules) == 0 {
		return Decision{Allow: true, Rule: "default", Reason: "no policies configured: every authenticated user reaches every target"}
	}
	var allow *config.Policy
	for i := range e.Rules {
		r := &e.Rules[i]
		if !matchSubject(r.Subjects, id) || !matchTarget(r.Targets, t) {
			continue
		}
		if r.Access == "deny" {
			return Decision{Allow: false, Rule: r.Name, Reason: fmt.Sprintf("policy %q denies %s access to %s", r.Name, id.User, t.Name)}
		}
		if allow == nil {
			allow = r
		}
	}
	if allow != nil {
		return Decision{Allow: true, Rule: allow.Name, Reason: fmt.Sprintf("policy %q allows %s access to %s", allow.Name, id.User, t.Name)}
	}
	return Decision{Allow: false, Rule: "", Reason: fmt.Sprintf("no policy allows %s access to %s", id.User, t.Name)}
}

func matchSubject(subjects []string, id *auth.Identity) bool {
	for _, s := range subjects {
		switch {
		case s == "*":
			return true
		case s == "user:"+id.User, s == "role:"+string(id.Role):
			return true
		}
		for _, g := range id.Groups {
			if s == "group:"+g {
				return true
			}
		}
	}
	return false
}

func matchTarget(patterns []string, t target.Target) bool {
	for _, p := range patterns {
		if typ, ok := strings.CutPrefix(p, "type:"); ok {
			if typ == t.Type {
				return true
			}
			continue
		}
		if ok, _ := path.Match(p, t.Name); ok {
			return true
		}
	}
	return false
}
