// Package audit keeps the gateway's audit log as a recording of its own, so it is hash-chained,
// signed, stored, verified and exported exactly like a session's.
package audit
