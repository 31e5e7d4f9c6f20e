package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api/apitest"
	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/signing"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// harness is a broker with a real audit log, a fixed clock and a timeout the test fires.
type harness struct {
	b       *Broker
	st      *apitest.Store
	log     *audit.Log
	started chan time.Duration // a Request's timer started: the request is pending
	fire    chan time.Time
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	keys, _, err := signing.Open(t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	st := apitest.New()
	l, err := audit.Open(context.Background(), &recorder.Recorder{Store: st, Signer: keys})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{st: st, log: l, started: make(chan time.Duration, 16), fire: make(chan time.Time)}
	h.b = &Broker{Audit: l, Now: func() time.Time { return t0 },
		after: func(d time.Duration) (<-chan time.Time, func() bool) {
			h.started <- d
			return h.fire, func() bool { return true }
		}}
	return h
}

type result struct {
	o   Outcome
	err error
}

// request starts a Request in the background and returns once it is pending.
func (h *harness) request(t *testing.T, ctx context.Context, r Request) (<-chan result, Pending) {
	t.Helper()
	done := make(chan result, 1)
	go func() {
		o, err := h.b.Request(ctx, r)
		done <- result{o, err}
	}()
	select {
	case <-h.started:
	case res := <-done:
		t.Fatalf("Request returned before it was pending: %+v", res)
	}
	list := h.b.List()
	if len(list) == 0 {
		t.Fatal("List is empty while a request is pending")
	}
	return done, list[len(list)-1]
}

func (h *harness) actions(t *testing.T) []string {
	t.Helper()
	var out []string
	err := h.st.Events(context.Background(), h.log.ID(), 0, func(e *event.Event) error {
		if e.Type == event.Audit {
			var d event.AuditData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return err
			}
			out = append(out, d.Action+":"+d.Outcome)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var drop = Request{Session: "s1", User: "alice", Target: "pg", Statement: "DROP TABLE payments", Rule: "no-drops", Reason: "destructive"}

func TestDecide(t *testing.T) {
	for _, tt := range []struct {
		name    string
		approve bool
	}{{"approve", true}, {"deny", false}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			done, p := h.request(t, context.Background(), drop)
			want := Pending{ID: p.ID, Session: "s1", User: "alice", Target: "pg", Statement: "DROP TABLE payments",
				Rule: "no-drops", Reason: "destructive", CreatedAt: t0, ExpiresAt: t0.Add(DefaultTimeout)}
			if p != want {
				t.Errorf("pending %+v, want %+v", p, want)
			}
			if err := h.b.Decide(p.ID, tt.approve, "root", "checked"); err != nil {
				t.Fatal(err)
			}
			res := <-done
			if res.err != nil || res.o != (Outcome{ID: p.ID, Approved: tt.approve, By: "root", Reason: "checked"}) {
				t.Fatalf("Request = %+v, %v", res.o, res.err)
			}
			if l := h.b.List(); len(l) != 0 {
				t.Errorf("still pending: %+v", l)
			}
			if err := h.b.Decide(p.ID, true, "root", ""); !errors.Is(err, ErrDecided) {
				t.Errorf("second Decide = %v, want ErrDecided", err)
			}
			if got, want := h.actions(t), []string{ActionRequest + ":ok", ActionDecide + ":ok", ActionDecide + ":denied"}; !slices.Equal(got, want) {
				t.Errorf("audit %v, want %v", got, want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	h := newHarness(t)
	h.b.Timeout = time.Minute
	done := make(chan result, 1)
	go func() {
		o, err := h.b.Request(context.Background(), drop)
		done <- result{o, err}
	}()
	if d := <-h.started; d != time.Minute {
		t.Errorf("timer for %v, want 1m", d)
	}
	p := h.b.List()[0]
	if !p.ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("expires_at %v", p.ExpiresAt)
	}
	h.fire <- t0.Add(time.Minute)
	res := <-done
	if res.err != nil || res.o != (Outcome{ID: p.ID, Reason: ReasonTimedOut}) {
		t.Fatalf("Request = %+v, %v; want a denial that timed out", res.o, res.err)
	}
	if err := h.b.Decide(p.ID, true, "root", ""); !errors.Is(err, ErrDecided) {
		t.Errorf("Decide after timeout = %v, want ErrDecided", err)
	}
	if got := h.actions(t); !slices.Contains(got, ActionTimeout+":denied") {
		t.Errorf("audit %v lacks the timeout", got)
	}
}

func TestWithdrawnWhenContextEnds(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	done, p := h.request(t, ctx, drop)
	gone := errors.New("client went away")
	cancel(gone)
	res := <-done
	if !errors.Is(res.err, gone) || res.o.Approved {
		t.Fatalf("Request = %+v, %v; want the context's cause", res.o, res.err)
	}
	if l := h.b.List(); len(l) != 0 {
		t.Errorf("still pending: %+v", l)
	}
	if err := h.b.Decide(p.ID, true, "root", ""); !errors.Is(err, ErrDecided) {
		t.Errorf("Decide after withdrawal = %v, want ErrDecided", err)
	}
	if got := h.actions(t); !slices.Contains(got, ActionWithdraw+":denied") {
		t.Errorf("audit %v lacks the withdrawal", got)
	}
	// A request whose context is already done is never registered.
	if _, err := h.b.Request(ctx, drop); !errors.Is(err, gone) {
		t.Errorf("Request with a done context = %v", err)
	}
}

func TestOwnRequestRefused(t *testing.T) {
	h := newHarness(t)
	done, p := h.request(t, context.Background(), drop)
	if err := h.b.Decide(p.ID, true, "alice", "mine"); !errors.Is(err, ErrOwnRequest) {
		t.Fatalf("self-approval = %v, want ErrOwnRequest", err)
	}
	if len(h.b.List()) != 1 {
		t.Fatal("a refused self-approval ended the request")
	}
	if err := h.b.Decide(p.ID, false, "bob", "no"); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.o.Approved || res.o.By != "bob" {
		t.Errorf("Request = %+v", res.o)
	}
	if err := h.b.Decide("nope", true, "bob", ""); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown id = %v, want ErrUnknown", err)
	}
}

func TestConcurrent(t *testing.T) {
	h := newHarness(t)
	h.b.after = nil // real timers, never reached: every request is decided
	const n = 32
	var wg sync.WaitGroup
	results := make(chan result, n)
	for i := range n {
		wg.Go(func() {
			o, err := h.b.Request(context.Background(), Request{User: fmt.Sprintf("u%d", i), Statement: "DROP TABLE t"})
			results <- result{o, err}
		})
	}
	decided := 0
	for decided < n {
		for _, p := range h.b.List() {
			if err := h.b.Decide(p.ID, decided%2 == 0, "root", ""); err == nil {
				decided++
			}
		}
	}
	wg.Wait()
	close(results)
	approved := 0
	for r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.o.Approved {
			approved++
		}
	}
	if approved != n/2 {
		t.Errorf("%d approved, want %d", approved, n/2)
	}
}

func TestWebhook(t *testing.T) {
	got := make(chan map[string]any, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Error(err)
		}
		got <- m
	}))
	defer srv.Close()
	h := newHarness(t)
	h.b.Webhook, h.b.APIURL, h.b.HTTPClient = srv.URL, "http://gw:8009", srv.Client()
	done, p := h.request(t, context.Background(), drop)
	m := <-got
	base := "http://gw:8009/api/v1/requests/" + p.ID
	want := map[string]any{"id": p.ID, "session": "s1", "user": "alice", "target": "pg", "statement": "DROP TABLE payments",
		"rule": "no-drops", "reason": "destructive", "created_at": "2026-03-01T10:00:00Z", "expires_at": "2026-03-01T10:05:00Z",
		"approve_url": base + "/approve", "deny_url": base + "/deny"}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("webhook body\n got %v\nwant %v", m, want)
	}
	h.b.Decide(p.ID, true, "root", "")
	<-done
}

