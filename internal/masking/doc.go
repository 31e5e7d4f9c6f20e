// Package masking finds sensitive values (card numbers, emails, secrets, ...) in the bytes a
// target sends back and replaces them before they reach the client; see docs/masking.md.
package masking
