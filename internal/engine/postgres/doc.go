// Package postgres is the PostgreSQL engine: it terminates the client's connection (TLS,
// startup, password), opens its own authenticated connection to the target with pgconn, and
// relays messages in both directions, recording each statement, its result rows and its timing
// before forwarding them.
//
// Messages are framed by this package (a type byte and a length) so that they can be forwarded
// as the bytes that arrived, without re-encoding; every message the engine inspects is decoded
// by pgproto3.
package postgres
