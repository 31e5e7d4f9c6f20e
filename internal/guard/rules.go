package guard

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Actions a rule can take; ActionAllow is what Evaluate returns when no rule matches.
const (
	ActionAllow   = "allow"
	ActionWarn    = "warn"
	ActionApprove = "approve"
	ActionDeny    = "deny"
)

// Rule matches statements and says what to do with them. Within a field, any entry matches
// (OR); across fields, every non-empty field must match (AND); a rule with no Kinds, Relations
// or Classes matches every statement.
type Rule struct {
	Name string `json:"name" yaml:"name"`
	// Kinds match any of a statement's Kinds (so "delete" also catches the DELETE in a CTE).
	Kinds []string `json:"kinds,omitempty" yaml:"kinds,omitempty"`
	// Relations are globs (path.Match syntax) over "schema.name", e.g. "public.payments",
	// "audit.*", or "payments" for that name in any schema. See matchRelation.
	Relations []string `json:"relations,omitempty" yaml:"relations,omitempty"`
	// Classes match any of a statement's Classes (destructive, program, unclassifiable).
	Classes []string `json:"classes,omitempty" yaml:"classes,omitempty"`
	// Action is deny, approve or warn.
	Action string `json:"action" yaml:"action"`
}

// Validate reports a rule that cannot work: an unknown action or a malformed glob.
func (r Rule) Validate() error {
	switch r.Action {
	case ActionDeny, ActionApprove, ActionWarn:
	default:
		return fmt.Errorf("guard: rule %q: action %q is not deny, approve or warn", r.Name, r.Action)
	}
	for _, p := range r.Relations {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil {
			return fmt.Errorf("guard: rule %q: relation pattern %q: %w", r.Name, p, err)
		}
	}
	return nil
}

// Decision is the outcome of Evaluate.
type Decision struct {
	// Action is deny, approve, warn, or allow when no rule matched.
	Action string `json:"action"`
	// Rule names the rule that decided; "unclassifiable" for the built-in refusal.
	Rule string `json:"rule,omitempty"`
	// Reason is one line for the client and the recording.
	Reason string `json:"reason,omitempty"`
	// Statement is the index in Result.Statements of the statement that decided, -1 if none.
	Statement int `json:"statement"`
}

// BuiltinUnclassifiable is the rule Evaluate adds when no rule names the unclassifiable class:
// a guarded target refuses what it cannot classify.
var BuiltinUnclassifiable = Rule{Name: "unclassifiable", Classes: []string{ClassUnclassifiable}, Action: ActionDeny}

// Evaluate decides what to do with r under rules. Every statement of r is matched against
// every rule; the strongest action wins (deny > approve > warn > allow), because one string
// runs as a whole. Among the rules with that action, the most specific is named: the one with
// more non-empty fields (Kinds, Relations, Classes), then one whose matching relation pattern
// has no wildcard, then the first in the list.
//
// With no rules at all the target is not guarded and Evaluate allows. Otherwise an
// unclassifiable statement is denied by BuiltinUnclassifiable unless some rule names the class
// unclassifiable itself (for example to send it for approval instead).
func Evaluate(rules []Rule, r Result) Decision {
	best := Decision{Action: ActionAllow, Statement: -1}
	if len(rules) == 0 {
		return best
	}
	all := rules
	if !slices.ContainsFunc(rules, func(x Rule) bool { return slices.Contains(x.Classes, ClassUnclassifiable) }) {
		all = append(slices.Clip(rules), BuiltinUnclassifiable)
	}
	bestRank, bestSpec := 0, -1
	for i := range r.Statements {
		st := &r.Statements[i]
		for _, rule := range all {
			spec, why, ok := match(rule, st)
			if !ok {
				continue
			}
			rank := actionRank(rule.Action)
			if rank > bestRank || (rank == bestRank && spec > bestSpec) {
				bestRank, bestSpec = rank, spec
				best = Decision{
					Action:    rule.Action,
					Rule:      rule.Name,
					Reason:    fmt.Sprintf("rule %q (%s): statement %d %q: %s", rule.Name, rule.Action, i+1, clip(st.SQL, 80), why),
					Statement: i,
				}
			}
		}
	}
	return best
}

func actionRank(a string) int {
	switch a {
	case ActionWarn:
		return 1
	case ActionApprove:
		return 2
	case ActionDeny:
		return 3
	}
	// An unknown action is treated as deny: a typo must not open a guarded target.
	return 3
}

// match reports whether rule matches st, how specific the match is, and why.
func match(rule Rule, st *Statement) (spec int, why string, ok bool) {
	var whys []string
	if len(rule.Kinds) > 0 {
		k, found := firstCommon(rule.Kinds, st.Kinds)
		if !found {
			return 0, "", false
		}
		spec += 10
		whys = append(whys, "kind "+k)
	}
	if len(rule.Relations) > 0 {
		found, exact := false, false
		for _, p := range rule.Relations {
			for _, rel := range st.Relations {
				if !matchRelation(p, rel) {
					continue
				}
				if !found {
					whys = append(whys, "relation "+rel.String())
				}
				found = true
				exact = exact || !strings.ContainsAny(p, "*?[")
			}
		}
		if !found {
			return 0, "", false
		}
		spec += 10 + boolInt(exact)
	}
	if len(rule.Classes) > 0 {
		c, found := firstCommon(rule.Classes, st.Classes)
		if !found {
			return 0, "", false
		}
		spec += 10
		reason := c
		for _, line := range st.Reasons {
			if strings.HasPrefix(line, c+": ") {
				reason = line
				break
			}
		}
		whys = append(whys, reason)
	}
	if len(whys) == 0 {
		whys = append(whys, "matches every statement")
	}
	return spec, strings.Join(whys, "; "), true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func firstCommon(want, have []string) (string, bool) {
	for _, w := range want {
		for _, h := range have {
			if strings.EqualFold(w, h) {
				return h, true
			}
		}
	}
	return "", false
}

// matchRelation matches a glob against a relation, case-insensitively. The pattern's schema
// part (before the first dot) is matched against the relation's schema and the rest against
// its name; a pattern without a dot matches the name in any schema.
//
// A relation the statement did not qualify lives wherever the search_path says, which the
// classifier does not know. It matches a qualified pattern whose name part matches and which
// either names the relation exactly ("audit.log" matches "log": erring towards matching) or
// whose schema part matches "public" (the default search_path), so that "audit.*" does not
// match every unqualified name. A relation standing for a whole schema (Name "*") or for
// everything (Schema "*") matches any pattern that covers part of it.
func matchRelation(pattern string, rel Relation) bool {
	pattern = strings.ToLower(pattern)
	schema, name := strings.ToLower(rel.Schema), strings.ToLower(rel.Name)
	ps, pn, qualified := strings.Cut(pattern, ".")
	if !qualified {
		ps, pn = "*", pattern
	}
	if schema == "*" {
		return true
	}
	if name == "*" {
		return globMatch(ps, schema)
	}
	if !globMatch(pn, name) {
		return false
	}
	if schema == "" {
		return !strings.ContainsAny(pn, "*?[") || globMatch(ps, "public")
	}
	return globMatch(ps, schema)
}

func globMatch(p, s string) bool {
	ok, err := path.Match(p, s)
	// A malformed pattern matches (fail closed); Validate reports it at configuration time.
	return ok || err != nil
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
