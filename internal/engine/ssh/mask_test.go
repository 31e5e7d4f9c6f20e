package ssh

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/masking"
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
