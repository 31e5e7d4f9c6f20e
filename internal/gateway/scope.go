package gateway

import (
	"fmt"

	"github.com/airlock-gw/airlock/internal/auth"
	"github.com/airlock-gw/airlock/internal/engine"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/target"
)

// scoped refuses a target outside an identity's scope (a service account's targets) before the
// policy is asked: the scope narrows what policy allows, it never widens it.
type scoped struct{ engine.Authorizer }

func (s scoped) Decide(id *auth.Identity, t target.Target) policy.Decision {
	if !id.InScope(t.Name) {
		return policy.Decision{Allow: false, Rule: "scope",
			Reason: fmt.Sprintf("target %q is outside the scope of %s (%v)", t.Name, id.User, id.Scope)}
	}
	return s.Authorizer.Decide(id, t)
}
