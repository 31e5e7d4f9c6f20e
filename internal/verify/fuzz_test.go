package verify

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/airlock-gw/airlock/internal/event"
)

// FuzzReadExport feeds arbitrary files to the offline verifier: it must never panic, and a file
// it calls intact must be one whose every checkpoint verified with the trusted key.
func FuzzReadExport(f *testing.F) {
	key := newKey()
	c := newChain(key, 4, 2)
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	enc.Header(Header{Session: json.RawMessage(`{"id":"` + sid + `"}`)})
	for _, e := range c.events {
		enc.Event(e)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":"airlock-export","version":1,"session":{}}` + "\n" + `{"seq":1,"prev":"00","hash":"zz"}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v := &Verifier{Keys: key.keys()}
		h, err := ReadExport(bytes.NewReader(b), func(h *Header) error { v.Session = h.SessionID(); return nil },
			func(e *event.Event) error { v.Add(e); return nil })
		if err != nil {
			v.ReadError(err)
		} else {
			v.CheckHeader(&h)
		}
		r := v.Finish()
		if r.Intact && r.Signed == 0 {
			t.Fatalf("intact without a valid checkpoint: %+v", r)
		}
	})
}
