package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/filestore"
	"github.com/airlock-gw/airlock/internal/verify"
)

func setup(t *testing.T) (*filestore.Store, *signing.Keyring, *recorder.Recorder) {
	t.Helper()
	st, err := filestore.Open(t.TempDir(), filestore.Options{Fsync: filestore.FsyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, _, err := signing.Open(t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, keys, &recorder.Recorder{Store: st, Signer: keys, CheckpointEvents: 4}
}

func readAll(t *testing.T, st store.Recordings, id string) []*event.Event {
	t.Helper()
	var out []*event.Event
	err := st.Events(context.Background(), id, 0, func(e *event.Event) error {
		c := *e
		c.Data = append([]byte(nil), e.Data...)
		out = append(out, &c)
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return out
}

func entries(t *testing.T, evs []*event.Event) []event.AuditData {
	t.Helper()
	var out []event.AuditData
	for _, e := range evs {
		if e.Type != event.Audit {
			continue
		}
		var d event.AuditData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatalf("audit event %d: %v", e.Seq, err)
		}
		out = append(out, d)
	}
	return out
}

func TestLogChainedAndSigned(t *testing.T) {
	ctx := context.Background()
	st, keys, rec := setup(t)
	l, err := Open(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Action: ActionGatewayStart, Actor: User, Outcome: OK},
		{Action: ActionLogin, Actor: "mallory", Outcome: Denied, Client: "10.0.0.9:4711"},
		{Action: ActionRecordingRead, Actor: "carol", Outcome: OK, Subject: "s-1", Detail: map[string]string{"route": "events"}},
	}
	for _, e := range want {
		if err := l.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Committed: the entries are in the store before End.
	if got := entries(t, readAll(t, st, l.ID())); len(got) != len(want) {
		t.Fatalf("before End: %d entries in the store, want %d", len(got), len(want))
	}
	if err := l.End(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.End(ctx); err != nil {
		t.Fatalf("second End: %v", err)
	}
	if err := l.Record(ctx, Entry{Action: ActionLogin, Outcome: OK}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after End: %v, want ErrClosed", err)
	}

	sess, err := st.Session(ctx, l.ID())
	if err != nil {
		t.Fatal(err)
	}
	if sess.Type != Type || sess.User != User || sess.Target != Target || sess.EndedAt == nil || sess.EndReason != "gateway_shutdown" {
		t.Fatalf("index entry: %+v", sess)
	}
	evs := readAll(t, st, l.ID())
	got := entries(t, evs)
	for i, e := range want {
		g := got[i]
		if g.Action != e.Action || g.Actor != e.Actor || g.Outcome != e.Outcome || g.Subject != e.Subject ||
			g.Client != e.Client || fmt.Sprint(g.Detail) != fmt.Sprint(e.Detail) {
			t.Errorf("entry %d: got %+v, want %+v", i, g, e)
		}
	}
	v := &verify.Verifier{Keys: keys.Public(), Session: l.ID()}
	for _, e := range evs {
		v.Add(e)
	}
	v.ExpectEnd(sess.Events, sess.Head)
	if r := v.Finish(); !r.Intact || r.Checkpoints < 2 {
		t.Fatalf("verify: %+v", r)
	}
	// An edited entry is caught.
	evs[2].Data = []byte(`{"action":"login","actor":"mallory","outcome":"ok"}`)
	v = &verify.Verifier{Keys: keys.Public(), Session: l.ID()}
	for _, e := range evs {
		v.Add(e)
	}
	if r := v.Finish(); r.Intact {
		t.Fatalf("an edited entry verifies: %+v", r)
	}
}

func TestRecordConcurrent(t *testing.T) {
	ctx := context.Background()
	st, keys, rec := setup(t)
	l, err := Open(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := l.Record(ctx, Entry{Action: ActionRecordingRead, Actor: fmt.Sprint("u", w), Outcome: OK, Subject: fmt.Sprint(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.End(ctx); err != nil {
		t.Fatal(err)
	}
	evs := readAll(t, st, l.ID())
	if n := len(entries(t, evs)); n != writers*each {
		t.Fatalf("%d entries, want %d", n, writers*each)
	}
	v := &verify.Verifier{Keys: keys.Public(), Session: l.ID()}
	for _, e := range evs {
		v.Add(e)
	}
	if r := v.Finish(); !r.Intact {
		t.Fatalf("verify: %+v", r)
	}
}

func TestRecordRefusesBadEntries(t *testing.T) {
	ctx := context.Background()
	_, _, rec := setup(t)
	l, err := Open(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Entry{{Action: ActionLogin, Outcome: "maybe"}, {Outcome: OK}} {
		if err := l.Record(ctx, e); err == nil {
			t.Errorf("Record(%+v) succeeded", e)
		}
	}
}