func TestWebhookRetries(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	ok := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		close(ok)
	}))
	defer srv.Close()
	h := newHarness(t)
	h.b.Webhook = srv.URL
	var waits []time.Duration
	h.b.sleep = func(ctx context.Context, d time.Duration) { waits = append(waits, d) } // only the webhook goroutine
	done, p := h.request(t, context.Background(), drop)
	<-ok
	if !slices.Equal(waits, []time.Duration{time.Second, 2 * time.Second}) {
		t.Errorf("backoff %v", waits)
	}
	h.b.Decide(p.ID, false, "root", "")
	<-done
}

// A webhook that never answers holds nothing up.
func TestWebhookDownDoesNotBlock(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	h := newHarness(t)
	h.b.Webhook = srv.URL
	h.b.sleep = func(context.Context, time.Duration) {}
	done, p := h.request(t, context.Background(), drop)
	if err := h.b.Decide(p.ID, true, "root", ""); err != nil {
		t.Fatal(err)
	}
	if res := <-done; !res.o.Approved {
		t.Errorf("Request = %+v, %v", res.o, res.err)
	}

	// Nothing listening at all.
	h = newHarness(t)
	h.b.Webhook = "http://127.0.0.1:1/hook"
	h.b.sleep = func(context.Context, time.Duration) {}
	done, p = h.request(t, context.Background(), drop)
	h.b.Decide(p.ID, false, "root", "")
	if res := <-done; res.o.Approved || res.err != nil {
		t.Errorf("Request = %+v, %v", res.o, res.err)
	}
}
