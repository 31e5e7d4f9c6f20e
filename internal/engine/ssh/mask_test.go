package ssh

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/recorder"
)

// fakeChannel is the client's side of a channel: it keeps what the gateway writes.
type fakeChannel struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (f *fakeChannel) Read([]byte) (int, error) { return 0, io.EOF }
func (f *fakeChannel) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Write(p)
}
func (f *fakeChannel) Close() error      { return nil }
func (f *fakeChannel) CloseWrite() error { return nil }
func (f *fakeChannel) SendRequest(string, bool, []byte) (bool, error) {
	return true, nil
}
func (f *fakeChannel) Stderr() io.ReadWriter { return f }
func (f *fakeChannel) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.String()
}

func testChannel(t *testing.T, specs ...string) (*channel, *fakeChannel) {
	t.Helper()
	mk, err := masking.New(specs)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{masker: mk}
	fc := &fakeChannel{}
	ch := &channel{s: s, id: 1, cc: fc}
	ch.out = newMaskStream(ch, "")
	return ch, fc
}

// TestMaskAcrossReads: a card number split between two reads of the target's output, at every
// byte, reaches the client masked; so does one that arrives a byte at a time.
func TestMaskAcrossReads(t *testing.T) {
	text := "card 4111 1111 1111 1111 exp 12/29\r\nnext 5555555555554444\r\n"
	mk, _ := masking.New([]string{masking.CreditCard})
	want, _ := mk.MaskText(nil, []byte(text))
	for k := 0; k <= len(text); k++ {
		ch, fc := testChannel(t, masking.CreditCard)
		ch.out.write([]byte(text[:k]))
		ch.out.write([]byte(text[k:]))
		ch.out.end()
		if got := fc.String(); got != string(want) {
			t.Errorf("split at %d (%q | %q): the client got %q, want %q", k, text[:k], text[k:], got, want)
		}
	}
	ch, fc := testChannel(t, masking.CreditCard)
	for i := range len(text) {
		ch.out.write([]byte(text[i : i+1]))
	}
	ch.out.end()
	if got := fc.String(); got != string(want) {
		t.Errorf("byte by byte: the client got %q, want %q", got, want)
	}
	if strings.Contains(fc.String(), "4111 1111") {
		t.Error("the card number reached the client")
	}
}

// TestMaskHeldTailFlushed: a held-back tail reaches the client when no more output comes (the
// timer), and at the end of the stream.
func TestMaskHeldTailFlushed(t *testing.T) {
	ch, fc := testChannel(t, masking.CreditCard)
	ch.out.write([]byte("total 4111"))
	if got := fc.String(); got != "total " {
		t.Fatalf("before the timer the client got %q, want %q (the digits held back)", got, "total ")
	}
	deadline := time.Now().Add(10 * time.Second)
	for fc.String() != "total 4111" {
		if time.Now().After(deadline) {
			t.Fatalf("the held tail was never sent: the client got %q", fc.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	ch.out.write([]byte(" and 12"))
	ch.out.end()
	if got := fc.String(); got != "total 4111 and 12" {
		t.Fatalf("after the end the client got %q", got)
	}
}

// TestMaskEchoNotHeld: on a terminal, the echo of a typed digit is sent at once, while the same
// digit printed by a program is held back.
func TestMaskEchoNotHeld(t *testing.T) {
	ch, fc := testChannel(t, masking.CreditCard, masking.Email)
	ch.pty.Store(true)
	// Typed bytes whose echo differs (Enter comes back as \r\n) do not stand in the way.
	ch.typed([]byte("ready\r"))
	ch.out.write([]byte("ready\r\n"))
	fc.out.Reset()
	for _, k := range []string{"4", "1", "a", "b"} {
		before := fc.String()
		ch.typed([]byte(k))
		ch.out.write([]byte(k))
		if got := fc.String(); got != before+k {
			t.Fatalf("typed %q: the client got %q, want %q", k, got, before+k)
		}
	}
	ch.out.write([]byte("\r\n4"))
	if got := fc.String(); got != "41ab\r\n" {
		t.Fatalf("output that was not typed: the client got %q, want the digit held", got)
	}
	ch.out.end()
}

// reqChannel is a fakeChannel that also keeps the requests the gateway sends the client.
type reqChannel struct {
	fakeChannel
	reqs []string
}

func (r *reqChannel) SendRequest(name string, _ bool, payload []byte) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "exit-status" && len(payload) == 4 {
		name += fmt.Sprintf(" %d", binary.BigEndian.Uint32(payload))
	}
	r.reqs = append(r.reqs, name)
	return true, nil
}

// TestExitAfterRecordingFailure: a channel whose program ends while the session fails on its
// recording (output cut short, not recorded and not forwarded) does not pass on the target's
// exit status 0, which told the client all went well; it gets the reason and status 255, even
// when the channel closes before run's abort reaches it.
func TestExitAfterRecordingFailure(t *testing.T) {
	s := &session{failed: make(chan endState, 1)}
	cc := &reqChannel{}
	ch := &channel{s: s, id: 1, cc: cc}
	s.fail(endState{reason: "error", err: fmt.Errorf("%w: disk full", recorder.ErrUnavailable)})
	ch.sendExits([]*ssh.Request{{Type: "exit-status", Payload: ssh.Marshal(struct{ Status uint32 }{0})}})
	if got := strings.Join(cc.reqs, ","); got != "exit-status 255" {
		t.Errorf("the client got %q, want exit-status 255 only", got)
	}
	if out := cc.String(); !strings.Contains(out, "airlock: recording failed, so the gateway ends this session") {
		t.Errorf("the client was told %q, not why the session ends", out)
	}
	// run's abort comes after: it says nothing more.
	ch.out, ch.errOut = newMaskStream(ch, ""), newMaskStream(ch, "stderr")
	ch.uc = cc
	ch.abort("airlock: late")
	if strings.Contains(cc.String(), "late") || len(cc.reqs) != 1 {
		t.Errorf("abort wrote again: %q, %q", cc.String(), cc.reqs)
	}

	// Without a failure the target's status passes as it is.
	s2 := &session{failed: make(chan endState, 1)}
	cc2 := &reqChannel{}
	(&channel{s: s2, id: 1, cc: cc2}).sendExits([]*ssh.Request{{Type: "exit-status", Payload: ssh.Marshal(struct{ Status uint32 }{3})}})
	if got := strings.Join(cc2.reqs, ","); got != "exit-status 3" || cc2.String() != "" {
		t.Errorf("the client got %q and %q, want exit-status 3 alone", got, cc2.String())
	}
}
