// Package store declares what Airlock keeps: session recordings (append-only) and the gateway's
// registered targets. Backends live in subpackages named after what they depend on.
package store
