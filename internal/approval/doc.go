// Package approval holds guarded statements until an approver allows or denies them, or a
// timeout denies them.
package approval
