package approval

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/audit"
)

// Audit actions. Like event types, they are part of the stored format: never rename one.
const (
	ActionRequest  = "approval.request"
	ActionDecide   = "approval.decide"
	ActionTimeout  = "approval.timeout"
	ActionWithdraw = "approval.withdraw"
)

// DefaultTimeout is how long a request waits when Broker.Timeout is zero.
const DefaultTimeout = 5 * time.Minute

// ReasonTimedOut is the Outcome.Reason of a request nobody decided in time.
const ReasonTimedOut = "timed out"

// Errors of Decide, matched with errors.Is.
var (
	ErrUnknown = errors.New("no such approval request")
	ErrDecided = errors.New("the approval request is already decided")
	// ErrOwnRequest refuses an approver deciding a request of their own: the point of an
	// approval is a second pair of eyes.
	ErrOwnRequest = errors.New("an approval request cannot be decided by its requester")
)

// Request is a statement waiting for approval.
type Request struct {
	Session   string // session id
	User      string // the requester, who may not decide it
	Target    string
	Statement string // the statement's text
	Rule      string // the guardrail rule that asked for approval
	Reason    string // why the rule matched (statement class, relation, ...)
}

// Pending is a request waiting for a decision, as List shows it and the webhook announces it.
type Pending struct {
	ID        string    `json:"id"`
	Session   string    `json:"session"`
	User      string    `json:"user"`
	Target    string    `json:"target"`
	Statement string    `json:"statement"`
	Rule      string    `json:"rule"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Outcome is how a request ended.
type Outcome struct {
	ID       string
	Approved bool
	By       string // the approver; "" when the request timed out
	Reason   string // the approver's reason, or ReasonTimedOut
}

// Broker holds pending requests. The zero value, with Log and Audit optional, works; it is safe
// for concurrent use.
type Broker struct {
	// Timeout denies a request nobody decided within it. Default DefaultTimeout.
	Timeout time.Duration
	// Webhook, when set, receives a POST with a JSON body announcing each request (best
	// effort: a few retries, never holding the request up).
	Webhook string
	// APIURL is the base of the approve_url and deny_url the webhook announces (for example
	// http://127.0.0.1:8009); "" gives paths only.
	APIURL string
	// Audit records every request, decision, timeout and withdrawal. nil: nothing is audited.
	Audit *audit.Log
	Log   *slog.Logger // discards when nil
	// Now is the clock; time.Now when nil.
	Now        func() time.Time
	HTTPClient *http.Client // http.DefaultClient when nil (each attempt has its own deadline)

	// after starts the timeout timer and returns its channel and stop function; tests replace
	// it so that time does not have to pass. sleep waits between webhook attempts.
	after func(d time.Duration) (<-chan time.Time, func() bool)
	sleep func(ctx context.Context, d time.Duration)

	mu      sync.Mutex
	pending map[string]*pending
	closed  map[string]time.Time // decided, timed out or withdrawn ids, to tell 409 from 404
}

type pending struct {
	Pending
	decided chan Outcome // buffered: the decision is sent under mu, before the entry is removed
}

// closedRetention is how long a decided id answers ErrDecided rather than ErrUnknown.
const closedRetention = time.Hour

// Webhook delivery: attempts, the first wait between them (doubling) and each attempt's limit.
const (
	webhookAttempts = 4
	webhookBackoff  = time.Second
	webhookTimeout  = 10 * time.Second
)

func (b *Broker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Broker) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (b *Broker) timeout() time.Duration {
	if b.Timeout > 0 {
		return b.Timeout
	}
	return DefaultTimeout
}

func (b *Broker) timer(d time.Duration) (<-chan time.Time, func() bool) {
	if b.after != nil {
		return b.after(d)
	}
	t := time.NewTimer(d)
	return t.C, t.Stop
}

func (b *Broker) wait(ctx context.Context, d time.Duration) {
	if b.sleep != nil {
		b.sleep(ctx, d)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// record writes an audit entry; without an audit log it does nothing.
func (b *Broker) record(e audit.Entry) error {
	if b.Audit == nil {
		return nil
	}
	if err := b.Audit.Record(context.Background(), e); err != nil {
		b.log().Error("approval: the audit log cannot be written", "action", e.Action, "subject", e.Subject, "err", err)
		return err
	}
	return nil
}

// Request registers r, announces it and waits until it is approved, denied or timed out (a
// denial with reason ReasonTimedOut). When ctx is done first (the client left, the session
// ended) the request is withdrawn and the error is ctx's cause. A request that cannot be
// audited is not registered: the error says so and the caller must refuse the statement.
func (b *Broker) Request(ctx context.Context, r Request) (Outcome, error) {
	if err := context.Cause(ctx); err != nil {
		return Outcome{}, fmt.Errorf("approval request: %w", err)
	}
	now := b.now().UTC()
	p := &pending{Pending: Pending{ID: rand.Text(), Session: r.Session, User: r.User, Target: r.Target,
		Statement: r.Statement, Rule: r.Rule, Reason: r.Reason, CreatedAt: now, ExpiresAt: now.Add(b.timeout())},
		decided: make(chan Outcome, 1)}
	if err := b.record(audit.Entry{Action: ActionRequest, Actor: r.User, Outcome: audit.OK, Subject: p.ID,
		Detail: map[string]string{"session": r.Session, "target": r.Target, "statement": r.Statement,
			"rule": r.Rule, "reason": r.Reason, "expires_at": p.ExpiresAt.Format(time.RFC3339)}}); err != nil {
		return Outcome{}, fmt.Errorf("approval request: %w", err)
	}
	b.mu.Lock()
	if b.pending == nil {
		b.pending = map[string]*pending{}
	}
	b.pending[p.ID] = p
	b.mu.Unlock()
	expired, stop := b.timer(b.timeout())
	defer stop()
	b.log().Info("approval requested", "id", p.ID, "session", r.Session, "user", r.User, "target", r.Target, "rule", r.Rule)
	if b.Webhook != "" {
		go b.announce(b.Webhook, p.Pending)
	}

	select {
	case o := <-p.decided:
		return o, nil
	case <-expired:
		o, err := b.end(p, ActionTimeout, nil)
		return o, err
	case <-ctx.Done():
		return b.end(p, ActionWithdraw, context.Cause(ctx))
	}
}

// end closes p without a decision: a timeout (cause nil) or a withdrawal. A decision that won
// the race is returned instead.
func (b *Broker) end(p *pending, action string, cause error) (Outcome, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.pending[p.ID]; !ok {
		return <-p.decided, nil
	}
	b.close(p.ID)
	// Audited under mu so that the audit log's order is the order things happened in. An
	// audit failure is logged by record; the statement is refused either way.
	b.record(audit.Entry{Action: action, Actor: p.User, Outcome: audit.Denied, Subject: p.ID,
		Detail: map[string]string{"session": p.Session, "target": p.Target}})
	if cause != nil {
		b.log().Info("approval request withdrawn", "id", p.ID, "session", p.Session, "cause", cause)
		return Outcome{}, fmt.Errorf("approval request %s withdrawn: %w", p.ID, cause)
	}
	b.log().Info("approval request timed out", "id", p.ID, "session", p.Session, "timeout", b.timeout())
	return Outcome{ID: p.ID, Reason: ReasonTimedOut}, nil
}

// close moves id from pending to closed, forgetting closed ids past their retention. mu is held.
func (b *Broker) close(id string) {
	delete(b.pending, id)
	now := b.now()
	if b.closed == nil {
		b.closed = map[string]time.Time{}
	}
	for k, t := range b.closed {
		if now.Sub(t) > closedRetention {
			delete(b.closed, k)
		}
	}
	b.closed[id] = now
}

// List returns the pending requests, oldest first.
func (b *Broker) List() []Pending {
	b.mu.Lock()
	out := make([]Pending, 0, len(b.pending))
	for _, p := range b.pending {
		out = append(out, p.Pending)
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Decide approves or denies request id on behalf of by. It fails with ErrUnknown, ErrDecided
// or ErrOwnRequest (all audited as refusals but the unknown id), or when the decision cannot be
// audited, in which case the request stays pending.
func (b *Broker) Decide(id string, approve bool, by string, reason string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pending[id]
	if !ok {
		if _, ok := b.closed[id]; ok {
			b.record(audit.Entry{Action: ActionDecide, Actor: by, Outcome: audit.Denied, Subject: id,
				Detail: map[string]string{"error": "already decided"}})
			return fmt.Errorf("decide %s: %w", id, ErrDecided)
		}
		return fmt.Errorf("decide %s: %w", id, ErrUnknown)
	}
	if by == p.User {
		b.record(audit.Entry{Action: ActionDecide, Actor: by, Outcome: audit.Denied, Subject: id,
			Detail: map[string]string{"error": "own request", "session": p.Session}})
		return fmt.Errorf("decide %s: %w", id, ErrOwnRequest)
	}
	decision := "deny"
	if approve {
		decision = "approve"
	}
	if err := b.record(audit.Entry{Action: ActionDecide, Actor: by, Outcome: audit.OK, Subject: id,
		Detail: map[string]string{"decision": decision, "reason": reason, "requester": p.User,
			"session": p.Session, "target": p.Target}}); err != nil {
		return fmt.Errorf("decide %s: %w", id, err)
	}
	b.close(id)
	p.decided <- Outcome{ID: id, Approved: approve, By: by, Reason: reason}
	b.log().Info("approval decided", "id", id, "decision", decision, "by", by, "session", p.Session)
	return nil
}

// webhookBody is what the webhook receives.
type webhookBody struct {
	Pending
	ApproveURL string `json:"approve_url"`
	DenyURL    string `json:"deny_url"`
}

// announce POSTs p to the webhook, retrying with backoff while the request is pending. Failures
// are logged: the approver can still find the request with airlock requests list.
func (b *Broker) announce(webhook string, p Pending) {
	base := b.APIURL + "/api/v1/requests/" + url.PathEscape(p.ID)
	body, err := json.Marshal(webhookBody{Pending: p, ApproveURL: base + "/approve", DenyURL: base + "/deny"})
	if err != nil {
		b.log().Error("approval webhook: encode", "id", p.ID, "err", err)
		return
	}
	hc := b.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	backoff := webhookBackoff
	for attempt := 1; ; attempt++ {
		err := post(hc, webhook, body)
		if err == nil {
			return
		}
		if attempt == webhookAttempts || !b.isPending(p.ID) {
			b.log().Warn("approval webhook failed", "id", p.ID, "attempts", attempt, "err", err)
			return
		}
		b.log().Debug("approval webhook failed, retrying", "id", p.ID, "attempt", attempt, "err", err)
		b.wait(context.Background(), backoff)
		backoff *= 2
	}
}

func post(hc *http.Client, webhook string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, webhook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", res.Status)
	}
	return nil
}

func (b *Broker) isPending(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.pending[id]
	return ok
}
