// Package filestore is the embedded store: one append-only file per recording, indexed in SQLite.
package filestore
