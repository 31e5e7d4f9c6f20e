package api

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/store"
)

// TestLiveEndsWhenCredentialFails: a live stream is checked against its credential while it
// lasts: revoking the caller's tokens, or the token expiring, ends a stream already open with a
// failure event, instead of letting it follow the session to its end.
func TestLiveEndsWhenCredentialFails(t *testing.T) {
	for _, tt := range []struct {
		name, query, want string
		fail              func(f *fixture, later *atomic.Int64)
	}{
		{"revoked", "", "revoked", func(f *fixture, _ *atomic.Int64) {
			if _, err := f.srv.Auth.RevokeUser(context.Background(), "alice"); err != nil {
				t.Fatal(err)
			}
		}},
		{"expired", "?format=asciicast", "expired", func(f *fixture, later *atomic.Int64) {
			later.Store(int64(13 * time.Hour)) // the token lives 12 h
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var later atomic.Int64
			f.srv.Auth.Now = func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
			rec := newRec("live1")
			f.st.Put(store.Session{ID: "live1", User: "alice", Target: "pg", Type: "postgres", StartedAt: t0}, rec.Evs)
			srv := httptest.NewServer(f.h)
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+"/api/v1/sessions/live1/live"+tt.query, nil)
			req.Header.Set("Authorization", "Bearer "+f.tokens["alice"])
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("live: %d", res.StatusCode)
			}
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(res.Body)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			// The stream is open and has sent what was recorded.
			deadline := time.After(5 * time.Second)
			for first := true; first; {
				select {
				case l := <-lines:
					first = !strings.HasPrefix(l, "data: ")
				case <-deadline:
					t.Fatal("no first event")
				}
			}
			tt.fail(f, &later)
			// The session still runs, so nothing but the credential can end the stream.
			var failure string
			deadline = time.After(5 * time.Second)
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						if !strings.Contains(failure, tt.want) {
							t.Fatalf("stream ended with failure %q, want one saying %q", failure, tt.want)
						}
						return
					}
					if l == "event: failure" {
						failure = "?"
					} else if failure == "?" && strings.HasPrefix(l, "data: ") {
						failure = l
					}
				case <-deadline:
					t.Fatalf("the stream is still open 5 s after the credential was %s (failure %q)", tt.name, failure)
				}
			}
		})
	}
}
