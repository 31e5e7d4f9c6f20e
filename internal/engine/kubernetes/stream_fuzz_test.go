package kubernetes

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzFrameTap feeds arbitrary bytes, read in small pieces, through the WebSocket frame tap:
// it must never panic, and the bytes it passes on must be exactly those it read, whatever it
// makes of them.
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
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("the tap changed the bytes it passed on:\n in %x\nout %x", in, out)
		}
	})
}
