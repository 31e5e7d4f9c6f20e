// Package signing holds the gateway's Ed25519 keys that sign recording checkpoints.
package signing
