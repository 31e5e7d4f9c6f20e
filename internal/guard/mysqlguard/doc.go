// Package mysqlguard classifies MySQL and MariaDB statements for the guardrails with vitess's
// MySQL parser, producing the guard.Result that guard.Evaluate and policy rules work on.
package mysqlguard
