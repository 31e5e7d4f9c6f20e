package ui

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	get := func(method, path string) *httptest.ResponseRecorder {
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, httptest.NewRequest(method, path, nil))
		return rw
	}
	rw := get("GET", "/")
	if rw.Code != 200 || !strings.HasPrefix(rw.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", rw.Code, rw.Header().Get("Content-Type"))
	}
	csp := rw.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self' 'wasm-unsafe-eval';", "style-src 'self';", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "'unsafe-eval'") {
		t.Errorf("CSP allows inline code or eval: %q", csp)
	}
	if rw.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}
	if !Built() && !strings.Contains(rw.Body.String(), "make ui") {
		t.Errorf("the placeholder does not say how to build the UI:\n%s", rw.Body)
	}
	if Built() && !strings.Contains(rw.Body.String(), "app.js") {
		t.Errorf("the built index.html does not load app.js:\n%s", rw.Body)
	}
	for _, p := range []string{"/nope.js", "/../ui.go", "/placeholder.html/x"} {
		if rw := get("GET", p); rw.Code != 404 {
			t.Errorf("GET %s: %d, want 404", p, rw.Code)
		}
	}
	if rw := get("POST", "/"); rw.Code != 405 {
		t.Errorf("POST /: %d, want 405", rw.Code)
	}
}
