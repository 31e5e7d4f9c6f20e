package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestUILiveSSH watches a running SSH session in the web UI's live view: the terminal as it was
// when the page opened, then each new output and a resize as they happen, HTML in the output as
// text, and the end of the session.
func TestUILiveSSH(t *testing.T) {
	requireBinary(t)
	requireSSHTools(t)
	b := newBrowser(t)
	st, g := startSSHGateway(t)
	base := g.apiURL()
	// The target is registered in the UI's form, as an admin would: an SSH host with the
	// gateway's key file and the pinned host key.
	b.signIn(base, "admin", adminPassword)
	b.do("register an SSH target",
		chromedp.Navigate(base+"/#/targets"),
		chromedp.WaitVisible(chromedp.CSS("#new-target")),
		chromedp.Click(chromedp.CSS("#new-target")),
		chromedp.WaitVisible(chromedp.CSS("#t-name")),
		chromedp.SetValue(chromedp.CSS("#t-name"), "web-ui"),
		chromedp.SetValue(chromedp.CSS("#t-type"), "ssh"),
		js(`document.querySelector('#t-type').dispatchEvent(new Event('change'))`),
		chromedp.WaitVisible(chromedp.CSS("#t-host_key")),
		chromedp.SetValue(chromedp.CSS("#t-address"), st.Addr()),
		chromedp.SetValue(chromedp.CSS("#t-username"), st.Login),
		chromedp.SetValue(chromedp.CSS("#t-private_key_file"), st.GatewayKy),
		chromedp.SetValue(chromedp.CSS("#t-host_key"), st.HostPub),
		chromedp.Click(chromedp.CSS("#save-target")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-target="web-ui"]`)),
	)
	if hidden := run1(b, "database field hidden for ssh", chromedp.Evaluate[bool](`document.querySelector('#t-database').closest('[data-types]').hidden`)); !hidden {
		t.Errorf("the form shows the database field for an SSH target")
	}
	if code, body := g.api(t, g.adminToken(t), "GET", "/api/v1/targets/web-ui", nil); code != 200 || !strings.Contains(string(body), `"type":"ssh"`) || !strings.Contains(string(body), `"host_key"`) {
		t.Fatalf("the SSH target as registered: %d %s", code, body)
	}

	c := newSSHClient(t, g)
	tm := newTmux(t, t.TempDir(), c.env())
	sshCmd := strings.Join(append(c.sshCommand("alice:web-ui", st.AliceKey), "-tt", "-p", fmt.Sprint(c.port), "127.0.0.1"), " ")
	tm.run("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", sshCmd+"; echo SSH-EXITED-$?; sleep 60")
	tm.send("export PS1='PROMPT> '", "Enter")
	tm.waitFor("PROMPT> ")
	tm.send("echo before-$((20+1))", "Enter")
	tm.waitFor("before-21")

	// The running session, as the API lists it.
	var id string
	for deadline := time.Now().Add(20 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, body := g.api(t, g.adminToken(t), "GET", "/api/v1/sessions?status=active&user=alice", nil)
		var res struct {
			Sessions []struct{ ID, Target, Type string }
		}
		if code == 200 && json.Unmarshal(body, &res) == nil {
			for _, s := range res.Sessions {
				if s.Target == "web-ui" {
					id = s.ID
				}
			}
		}
	}
	if id == "" {
		t.Fatal("the running SSH session is not listed as active")
	}

	b.do("open the live view", chromedp.Navigate(base+"/#/live/"+id), chromedp.WaitVisible(chromedp.CSS("#live-screen")))
	b.waitJS("the screen so far", `document.querySelector('#live-screen').textContent.includes('before-21')`)
	tm.send("echo live-$((6*7))", "Enter")
	b.waitJS("new output as it happens", `document.querySelector('#live-screen').textContent.includes('live-42')`)
	tm.send(`printf '<i>it''al</i><script>window.__pwned=7</script>\n'`, "Enter")
	b.waitJS("HTML as text", `document.querySelector('#live-screen').textContent.includes('<i>ital</i><script>')`)
	if n := run1(b, "no injected elements", chromedp.Evaluate[int](`document.querySelectorAll('#live-screen i, #live-screen script').length + (window.__pwned ? 100 : 0)`)); n != 0 {
		t.Errorf("terminal output became markup or ran (%d)", n)
	}
	tm.run("resize-window", "-t", "main", "-x", "120", "-y", "40")
	tm.send("clear; stty size", "Enter")
	b.waitJS("the resize and stty's answer", `document.querySelector('#live-screen').textContent.includes('40 120')`)
	b.screenshot("live-ssh")
	tm.send("exit 0", "Enter")
	tm.waitFor("SSH-EXITED-0")
	b.waitJS("the end", `document.querySelector('#live-status').dataset.ended === 'true'`)
	if got := b.text("#live-status"); !strings.Contains(got, "Session ended") {
		t.Errorf("status after the end: %q", got)
	}
}
