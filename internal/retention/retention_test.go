package retention

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/target"
)

type targets []target.Target

func (t targets) List(context.Context) ([]target.Target, error) { return t, nil }

// auditLog records entries; it fails every Record while fail is set, and checks that each
// expiry is audited while its session still exists.
type auditLog struct {
	mu      sync.Mutex
	st      store.Store
	fail    bool
	entries []audit.Entry
	t       *testing.T
}

func (a *auditLog) Record(ctx context.Context, e audit.Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return errors.New("disk full")
	}
	if e.Action == audit.ActionRecordingExpire && e.Outcome == audit.OK {
		if _, err := a.st.Session(ctx, e.Subject); err != nil {
			a.t.Errorf("expiry of %s audited after the deletion: %v", e.Subject, err)
		}
	}
	a.entries = append(a.entries, e)
	return nil
}

func (a *auditLog) subjects() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.entries {
		out = append(out, e.Subject)
	}
	sort.Strings(out)
	return out
}

func TestRunOnce(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	st := apitest.New()
	put := func(id, tgt string, ended *time.Time) {
		st.Put(store.Session{ID: id, Target: tgt, StartedAt: now.Add(-400 * 24 * time.Hour), EndedAt: ended}, nil)
	}
	at := func(d time.Duration) *time.Time { x := now.Add(-d); return &x }
	day := 24 * time.Hour
	put("pg-old", "pg", at(31*day))
	put("pg-new", "pg", at(29*day))
	put("pg-held", "pg", at(31*day))
	put("pg-running", "pg", nil)
	put("my-old", "my", at(365*day)) // target without retention
	put("api-old", "api", at(8*day))
	if err := st.SetHold(context.Background(), "pg-held", true); err != nil {
		t.Fatal(err)
	}
	al := &auditLog{st: st, t: t}
	j := &Job{Store: st, Audit: al, Now: func() time.Time { return now },
		Targets: targets{{Name: "pg", RetentionDays: 30}, {Name: "my"}, {Name: "api", RetentionDays: 7, Source: "api"}}}

	// The audit log cannot be written: nothing is removed.
	al.fail = true
	if n, err := j.RunOnce(context.Background()); err == nil || n != 0 {
		t.Fatalf("RunOnce with a failing audit log = %d, %v; want 0 and an error", n, err)
	}
	if _, err := st.Session(context.Background(), "pg-old"); err != nil {
		t.Fatalf("pg-old removed although its expiry could not be audited: %v", err)
	}
	al.fail = false

	n, err := j.RunOnce(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("RunOnce = %d, %v; want 2", n, err)
	}
	if got := fmt.Sprint(al.subjects()); got != "[api-old pg-old]" {
		t.Fatalf("audited %s, want [api-old pg-old]", got)
	}
	for _, e := range al.entries {
		if e.Action != audit.ActionRecordingExpire || e.Actor != audit.User || e.Detail["target"] == "" {
			t.Fatalf("audit entry %+v", e)
		}
	}
	for id, gone := range map[string]bool{"pg-old": true, "api-old": true, "pg-new": false, "pg-held": false, "pg-running": false, "my-old": false} {
		_, err := st.Session(context.Background(), id)
		if gone != errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: Session err %v, gone want %v", id, err, gone)
		}
	}

	// A month later the recent one expires; the held and the running ones never do.
	now = now.Add(40 * day)
	if n, err := j.RunOnce(context.Background()); err != nil || n != 1 {
		t.Fatalf("second RunOnce = %d, %v; want 1", n, err)
	}
	for _, id := range []string{"pg-held", "pg-running"} {
		if _, err := st.Session(context.Background(), id); err != nil {
			t.Fatalf("%s expired: %v", id, err)
		}
	}
}

// A store that cannot expire yet (PostgreSQL) fails the pass, audited as failed; nothing is lost.
func TestExpireNotSupported(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	st := noExpire{apitest.New()}
	old := now.Add(-48 * time.Hour)
	st.Put(store.Session{ID: "s", Target: "pg", StartedAt: old, EndedAt: &old}, nil)
	al := &auditLog{st: st, t: t}
	j := &Job{Store: st, Audit: al, Now: func() time.Time { return now }, Targets: targets{{Name: "pg", RetentionDays: 1}}}
	if _, err := j.RunOnce(context.Background()); !errors.Is(err, store.ErrNotSupported) {
		t.Fatalf("RunOnce: %v, want ErrNotSupported", err)
	}
	last := al.entries[len(al.entries)-1]
	if last.Outcome != audit.Failed || last.Subject != "pg" {
		t.Fatalf("last audit entry %+v, want the failure", last)
	}
}

type noExpire struct{ *apitest.Store }

func (noExpire) Expire(context.Context, string, time.Time) ([]string, error) {
	return nil, store.ErrNotSupported
}

func TestStartStop(t *testing.T) {
	st := apitest.New()
	j := &Job{Store: st, Audit: &auditLog{st: st, t: t}, Targets: targets{}, Interval: time.Millisecond}
	j.Start()
	time.Sleep(5 * time.Millisecond)
	j.Stop()
	j.Stop() // idempotent
}
