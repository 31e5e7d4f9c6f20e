package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
)

// The audit log's recording: one per gateway run, listed among the sessions with this type,
// user and target.
const (
	Type   = "audit"
	User   = "airlock"
	Target = "gateway"
)

// Outcomes of an entry.
const (
	OK     = "ok"
	Denied = "denied" // refused: not allowed, bad credentials, an immutable recording
	Failed = "failed" // allowed but did not succeed
)

// Actions recorded by the gateway. Like event types, they are part of the stored format: never
// rename one.
const (
	ActionLogin            = "login"
	ActionTargetPut        = "target.put"
	ActionRecordingRead    = "recording.read"
	ActionRecordingModify  = "recording.modify"
	ActionRecordingReveal  = "recording.reveal"  // an auditor or admin read the originals of masked values
	ActionRecordingHold    = "recording.hold"    // an admin put a session on legal hold or released it
	ActionRecordingExpire  = "recording.expire"  // the retention job expires a session (written before it is removed)
	ActionSessionTerminate = "session.terminate" // an admin ended a running session (with a reason the user sees)
	ActionGatewayStart     = "gateway.start"
	ActionGatewayStop      = "gateway.stop"
	ActionConfigChange     = "config.change" // the gateway started with a configuration other than the last start's
)

// ErrClosed is returned by Record once the log has ended.
var ErrClosed = errors.New("audit log closed")

// Entry is one thing worth auditing.
type Entry struct {
	Action  string
	Actor   string
	Outcome string // OK, Denied or Failed
	Subject string // session id, target name, ...
	Client  string // client address
	Detail  map[string]string
}

// Log is the audit log of one gateway run. It is safe for concurrent use.
type Log struct {
	mu    sync.Mutex
	sess  *recorder.Session
	ended bool
}

// Open starts the audit log's recording for this gateway run. The gateway calls it after crash
// recovery, which closes the previous run's log as interrupted if that run did not end it.
func Open(ctx context.Context, rec *recorder.Recorder) (*Log, error) {
	sess, err := rec.Start(ctx, recorder.Info{Protocol: Type, Target: Target, User: User,
		Start: event.SessionStartData{User: User, Role: "system", AuthMethod: "internal", Target: Target, TargetType: Type}})
	if err != nil {
		return nil, fmt.Errorf("open the audit log: %w", err)
	}
	return &Log{sess: sess}, nil
}

// ID returns the id of the audit log's recording.
func (l *Log) ID() string { return l.sess.ID() }

// Record appends e and commits it: when Record returns nil the entry is in the store. Entries
// are serialized, so their order in the chain is the order Record was called in.
func (l *Log) Record(ctx context.Context, e Entry) error {
	switch e.Outcome {
	case OK, Denied, Failed:
	default:
		return fmt.Errorf("audit %s: invalid outcome %q", e.Action, e.Outcome)
	}
	if e.Action == "" {
		return errors.New("audit: entry without an action")
	}
	d := event.AuditData{Action: e.Action, Actor: e.Actor, Outcome: e.Outcome, Subject: e.Subject,
		Client: e.Client, Detail: e.Detail}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return fmt.Errorf("audit %s: %w", e.Action, ErrClosed)
	}
	l.sess.Record(event.Audit, d, nil)
	if err := l.sess.Commit(); err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// End closes the log's recording with its final checkpoint; Record fails afterwards. It is
// idempotent.
func (l *Log) End(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return nil
	}
	l.ended = true
	if err := l.sess.End(ctx, event.SessionEndData{Reason: "gateway_shutdown"}); err != nil {
		return fmt.Errorf("end the audit log: %w", err)
	}
	return nil
}

// Actions of identity management (issue 4). A login (ActionLogin) is also the issue of the
// gateway token it returns; its detail names the token id.
const (
	ActionTokenRefresh         = "token.refresh"         // a gateway token renewed from its IdP session
	ActionTokenRevoke          = "token.revoke"          // an admin revoked a user's tokens, or a user logged out
	ActionServiceAccountCreate = "serviceaccount.create" // an admin created a service account and its API key
	ActionServiceAccountRevoke = "serviceaccount.revoke" // an admin revoked a service account's key
)

// Actions of the network-resident agents (issue 8, internal/agent).
const (
	ActionAgentCreate  = "agent.create"  // an admin registered an agent and got its join token
	ActionAgentRevoke  = "agent.revoke"  // an admin revoked an agent's token (its tunnels are dropped)
	ActionAgentConnect = "agent.connect" // an agent's tunnel was accepted, or refused (Denied)
)
