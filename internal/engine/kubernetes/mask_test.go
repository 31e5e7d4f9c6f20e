package kubernetes

import (
	"io"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
)

var maskPolicy = []config.Policy{{Name: "masked", Subjects: []string{"user:alice"}, Targets: []string{"*"}, Access: "allow",
	Masking: []string{"credit_card", "email"}}}

const maskInput = "card 4111111111111111 mail alice@example.com\n"

// maskedWant is what the client and the recording must see of "you said: " + maskInput.
func maskedWant(t *testing.T) string {
	mk, err := masking.New(maskPolicy[0].Masking)
	if err != nil {
		t.Fatal(err)
	}
	out, hits := mk.MaskText(nil, []byte("you said: "+maskInput))
	if len(hits) != 2 {
		t.Fatalf("the masker finds %d values in the test's input", len(hits))
	}
	return string(out)
}

// checkMaskedOutput checks that the recorded output is what the client got, masked, with the
// detectors' hits.
func checkMaskedOutput(t *testing.T, ev []*event.Event, client string) {
	t.Helper()
	want := maskedWant(t)
	if client != want {
		t.Errorf("the client got %q, want %q", client, want)
	}
	var rec string
	hits := 0
	for _, e := range ev {
		if e.Type == event.TerminalOutput {
			rec += string(e.Raw)
			hits += strings.Count(string(e.Data), `"credit_card":1`) + strings.Count(string(e.Data), `"email":1`)
		}
		// Input is recorded as typed, as SSH's is: only what the target printed is masked.
		if e.Type != event.TerminalInput && (strings.Contains(string(e.Raw), "4111111111111111") || strings.Contains(string(e.Raw), "alice@example.com")) {
			t.Errorf("event %d (%s) holds an unmasked value: %q", e.Seq, e.Type, e.Raw)
		}
	}
	if rec != want {
		t.Errorf("recorded output %q, want %q", rec, want)
	}
	if hits != 2 {
		t.Errorf("terminal.output events count %d masked values, want 2", hits)
	}
}

func TestMaskedExecOverWebSocket(t *testing.T) {
	h := newHarness(t, maskPolicy)
	conn, br := h.websocket(t, "exec?command=sh&stdin=true&stdout=true", "v5.channel.k8s.io")
	// The card number is split between two fragments of the message.
	first := wsFrame(2, append([]byte{0}, maskInput[:12]...), true)
	first[0] &^= 0x80
	conn.Write(first)
	conn.Write(wsFrame(0, []byte(maskInput[12:]), true))
	var got string
	for {
		op, msg, err := readFrame(br)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		if op == 8 {
			break
		}
		if op != 2 || len(msg) == 0 || msg[0] != 1 {
			t.Fatalf("frame op %d %q", op, msg)
		}
		got += string(msg[1:])
	}
	conn.Close()
	checkMaskedOutput(t, h.events(t), got)
}

func TestMaskedExecOverSPDY(t *testing.T) {
	h := newHarness(t, maskPolicy)
	conn := h.spdy(t, "exec?command=cat&stdin=true&stdout=true", "v4.channel.k8s.io")
	defer conn.Close()
	errS, in, out := execStream(t, conn, "error"), execStream(t, conn, "stdin"), execStream(t, conn, "stdout")
	execStream(t, conn, "resize")
	in.Write([]byte(maskInput))
	in.Close()
	got, _ := io.ReadAll(out)
	io.ReadAll(errS)
	conn.Close()
	checkMaskedOutput(t, h.events(t), string(got))
}
