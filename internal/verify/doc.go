// Package verify checks a recording: it recomputes the hash chain, checks the signed
// checkpoints and reports every problem as a typed finding.
package verify
