// Package auth authenticates people and programs: local users with passwords, and the gateway's
// own signed tokens.
package auth
