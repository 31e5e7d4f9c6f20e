package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/api"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/policy"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/verify"
)

// signedHarness is the CLI harness with a gateway that signs, and one signed session of alice's
// with a query and rows.
func signedHarness(t *testing.T) (*harness, string) {
	t.Helper()
	h := newHarness(t)
	keys, _, err := signing.Open(t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &api.Server{Store: h.st, Auth: h.auth, Policy: &policy.Engine{}, SigningKeys: keys}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	h.url = ts.URL
	clk := t0
	r := &recorder.Recorder{Store: h.st, Signer: keys, CheckpointEvents: 3, Now: func() time.Time { return clk }}
	s, err := r.Start(context.Background(), recorder.Info{Protocol: "postgres", Target: "pg", User: "alice",
		Start: event.SessionStartData{User: "alice", Target: "pg", TargetType: "postgres", Database: "app"}})
	if err != nil {
		t.Fatal(err)
	}
	clk = clk.Add(1500 * time.Millisecond)
	s.Record(event.Query, event.QueryData{Text: "select id, name\nfrom t", Protocol: "simple"}, nil)
	s.Record(event.Columns, event.ColumnsData{Columns: []event.Column{{Name: "id", OID: 23}, {Name: "name", OID: 25}}}, nil)
	s.Record(event.Rows, event.RowsData{Count: 2}, event.AppendRow(event.AppendRow(nil, [][]byte{[]byte("1"), []byte("ann")}), [][]byte{[]byte("2"), nil}))
	clk = clk.Add(2 * time.Millisecond)
	s.Record(event.Result, event.ResultData{Tag: "SELECT 2", Rows: 2, DurationNS: 2e6}, nil)
	s.Record(event.Error, event.MessageData{Severity: "ERROR", Code: "42P01", Message: `relation "nope" does not exist`}, nil)
	clk = clk.Add(500 * time.Millisecond)
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}
	return h, s.ID()
}

func TestVerifyThroughTheGateway(t *testing.T) {
	h, id := signedHarness(t)
	h.as(t, "alice")
	code, out, errs := h.run(t, runVerify, id)
	if code != 0 || !strings.Contains(out, "intact") || strings.Contains(out, "NOT") {
		t.Fatalf("verify = %d\n%s%s", code, out, errs)
	}
	code, out, _ = h.run(t, runVerify, id, "--json")
	var r verify.Result
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || !r.Intact {
		t.Fatalf("verify --json = %d %s", code, out)
	}
	// The harness's own session s1 was never signed.
	code, out, _ = h.run(t, runVerify, "s1")
	if code != 1 || !strings.Contains(out, "NOT INTACT") || !strings.Contains(out, "truncated") {
		t.Fatalf("verify of an unsigned session = %d\n%s", code, out)
	}
	if code, _, _ := h.run(t, runVerify); code != exitUsage {
		t.Fatalf("verify without arguments = %d", code)
	}
}

