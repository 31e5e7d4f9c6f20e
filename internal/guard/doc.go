// Package guard classifies SQL statements with the PostgreSQL parser so that a guarded target
// can deny, hold for approval or flag them before they are forwarded; see docs/guardrails.md.
package guard
