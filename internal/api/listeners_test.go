package api

import (
	"encoding/json"
	"testing"
)

func TestListeners(t *testing.T) {
	f := newFixture(t)
	f.srv.Listeners = func() map[string]string {
		return map[string]string{"kubernetes": "0.0.0.0:16443", "postgres": "127.0.0.1:15432", "ssh": "[::]:2222"}
	}
	f.srv.TLSCertificate = []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	if res, _ := f.do(t, "GET", "/api/v1/listeners", "", ""); res.StatusCode != 401 {
		t.Fatalf("anonymous: %d, want 401", res.StatusCode)
	}
	res, b := f.do(t, "GET", "/api/v1/listeners", "alice", "") // httptest's Host is example.com
	var ans struct {
		Listeners   []Listener `json:"listeners"`
		Certificate string     `json:"certificate"`
	}
	if res.StatusCode != 200 || json.Unmarshal(b, &ans) != nil {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	want := []Listener{{"kubernetes", "example.com:16443"}, {"postgres", "127.0.0.1:15432"}, {"ssh", "example.com:2222"}}
	if len(ans.Listeners) != len(want) {
		t.Fatalf("listeners %+v, want %+v", ans.Listeners, want)
	}
	for i := range want {
		if ans.Listeners[i] != want[i] {
			t.Errorf("listener %d: %+v, want %+v", i, ans.Listeners[i], want[i])
		}
	}
	if ans.Certificate != string(f.srv.TLSCertificate) {
		t.Errorf("certificate %q", ans.Certificate)
	}
}
