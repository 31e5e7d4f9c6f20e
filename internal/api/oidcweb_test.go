package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The callback's refusals; the whole flow with a real provider and a real browser is
// test/e2e TestUIOIDCSignIn.
func TestOIDCWebCallbackRefusals(t *testing.T) {
	f := newFixture(t)
	l := withAudit(t, f)
	flow := func(mod func(*oidcFlow)) string {
		fl := oidcFlow{Provider: "corp", State: "the-state-0123456789", Nonce: "n", Verifier: "v", Redirect: "http://x" + OIDCCallbackPath,
			Expires: time.Now().Add(time.Minute)}
		if mod != nil {
			mod(&fl)
		}
		b, _ := json.Marshal(fl)
		return f.srv.Auth.Seal(oidcSealWeb, b)
	}
	valid := flow(nil)
	tampered := []byte(valid)
	tampered[10] ^= 1
	for _, tc := range []struct {
		name, query, cookie, want string
	}{
		{"no cookie", "state=the-state-0123456789&code=c", "", "expired or was started in another browser"},
		{"tampered cookie", "state=the-state-0123456789&code=c", string(tampered), "expired or was started in another browser"},
		{"sealed for another purpose", "state=the-state-0123456789&code=c", f.srv.Auth.Seal("other", []byte(`{}`)), "expired"},
		{"expired", "state=the-state-0123456789&code=c", flow(func(fl *oidcFlow) { fl.Expires = time.Now().Add(-time.Second) }), "expired"},
		{"other state", "state=not-the-state-at-all&code=c", valid, "does not belong to this browser"},
		{"provider refused", "state=the-state-0123456789&error=access_denied", valid, "refused the sign-in: access_denied"},
		{"no code", "state=the-state-0123456789", valid, "sent no code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", OIDCCallbackPath+"?"+tc.query, nil)
			if tc.cookie != "" {
				req.AddCookie(&http.Cookie{Name: OIDCFlowCookie, Value: tc.cookie})
			}
			rw := httptest.NewRecorder()
			f.h.ServeHTTP(rw, req)
			loc := rw.Header().Get("Location")
			if rw.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/#/login?error=") {
				t.Fatalf("%d to %q, want 303 to the sign-in page", rw.Code, loc)
			}
			msg, _ := url.QueryUnescape(strings.TrimPrefix(loc, "/#/login?error="))
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want it to say %q", msg, tc.want)
			}
			for _, c := range rw.Result().Cookies() {
				if c.Name == SessionCookie {
					t.Fatalf("a refused sign-in set the session cookie")
				}
				if c.Name == OIDCFlowCookie && c.MaxAge >= 0 {
					t.Errorf("the flow cookie was not removed: %+v", c)
				}
			}
		})
	}
	got, _ := auditEntries(t, f, l)
	e := lastAudit(t, got, "login")
	if e.Outcome != "denied" || e.Detail["via"] != "web" || e.Detail["idp_error"] != "access_denied" {
		t.Errorf("the provider's refusal is not audited: %+v", e)
	}
}

func TestOIDCWebStartUnknownProvider(t *testing.T) {
	f := newFixture(t)
	rw := httptest.NewRecorder()
	f.h.ServeHTTP(rw, httptest.NewRequest("GET", "/api/v1/auth/oidc/web/start?provider=nope", nil))
	if rw.Code != 404 || !strings.Contains(rw.Body.String(), `"code"`) {
		t.Fatalf("%d %s, want a 404 JSON error", rw.Code, rw.Body)
	}
}
