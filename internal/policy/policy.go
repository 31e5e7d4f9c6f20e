// Package policy decides, for an identity and a target, whether the session may happen and
// with which settings (recording, masking, guardrails, maximum length), and names the rules
// that said so.
//
// Precedence, in full:
//   - With no rules at all every authenticated identity reaches every target, recorded (the
//     embedded default).
//   - With rules, access is denied unless a matching rule has access allow; a matching rule
//     with access deny wins over every allow.
//   - Settings come from every matching rule that is not a deny: masking and guardrails are the
//     union (the more protective reading), max_duration is the shortest, and recording is what
//     the most specific rule that sets it says (subject user: over group:/service: over role:
//     over "*"; then target name over glob over label:/type: over "*"; then the earlier rule).
//     A session is recorded unless that rule says off.
package policy

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/target"
)

// Decision is the outcome for one identity and target.
type Decision struct {
	Allow  bool   `json:"allow"`
	Rule   string `json:"rule"`   // the rule that decided access; "default" without policies
	Reason string `json:"reason"` // human-readable
	// Rules are every rule that matched, in order; Settings come from the non-deny ones.
	Rules    []string `json:"rules,omitempty"`
	Settings Settings `json:"settings"`
}

// Settings are what an allowed session runs with.
type Settings struct {
	Record         bool                   `json:"record"`
	RecordRule     string                 `json:"record_rule,omitempty"` // the rule that set recording, "" for the default
	Masking        []string               `json:"masking,omitempty"`
	Guardrails     []string               `json:"guardrails,omitempty"` // ACTION:CLASS, normalised
	GuardrailRules []config.GuardrailRule `json:"guardrail_rules,omitempty"`
	MaxDuration    time.Duration          `json:"max_duration,omitempty"`
	LocalInfile    bool                   `json:"local_infile,omitempty"` // MySQL LOAD DATA LOCAL INFILE allowed
	// SSH is what ssh sessions may do (config.Policy.SSH); nil when no matching rule sets it,
	// which SSHAllows reads as shell, exec and sftp.
	SSH             []string `json:"ssh,omitempty"`
	SSHDenyCommands []string `json:"ssh_deny_commands,omitempty"`
	// Kubernetes are the request rules of every matching rule, in rule order (MatchKube).
	Kubernetes []config.KubernetesRule `json:"kubernetes,omitempty"`
}

// Engine evaluates rules. Its rules can be replaced while it serves (the API does).
type Engine struct {
	mu    sync.RWMutex
	rules []config.Policy
}

// New returns an engine over rules, which must have passed Validate.
func New(rules []config.Policy) *Engine {
	return &Engine{rules: slices.Clone(rules)}
}

// Rules returns a copy of the current rules.
func (e *Engine) Rules() []config.Policy {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return slices.Clone(e.rules)
}

// SetRules validates and installs new rules; sessions already running keep their decision.
func (e *Engine) SetRules(rules []config.Policy) error {
	if err := Validate(rules); err != nil {
		return err
	}
	e.mu.Lock()
	e.rules = slices.Clone(rules)
	e.mu.Unlock()
	return nil
}

// Decide evaluates the rules for id and t.
func (e *Engine) Decide(id *auth.Identity, t target.Target) Decision {
	e.mu.RLock()
	rules := e.rules
	e.mu.RUnlock()
	if len(rules) == 0 {
		return Decision{Allow: true, Rule: "default", Reason: "no policies configured: every authenticated user reaches every target",
			Settings: Settings{Record: true}}
	}
	d := Decision{Settings: Settings{Record: true}}
	var allow, deny *config.Policy
	recSpec := -1
	for i := range rules {
		r := &rules[i]
		subj := subjectSpecificity(r.Subjects, id)
		tgt := targetSpecificity(r.Targets, t)
		if subj < 0 || tgt < 0 {
			continue
		}
		d.Rules = append(d.Rules, r.Name)
		switch r.Access {
		case "deny":
			if deny == nil {
				deny = r
			}
			continue
		case "allow":
			if allow == nil {
				allow = r
			}
		}
		s := &d.Settings
		s.Masking = union(s.Masking, r.Masking)
		s.Guardrails = union(s.Guardrails, normaliseGuardrails(r.Guardrails))
		s.GuardrailRules = append(s.GuardrailRules, r.GuardrailRules...)
		s.LocalInfile = s.LocalInfile || r.LocalInfile
		s.SSH = union(s.SSH, r.SSH)
		s.SSHDenyCommands = union(s.SSHDenyCommands, r.SSHDenyCommands)
		s.Kubernetes = append(s.Kubernetes, r.Kubernetes...)
		if r.MaxDuration > 0 && (s.MaxDuration == 0 || r.MaxDuration < s.MaxDuration) {
			s.MaxDuration = r.MaxDuration
		}
		if r.Recording != "" {
			if spec := subj*10 + tgt; spec > recSpec {
				recSpec = spec
				s.Record = r.Recording == "on" || r.Recording == "true"
				s.RecordRule = r.Name
			}
		}
	}
	switch {
	case deny != nil:
		d.Allow, d.Rule = false, deny.Name
		d.Reason = fmt.Sprintf("policy %q denies %s access to %s", deny.Name, id.User, t.Name)
		d.Settings = Settings{}
	case allow != nil:
		d.Allow, d.Rule = true, allow.Name
		d.Reason = fmt.Sprintf("policy %q allows %s access to %s", allow.Name, id.User, t.Name)
	default:
		d.Reason = fmt.Sprintf("no policy allows %s access to %s", id.User, t.Name)
		d.Settings = Settings{}
	}
	return d
}

