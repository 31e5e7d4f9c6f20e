// Package postgres is the PostgreSQL store: sessions, events, targets and gateway state in one
// schema of a PostgreSQL database, insert-only where recordings are concerned.
package postgres
