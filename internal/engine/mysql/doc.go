// Package mysql is the MySQL/MariaDB engine: it terminates the client's connection phase (TLS,
// the password or gateway token in clear inside TLS), connects to the target with
// go-mysql-org/go-mysql's client, and relays commands and results packet by packet, recording,
// masking and guarding them like the PostgreSQL engine.
package mysql