// subjectSpecificity is how precisely subjects name id: 4 user or service account, 3 group,
// 2 role, 1 "*", -1 no match.
func subjectSpecificity(subjects []string, id *auth.Identity) int {
	best := -1
	for _, s := range subjects {
		n := -1
		switch {
		case s == "user:"+id.User, s == "service:"+id.User:
			n = 4
		case s == "role:"+string(id.Role):
			n = 2
		case s == "*":
			n = 1
		default:
			if g, ok := strings.CutPrefix(s, "group:"); ok && slices.Contains(id.Groups, g) {
				n = 3
			}
		}
		best = max(best, n)
	}
	return best
}

// targetSpecificity is how precisely patterns name t: 3 exact name, 2 glob, 1 type: or
// label:, 0 "*", -1 no match.
func targetSpecificity(patterns []string, t target.Target) int {
	best := -1
	for _, p := range patterns {
		n := -1
		switch {
		case p == "*":
			n = 0
		case p == t.Name:
			n = 3
		case strings.HasPrefix(p, "type:"):
			if p[len("type:"):] == t.Type {
				n = 1
			}
		case strings.HasPrefix(p, "label:"):
			k, v, _ := strings.Cut(p[len("label:"):], "=")
			if lv, ok := t.Labels[k]; ok && lv == v {
				n = 1
			}
		default:
			if ok, _ := path.Match(p, t.Name); ok {
				n = 2
			}
		}
		best = max(best, n)
	}
	return best
}

// normaliseGuardrails writes every entry as ACTION:CLASS ("destructive" is "deny:destructive").
func normaliseGuardrails(g []string) []string {
	out := make([]string, 0, len(g))
	for _, s := range g {
		if !strings.Contains(s, ":") {
			s = "deny:" + s
		}
		out = append(out, s)
	}
	return out
}

func union(a, b []string) []string {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}

