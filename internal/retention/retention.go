// Package retention is the job that expires recordings: every interval, for each target with
// retention_days > 0, it removes the ended sessions older than that which are not on legal hold.
// It is the only deletion path of the stores, and every session it removes is audited first.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

// Auditor is what the job needs of the audit log.
type Auditor interface {
	Record(ctx context.Context, e audit.Entry) error
}

// Targets lists the targets, from the config file and the API (target.Catalog).
type Targets interface {
	List(ctx context.Context) ([]target.Target, error)
}

// Job is the retention job. Fill the fields, then Start it or call RunOnce.
type Job struct {
	Store    store.Recordings
	Targets  Targets
	Audit    Auditor          // required: nothing is removed unaudited
	Log      *slog.Logger     // discards when nil
	Now      func() time.Time // default time.Now
	Interval time.Duration    // default 1h

	stop chan struct{}
	done sync.WaitGroup
}

// candidateLimit bounds the sessions listed (and audited) before one Expire call.
const candidateLimit = 100_000

func (j *Job) log() *slog.Logger {
	if j.Log != nil {
		return j.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (j *Job) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

// RunOnce runs one pass and returns how many sessions it expired. It goes on with the other
// targets when one fails, and returns every failure.
func (j *Job) RunOnce(ctx context.Context) (int, error) {
	if j.Audit == nil {
		return 0, errors.New("retention: no audit log: nothing is expired unaudited")
	}
	targets, err := j.Targets.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("retention: list targets: %w", err)
	}
	now := j.now()
	total := 0
	var errs []error
	for _, t := range targets {
		if t.RetentionDays <= 0 {
			continue
		}
		if t.Name == audit.Target {
			// The audit logs are recorded under this target name: never expire them with a
			// target that happens to share it.
			j.log().Warn("retention: a target named like the audit log's is not expired", "target", t.Name)
			continue
		}
		cutoff := now.Add(-time.Duration(t.RetentionDays) * 24 * time.Hour)
		n, err := j.expireTarget(ctx, t, cutoff)
		total += n
		if err != nil {
			errs = append(errs, err)
			j.log().Error("retention: expiring recordings failed", "target", t.Name, "expired", n, "err", err)
		} else if n > 0 {
			j.log().Info("retention: expired recordings", "target", t.Name, "expired", n, "cutoff", cutoff)
		}
	}
	return total, errors.Join(errs...)
}

// expireTarget audits every session about to expire, then expires them: when the audit log
// cannot be written, nothing is removed.
func (j *Job) expireTarget(ctx context.Context, t target.Target, cutoff time.Time) (int, error) {
	list, err := j.Store.Sessions(ctx, store.Filter{Target: t.Name, To: cutoff, Limit: candidateLimit})
	if err != nil {
		return 0, fmt.Errorf("retention: list sessions of %q: %w", t.Name, err)
	}
	entry := func(id, outcome string, extra ...string) audit.Entry {
		d := map[string]string{"target": t.Name, "retention_days": strconv.Itoa(t.RetentionDays),
			"cutoff": cutoff.UTC().Format(time.RFC3339Nano)}
		for i := 0; i+1 < len(extra); i += 2 {
			d[extra[i]] = extra[i+1]
		}
		return audit.Entry{Action: audit.ActionRecordingExpire, Actor: audit.User, Outcome: outcome, Subject: id, Detail: d}
	}
	audited := map[string]bool{}
	for _, s := range list {
		if s.EndedAt == nil || !s.EndedAt.Before(cutoff) || s.Hold {
			continue
		}
		if err := j.Audit.Record(ctx, entry(s.ID, audit.OK, "ended_at", s.EndedAt.UTC().Format(time.RFC3339Nano))); err != nil {
			return 0, fmt.Errorf("retention: audit the expiry of %q, so nothing of %q was expired: %w", s.ID, t.Name, err)
		}
		audited[s.ID] = true
	}
	if len(audited) == 0 {
		return 0, nil
	}
	expired, err := j.Store.Expire(ctx, t.Name, cutoff)
	for _, id := range expired {
		if !audited[id] {
			// More candidates than candidateLimit: audited right after, still by this pass.
			j.log().Warn("retention: expired a session not audited beforehand", "target", t.Name, "session", id)
			if aerr := j.Audit.Record(ctx, entry(id, audit.OK, "audited", "after")); aerr != nil {
				err = errors.Join(err, aerr)
			}
		}
		delete(audited, id)
	}
	if err != nil {
		// The sessions audited above but not removed stay: say so in the audit log too.
		if aerr := j.Audit.Record(ctx, entry(t.Name, audit.Failed, "error", err.Error(),
			"not_expired", strconv.Itoa(len(audited)))); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return len(expired), fmt.Errorf("retention: expire %q: %w", t.Name, err)
	}
	if len(audited) > 0 {
		// Put on hold between the listing and the expiry.
		j.log().Info("retention: sessions audited for expiry were kept (held meanwhile)", "target", t.Name, "kept", len(audited))
	}
	return len(expired), nil
}

// Start runs the job every Interval (the first pass right away) until Stop.
func (j *Job) Start() {
	interval := j.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	j.stop = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	j.done.Add(1)
	go func() {
		defer j.done.Done()
		defer cancel()
		go func() { <-j.stop; cancel() }()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			start := time.Now()
			n, err := j.RunOnce(ctx)
			j.log().Info("retention: pass done", "expired", n, "failed", err != nil, "duration", time.Since(start))
			select {
			case <-j.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Stop stops the job and waits for a running pass to end (it is cancelled).
func (j *Job) Stop() {
	if j.stop == nil {
		return
	}
	close(j.stop)
	j.done.Wait()
	j.stop = nil
}
