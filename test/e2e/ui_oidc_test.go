package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestUIOIDCSignIn signs in to the web UI with the OpenID Provider, in a real browser: the
// sign-in page offers the provider, the browser goes through the provider's login form and
// comes back signed in with the role its groups map to; a forged answer lands back on the
// sign-in page with the reason.
func TestUIOIDCSignIn(t *testing.T) {
	p := startOP(t, "dora:dora-Pw-1:ops-admins,dba", "ed:ed-Pw-3:dba")
	b := newBrowser(t)
	b.ignoreOrigin(p.Issuer) // the provider's own pages (its missing favicon) are not ours to judge
	g := startGateway(t, gwConfig{Extra: p.gatewayConfig("")})
	base := g.apiURL()

	b.do("sign in with the provider",
		chromedp.Navigate(base+"/#/login"),
		chromedp.WaitVisible(chromedp.CSS(`a[data-method="oidc:corp"]`)),
	)
	if got := b.text(`a[data-method="oidc:corp"]`); got != "Sign in with corp" {
		t.Errorf("the provider's button says %q", got)
	}
	b.screenshot("sign-in-page")
	b.do("the provider's login form",
		chromedp.Click(chromedp.CSS(`a[data-method="oidc:corp"]`)),
		chromedp.WaitVisible(chromedp.CSS("#username")),
	)
	if u := run1(b, "provider URL", chromedp.Evaluate[string](`location.href`)); !strings.HasPrefix(u, p.Issuer) {
		t.Fatalf("the button led to %s, not the provider %s", u, p.Issuer)
	}
	b.do("log in at the provider",
		chromedp.SetValue(chromedp.CSS("#username"), "dora"),
		chromedp.SetValue(chromedp.CSS("#password"), "dora-Pw-1"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#whoami")),
	)
	if got := b.text("#whoami"); got != "dora (admin)" {
		t.Fatalf("signed in as %q, want dora (admin)", got)
	}
	b.do("an admin page", chromedp.Navigate(base+"/#/identity"), chromedp.WaitVisible(chromedp.CSS("#local-users")))
	b.waitJS("signed in through the provider", `document.querySelector('#signed-in-by').textContent.includes('identity provider corp')`)
	b.screenshot("signed-in")
	g.requireAudit(t, "login", map[string]string{"actor": "dora", "outcome": "ok", "method": "oidc", "via": "web", "provider": "corp"})
	b.signOut()

	// A second user, with no admin group: a user.
	b.do("sign in as ed",
		chromedp.Navigate(base+"/#/login"),
		chromedp.WaitVisible(chromedp.CSS(`a[data-method="oidc:corp"]`)),
		chromedp.Click(chromedp.CSS(`a[data-method="oidc:corp"]`)),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SetValue(chromedp.CSS("#username"), "ed"),
		chromedp.SetValue(chromedp.CSS("#password"), "ed-Pw-3"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#whoami")),
	)
	if got := b.text("#whoami"); got != "ed (user)" {
		t.Fatalf("signed in as %q, want ed (user)", got)
	}
	b.signOut()

	// An answer this browser did not ask for (a login CSRF attempt): back to the sign-in page.
	b.do("a forged answer",
		chromedp.Navigate(base+"/api/v1/auth/oidc/callback?state=forged-state-0123456789&code=stolen"),
		chromedp.WaitVisible(chromedp.CSS("#signin-error .error")),
	)
	if got := b.text("#signin-error"); !strings.Contains(got, "expired or was started in another browser") {
		t.Errorf("the sign-in page says %q", got)
	}
	if code, _ := g.api(t, "", "GET", "/api/v1/whoami", nil); code != 401 {
		t.Errorf("whoami without credentials: %d", code)
	}
	b.screenshot("forged-answer")
}