// Validate checks rules as a whole: names unique, subjects and targets well formed, known
// guardrail actions and classes, masking specs that compile (checked by the caller's
// MaskingCheck when set, to keep this package free of the masking engine).
func Validate(rules []config.Policy) error {
	seen := map[string]bool{}
	for i, r := range rules {
		if r.Name == "" {
			return fmt.Errorf("policies[%d]: name is required", i)
		}
		if seen[r.Name] {
			return fmt.Errorf("policy %q: defined twice", r.Name)
		}
		seen[r.Name] = true
		if len(r.Subjects) == 0 || len(r.Targets) == 0 {
			return fmt.Errorf("policy %q: subjects and targets are required", r.Name)
		}
		for _, s := range r.Subjects {
			if s == "*" {
				continue
			}
			kind, name, ok := strings.Cut(s, ":")
			if !ok || name == "" || !slices.Contains([]string{"user", "group", "role", "service"}, kind) {
				return fmt.Errorf("policy %q: subject %q is not user:NAME, group:NAME, role:NAME, service:NAME or *", r.Name, s)
			}
		}
		for _, p := range r.Targets {
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("policy %q: target pattern %q: %w", r.Name, p, err)
			}
		}
		switch r.Access {
		case "", "allow", "deny":
		default:
			return fmt.Errorf("policy %q: access must be allow, deny or empty, not %q", r.Name, r.Access)
		}
		switch r.Recording {
		case "", "on", "off", "true", "false":
		default:
			return fmt.Errorf("policy %q: recording must be on or off, not %q", r.Name, r.Recording)
		}
		if r.Access == "deny" && (len(r.Masking) > 0 || len(r.Guardrails) > 0 || r.Recording != "" || r.MaxDuration != 0 ||
			len(r.SSH) > 0 || len(r.SSHDenyCommands) > 0 || len(r.Kubernetes) > 0) {
			return fmt.Errorf("policy %q: a deny rule has no settings: put them in an allow rule", r.Name)
		}
		for _, g := range normaliseGuardrails(r.Guardrails) {
			action, class, _ := strings.Cut(g, ":")
			if !slices.Contains([]string{"deny", "approve", "warn"}, action) {
				return fmt.Errorf("policy %q: guardrail %q: action must be deny, approve or warn", r.Name, g)
			}
			if !slices.Contains(GuardrailClasses, class) {
				return fmt.Errorf("policy %q: guardrail %q: unknown class (known: %s)", r.Name, g, strings.Join(GuardrailClasses, ", "))
			}
		}
		for _, gr := range r.GuardrailRules {
			if gr.Name == "" || !slices.Contains([]string{"deny", "approve", "warn"}, gr.Action) {
				return fmt.Errorf("policy %q: guardrail rule %q: name and an action (deny, approve, warn) are required", r.Name, gr.Name)
			}
		}
		if r.SSH != nil && len(r.SSH) == 0 {
			// An empty list would read as "not set" (shell, exec and sftp allowed), the opposite
			// of what it looks like; a rule that means no ssh at all says access: deny.
			return fmt.Errorf("policy %q: ssh: an empty list would allow shell, exec and sftp as if ssh were not set: name the features (%s), or deny access", r.Name, strings.Join(SSHFeatures, ", "))
		}
		for _, f := range r.SSH {
			if !slices.Contains(SSHFeatures, f) {
				return fmt.Errorf("policy %q: ssh: unknown feature %q (known: %s)", r.Name, f, strings.Join(SSHFeatures, ", "))
			}
		}
		for _, p := range r.SSHDenyCommands {
			if _, err := regexp.Compile(p); err != nil {
				return fmt.Errorf("policy %q: ssh_deny_commands: %w", r.Name, err)
			}
		}
		if err := validateKube(r.Name, r.Kubernetes); err != nil {
			return err
		}
		if MaskingCheck != nil && len(r.Masking) > 0 {
			if err := MaskingCheck(r.Masking); err != nil {
				return fmt.Errorf("policy %q: masking: %w", r.Name, err)
			}
		}
	}
	return nil
}

// SSHFeatures are what a rule's ssh list can name.
var SSHFeatures = []string{"shell", "exec", "sftp", "local_forwarding", "remote_forwarding", "port_forwarding", "agent_forwarding"}

// SSHAllows reports whether an ssh session may use feature (one of SSHFeatures). Without any
// matching rule that sets ssh, shell, exec and sftp are allowed and nothing else.
func (s Settings) SSHAllows(feature string) bool {
	if s.SSH == nil {
		return feature == "shell" || feature == "exec" || feature == "sftp"
	}
	if slices.Contains(s.SSH, feature) {
		return true
	}
	return (feature == "local_forwarding" || feature == "remote_forwarding") && slices.Contains(s.SSH, "port_forwarding")
}

// GuardrailClasses are the statement classes a guardrail can name.
var GuardrailClasses = []string{"destructive", "program", "unclassifiable"}

// MaskingCheck, when set (by the gateway), validates a rule's masking specs.
var MaskingCheck func(specs []string) error

// Explain renders a decision for people: what `airlock policy explain` prints.
func (d Decision) Explain() string {
	var b strings.Builder
	if d.Allow {
		fmt.Fprintf(&b, "ALLOW (rule %s): %s\n", d.Rule, d.Reason)
	} else {
		fmt.Fprintf(&b, "DENY: %s\n", d.Reason)
	}
	if len(d.Rules) > 0 {
		rs := slices.Clone(d.Rules)
		sort.Strings(rs)
		fmt.Fprintf(&b, "matching rules: %s\n", strings.Join(rs, ", "))
	}
	if d.Allow {
		s := d.Settings
		rec := "on"
		if !s.Record {
			rec = "off"
		}
		if s.RecordRule != "" {
			rec += " (rule " + s.RecordRule + ")"
		}
		fmt.Fprintf(&b, "recording: %s\n", rec)
		if len(s.Masking) > 0 {
			fmt.Fprintf(&b, "masking: %s\n", strings.Join(s.Masking, ", "))
		}
		if len(s.Guardrails) > 0 {
			fmt.Fprintf(&b, "guardrails: %s\n", strings.Join(s.Guardrails, ", "))
		}
		if s.MaxDuration > 0 {
			fmt.Fprintf(&b, "max session duration: %s\n", s.MaxDuration)
		}
		for _, k := range s.Kubernetes {
			fmt.Fprintf(&b, "kubernetes rule %s: %s verbs=%v resources=%v namespaces=%v names=%v\n", k.Name, k.Action, k.Verbs, k.Resources, k.Namespaces, k.Names)
		}
	}
	return b.String()
}