func TestExportThenVerifyOffline(t *testing.T) {
	h, id := signedHarness(t)
	h.as(t, "alice")
	dir := t.TempDir()
	file := filepath.Join(dir, "s.jsonl")
	if code, out, errs := h.run(t, runExport, id, "-o", file); code != 0 {
		t.Fatalf("export = %d %s %s", code, out, errs)
	}
	// Offline: no gateway.
	delete(h.vars, "AIRLOCK_GATEWAY")
	code, out, errs := h.run(t, runVerify, "--file", file, "--public-key", file+".pub")
	if code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("verify --file = %d\n%s%s", code, out, errs)
	}
	// The signing-keys JSON works as a key file too.
	resp, err := httptestClient().Get(h.url + "/api/v1/signing-keys")
	if err != nil {
		t.Fatal(err)
	}
	res, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	os.WriteFile(filepath.Join(dir, "keys.json"), res, 0o644)
	if code, out, _ := h.run(t, runVerify, "--file", file, "--public-key", filepath.Join(dir, "keys.json")); code != 0 {
		t.Fatalf("verify with the JSON keys = %d %s", code, out)
	}
	// Without keys: a usage error, never the export's own keys.
	if code, _, _ := h.run(t, runVerify, "--file", file); code != exitUsage {
		t.Fatalf("verify --file without --public-key = %d", code)
	}
	// Any edit is caught.
	orig, _ := os.ReadFile(file)
	for _, edit := range []struct{ old, new string }{{`SELECT 2`, `SELECT 3`}, {`"raw":"AAAA`, `"raw":"AAAB`}, {`"seq":3,`, `"seq":4,`}, {`client_terminated`, `client_disconnected`}} {
		if !strings.Contains(string(orig), edit.old) {
			t.Fatalf("export lacks %q", edit.old)
		}
		os.WriteFile(file, []byte(strings.Replace(string(orig), edit.old, edit.new, 1)), 0o644)
		code, out, _ := h.run(t, runVerify, "--file", file, "--public-key", file+".pub", "--json")
		var r verify.Result
		if code != 1 || json.Unmarshal([]byte(out), &r) != nil || r.Intact || len(r.Findings) == 0 {
			t.Errorf("edit %q -> %q: verify = %d %s", edit.old, edit.new, code, out)
		}
	}
	// Removing the last line (the final checkpoint) is truncation.
	lines := strings.SplitAfter(strings.TrimSuffix(string(orig), "\n"), "\n")
	os.WriteFile(file, []byte(strings.Join(lines[:len(lines)-1], "")), 0o644)
	if code, out, _ := h.run(t, runVerify, "--file", file, "--public-key", file+".pub"); code != 1 || !strings.Contains(out, "truncated") {
		t.Errorf("truncated export: verify = %d %s", code, out)
	}
}

func TestExportAsciicast(t *testing.T) {
	h, id := signedHarness(t)
	h.as(t, "alice")
	code, out, errs := h.run(t, runExport, id, "--format", "asciicast")
	if code != 0 {
		t.Fatalf("export asciicast = %d %s", code, errs)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Scan()
	var hdr struct {
		Version, Width int
		Timestamp      int64
	}
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil || hdr.Version != 2 || hdr.Width == 0 || hdr.Timestamp != t0.Unix() {
		t.Fatalf("header %s: %v", sc.Text(), err)
	}
	var text strings.Builder
	last := -1.0
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 || ev[1] != "o" {
			t.Fatalf("event line %s: %v", sc.Text(), err)
		}
		if at := ev[0].(float64); at < last {
			t.Fatalf("time goes back at %s", sc.Text())
		} else {
			last = at
		}
		text.WriteString(ev[2].(string))
	}
	for _, want := range []string{"app=> select id, name\r\nfrom t\r\n", "id | name\r\n", "1 | ann\r\n2 | \r\n", "(2 rows)", `ERROR:  relation "nope" does not exist`, "session ended (client_terminated)"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("asciicast lacks %q:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "checkpoint") {
		t.Errorf("asciicast shows checkpoints:\n%s", text.String())
	}
	if last < 1.5 {
		t.Errorf("timing lost: last output at %.3fs", last)
	}
}

// An export that the gateway cannot finish (its store stops reading the recording part way)
// fails: exit 1, and no file at -o, not even the temporary one.
func TestExportFailsWhenTheStoreStops(t *testing.T) {
	h, id := signedHarness(t)
	h.as(t, "alice")
	h.st.EventsErr[id] = errors.New("recording is corrupt at event 5: checksum mismatch")
	for _, format := range []string{"jsonl", "asciicast"} {
		dir := t.TempDir()
		file := filepath.Join(dir, "s.out")
		code, _, errs := h.run(t, runExport, id, "--format", format, "-o", file)
		if code != exitFailure {
			t.Errorf("%s: export of a recording the store could not read to its end = %d %s", format, code, errs)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("%s: failed export left %v", format, left)
		}
	}
	// To stdout: the failure is reported, the exit status says so.
	if code, _, errs := h.run(t, runExport, id); code != exitFailure || !strings.Contains(errs, "incomplete") {
		t.Errorf("export to stdout = %d %s", code, errs)
	}
}
