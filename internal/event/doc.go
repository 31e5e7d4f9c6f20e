// Package event defines the recorded session event, its canonical encoding and its hash chain.
package event
