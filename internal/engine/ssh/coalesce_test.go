package ssh

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// TestCoalesceConn: what is written arrives whole and in order, a held 4 KiB write goes out
// with the next one, alone after holdFor when none follows, and at Close.
func TestCoalesceConn(t *testing.T) {
	a, b := tcpPair(t)
	c := newCoalesceConn(a)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	chunk := func(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }
	read := func(n int) []byte {
		t.Helper()
		got := make([]byte, n)
		if _, err := io.ReadFull(b, got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	// A packet split by bufio: 4096 bytes, held until the rest comes.
	defer func(d time.Duration) { holdFor = d }(holdFor)
	holdFor = time.Hour
	want := append(chunk(bufioSize, 1), chunk(28000, 2)...)
	if n, err := c.Write(want[:bufioSize]); n != bufioSize || err != nil {
		t.Fatalf("held write: %d, %v", n, err)
	}
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := b.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the first 4 KiB of a packet went out alone: %d bytes, %v", n, err)
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Write(want[bufioSize:]); n != 28000 || err != nil {
		t.Fatalf("next write: %d, %v", n, err)
	}
	if got := read(len(want)); !bytes.Equal(got, want) {
		t.Fatal("a split packet arrived changed")
	}

	// A packet that ended at exactly 4096 bytes: the timer sends it.
	holdFor = time.Millisecond
	c.Write(chunk(bufioSize, 3))
	began := time.Now()
	if got := read(bufioSize); !bytes.Equal(got, chunk(bufioSize, 3)) {
		t.Fatal("a lone 4 KiB write arrived changed")
	}
	t.Logf("a lone 4 KiB write arrived after %s (holdFor %s)", time.Since(began), holdFor)

	// Other sizes go straight through; Close sends what is held.
	c.Write(chunk(100, 4))
	if got := read(100); !bytes.Equal(got, chunk(100, 4)) {
		t.Fatal("a small write arrived changed")
	}
	c.Write(chunk(bufioSize, 5))
	c.Close()
	if got := read(bufioSize); !bytes.Equal(got, chunk(bufioSize, 5)) {
		t.Fatal("Close lost the held write")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("write after Close succeeded")
	}
}
