package api

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/audit"
	"github.com/airlock-gw/airlock/internal/auth"
)

// TestWebLoginAudit: a web UI sign-in is audited as every login is: a success with the issued
// token's id (what its logout names), the role and the groups; a refusal with its reason.
func TestWebLoginAudit(t *testing.T) {
	f := newFixture(t)
	aud := f.recordAudit()
	c, _ := webLogin(t, f, "alice")
	id, err := f.srv.Auth.VerifyToken(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/api/v1/auth/session", strings.NewReader(`{"username":"alice","password":"nope"}`))
	req.Header.Set(CSRFHeader, "x")
	f.h.ServeHTTP(httptest.NewRecorder(), req)
	var ok, denied []audit.Entry
	for _, e := range aud.entries() {
		if e.Action == audit.ActionLogin && e.Actor == "alice" && e.Detail["via"] == "web" {
			if e.Outcome == audit.OK {
				ok = append(ok, e)
			} else {
				denied = append(denied, e)
			}
		}
	}
	if len(ok) != 1 || ok[0].Detail["token_id"] != id.TokenID || ok[0].Detail["groups"] != "dba" ||
		ok[0].Detail["role"] != "user" || ok[0].Detail["expires_at"] == "" {
		t.Errorf("web login entries %+v, want one with token_id %s, groups dba, role user and expires_at", ok, id.TokenID)
	}
	if len(denied) != 1 || denied[0].Detail["reason"] != auth.ReasonBadPassword {
		t.Errorf("refused web login entries %+v, want one with reason %s", denied, auth.ReasonBadPassword)
	}
}
