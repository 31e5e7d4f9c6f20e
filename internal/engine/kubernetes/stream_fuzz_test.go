package kubernetes

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/airlock-gw/airlock/internal/masking"
)

// FuzzFrameTap feeds arbitrary bytes, read in small pieces, through the WebSocket frame tap:
// it must never panic, and the bytes it passes on must be exactly those it read, whatever it
// makes of them, or, where it cannot follow them (errUnrecordable), the first of them only.
func FuzzFrameTap(f *testing.F) {
	f.Add(wsFrame(2, append([]byte{0}, "ls -l\n"...), true), false, true)
	f.Add(wsFrame(2, append([]byte{1}, "total 0\n"...), false), false, false)
	f.Add(wsFrame(2, []byte(`4{"Width":80,"Height":24}`), true), true, true)
	f.Add(append(wsFrame(2, []byte{3}, false)[:1], 0x7f, 0, 0, 0, 0, 0xff, 0, 0, 0), false, false)
	first := wsFrame(2, append([]byte{0}, "frag"...), true)
	first[0] &^= 0x80
	f.Add(append(first, wsFrame(0, []byte("ment"), true)...), false, true)
	f.Fuzz(func(t *testing.T, in []byte, b64, fromClient bool) {
		s := &session{eng: &Engine{bodyLimit: 64}}
		r := &streamRecorder{s: s, id: 1, ws: true, base64: b64, terminal: true}
		dir := "target"
		if fromClient {
			dir = "client"
		}
		src := iotest.HalfReader(bytes.NewReader(in))
		out, err := io.ReadAll(&frameTap{r: r, src: src, dir: dir})
		if err != nil && !errors.Is(err, errUnrecordable) {
			t.Fatal(err)
		}
		if err != nil && !bytes.HasPrefix(in, out) || err == nil && !bytes.Equal(out, in) {
			t.Fatalf("the tap changed the bytes it passed on:\n in %x\nout %x", in, out)
		}
	})
}

// FuzzMaskedFrameTap feeds arbitrary bytes from the target, in small pieces, through the tap of
// a terminal whose output is masked (the tap re-encodes the frames): it must never panic, and
// every frame it writes must be a whole, unmasked server frame.
func FuzzMaskedFrameTap(f *testing.F) {
	f.Add(wsFrame(2, append([]byte{1}, "card 4111111111111111 end\n"...), false), false)
	f.Add(wsFrame(1, []byte("1"+base64.StdEncoding.EncodeToString([]byte("4111 1111 1111 1111"))), false), true)
	f.Add(append(wsFrame(2, []byte{3}, false), wsFrame(8, []byte{3, 0xe8}, false)...), false)
	mk, err := masking.New([]string{"credit_card", "email"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte, b64 bool) {
		s := &session{eng: &Engine{bodyLimit: 64}, masker: mk}
		r := &streamRecorder{s: s, id: 1, ws: true, base64: b64, terminal: true, masked: map[byte]*maskedOutput{}}
		var out bytes.Buffer
		r.writeTo(&out)
		tap := r.fromTarget(iotest.HalfReader(bytes.NewReader(in)))
		if _, err := io.Copy(io.Discard, tap); err != nil && !errors.Is(err, errUnrecordable) {
			t.Fatal(err)
		}
		r.endOutput() // after an unrecordable frame too: what was written must be whole frames
		for b := out.Bytes(); len(b) > 0; {
			_, payload, err := readFrame(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("the tap wrote a broken frame: %v (%x)", err, b)
			}
			n := 2 + len(payload)
			switch {
			case len(payload) >= 1<<16:
				n += 8
			case len(payload) >= 126:
				n += 2
			}
			b = b[n:]
		}
	})
}
