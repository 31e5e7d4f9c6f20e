package verify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
)

const sid = "0192f0a0-0000-7000-8000-000000000001"

type testKey struct {
	id   string
	priv ed25519.PrivateKey
}

func newKey() testKey {
	pub, priv, _ := ed25519.GenerateKey(nil)
	return testKey{id: hex.EncodeToString(pub[:8]), priv: priv}
}

func (k testKey) keys() map[string]ed25519.PublicKey {
	return map[string]ed25519.PublicKey{k.id: k.priv.Public().(ed25519.PublicKey)}
}

// chain is a test recording: session.start, n queries with a checkpoint after every ck events,
// session.end and the final checkpoint. It seals and signs like the recorder.
type chain struct {
	key    testKey
	events []*event.Event
}

func (c *chain) add(t event.Type, data any) { c.addRaw(t, data, nil) }

func (c *chain) addRaw(t event.Type, data any, raw []byte) {
	b, ok := data.([]byte)
	if !ok {
		b, _ = json.Marshal(data)
	}
	var prev [32]byte
	if n := len(c.events); n > 0 {
		prev = c.events[n-1].Hash
	}
	e := &event.Event{Session: sid, Seq: uint64(len(c.events) + 1), Type: t, Offset: time.Duration(len(c.events)) * time.Millisecond,
		Time: time.Unix(1_800_000_000, int64(len(c.events))).UTC(), Data: b, Raw: raw}
	e.Seal(prev, nil)
	c.events = append(c.events, e)
}

func (c *chain) checkpoint(final bool) {
	last := c.events[len(c.events)-1]
	sig := ed25519.Sign(c.key.priv, event.CheckpointMessage(sid, last.Seq, last.Hash, final))
	c.add(event.Checkpoint, event.CheckpointData{Seq: last.Seq, Head: hex.EncodeToString(last.Hash[:]), KeyID: c.key.id,
		Signature: base64.StdEncoding.EncodeToString(sig), Final: final})
}

func newChain(key testKey, n, ck int) *chain {
	c := &chain{key: key}
	c.add(event.SessionStart, event.SessionStartData{User: "alice", Target: "db"})
	for i := 0; i < n; i++ {
		c.add(event.Query, event.QueryData{Text: fmt.Sprintf("select %d", i), Protocol: "simple"})
		if (i+1)%ck == 0 {
			c.checkpoint(false)
		}
	}
	c.add(event.SessionEnd, event.SessionEndData{Reason: "client_terminated"})
	c.checkpoint(true)
	return c
}

// reseal recomputes every hash from index i on: what someone who edits the file and knows the
// format (but not the key) can do.
func reseal(events []*event.Event, i int) {
	for ; i < len(events); i++ {
		var prev [32]byte
		if i > 0 {
			prev = events[i-1].Hash
		}
		events[i].Seal(prev, nil)
	}
}

func run(keys map[string]ed25519.PublicKey, events []*event.Event) Result {
	v := &Verifier{Keys: keys, Session: sid}
	for _, e := range events {
		v.Add(e)
	}
	return v.Finish()
}

func kinds(r Result) []Kind {
	var k []Kind
	for _, f := range r.Findings {
		k = append(k, f.Kind)
	}
	return k
}

func TestIntact(t *testing.T) {
	key := newKey()
	c := newChain(key, 10, 3)
	r := run(key.keys(), c.events)
	if !r.Intact || r.Events != len(c.events) || r.Checkpoints != 4 || r.Signed != uint64(len(c.events)-1) {
		t.Fatalf("intact chain: %+v", r)
	}
}

func TestTampering(t *testing.T) {
	key, other := newKey(), newKey()
	setData := func(e *event.Event, s string) { e.Data = []byte(s) }
	tests := []struct {
		name   string
		keys   map[string]ed25519.PublicKey
		tamper func([]*event.Event) []*event.Event
		want   Kind
		seq    uint64
	}{
		{"altered payload", nil, func(ev []*event.Event) []*event.Event {
			setData(ev[2], `{"text":"select 42","protocol":"simple"}`)
			return ev
		}, Altered, 3},
		{"altered and resealed", nil, func(ev []*event.Event) []*event.Event {
			setData(ev[2], `{"text":"select 42","protocol":"simple"}`)
			reseal(ev, 2)
			return ev
		}, Altered, 5}, // the next checkpoint signs the original head
		{"resealed with forged checkpoint data", nil, func(ev []*event.Event) []*event.Event {
			setData(ev[2], `{"text":"select 42","protocol":"simple"}`)
			reseal(ev, 2)
			var d event.CheckpointData
			json.Unmarshal(ev[4].Data, &d)
			d.Head = hex.EncodeToString(ev[3].Hash[:])
			ev[4].Data, _ = json.Marshal(d)
			reseal(ev, 4)
			return ev
		}, BadSignature, 5},
		{"missing event", nil, func(ev []*event.Event) []*event.Event { return slices.Delete(ev, 2, 3) }, Missing, 3},
		{"missing and renumbered", nil, func(ev []*event.Event) []*event.Event {
			ev = slices.Delete(ev, 2, 3)
			for i := 2; i < len(ev); i++ {
				ev[i].Seq = uint64(i + 1)
			}
			reseal(ev, 2)
			return ev
		}, Altered, 4},
		{"reordered", nil, func(ev []*event.Event) []*event.Event {
			ev[2], ev[3] = ev[3], ev[2]
			return ev
		}, Reordered, 3},
		{"duplicated", nil, func(ev []*event.Event) []*event.Event { return slices.Insert(ev, 3, ev[2]) }, Inserted, 3},
		{"inserted foreign event", nil, func(ev []*event.Event) []*event.Event {
			x := *ev[2]
			x.Data = []byte(`{"text":"drop table t","protocol":"simple"}`)
			x.Seal(ev[2].Prev, nil)
			ev[2] = &x
			return ev
		}, Inserted, 4},
		{"truncated before the end", nil, func(ev []*event.Event) []*event.Event { return ev[:len(ev)-2] }, Truncated, 0},
		{"final checkpoint removed", nil, func(ev []*event.Event) []*event.Event { return ev[:len(ev)-1] }, Truncated, 0},
		{"truncated at a checkpoint", nil, func(ev []*event.Event) []*event.Event { return ev[:5] }, Truncated, 5},
		{"checkpoint made final", nil, func(ev []*event.Event) []*event.Event {
			ev = ev[:5]
			var d event.CheckpointData
			json.Unmarshal(ev[4].Data, &d)
			d.Final = true
			ev[4].Data, _ = json.Marshal(d)
			reseal(ev, 4)
			return ev
		}, BadSignature, 5},
		{"appended after the end", nil, func(ev []*event.Event) []*event.Event {
			c := &chain{key: key, events: ev}
			c.add(event.Query, event.QueryData{Text: "select 1"})
			return c.events
		}, Inserted, 0},
		{"unknown key", other.keys(), func(ev []*event.Event) []*event.Event { return ev }, UnknownKey, 5},
		{"bad signature", nil, func(ev []*event.Event) []*event.Event {
			var d event.CheckpointData
			json.Unmarshal(ev[4].Data, &d)
			sig, _ := base64.StdEncoding.DecodeString(d.Signature)
			sig[0] ^= 1
			d.Signature = base64.StdEncoding.EncodeToString(sig)
			ev[4].Data, _ = json.Marshal(d)
			reseal(ev, 4)
			return ev
		}, BadSignature, 5},
		{"other session's event", nil, func(ev []*event.Event) []*event.Event {
			ev[2].Session = "someone-else"
			reseal(ev, 2)
			return ev
		}, Inserted, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChain(key, 10, 3)
			keys := tt.keys
			if keys == nil {
				keys = key.keys()
			}
			r := run(keys, tt.tamper(c.events))
			if r.Intact {
				t.Fatalf("tampered chain verified intact: %+v", r)
			}
			found := false
			for _, f := range r.Findings {
				if f.Kind == tt.want && (tt.seq == 0 || f.Seq == tt.seq) {
					found = true
				}
				if f.Message == "" {
					t.Errorf("finding without message: %+v", f)
				}
			}
			if !found {
				t.Fatalf("want a %s finding at %d, got %+v", tt.want, tt.seq, r.Findings)
			}
		})
	}
}

func TestLiveSessionNeedsNoFinalCheckpoint(t *testing.T) {
	key := newKey()
	c := newChain(key, 10, 3)
	v := &Verifier{Keys: key.keys(), Live: true}
	for _, e := range c.events[:8] {
		v.Add(e)
	}
	if r := v.Finish(); !r.Intact || r.Signed != 4 {
		t.Fatalf("live prefix: %+v", r)
	}
}

func TestExportRoundTrip(t *testing.T) {
	key := newKey()
	// Payloads that are not compact JSON, and a binary attachment, must survive byte for byte.
	c := &chain{key: key}
	c.add(event.SessionStart, event.SessionStartData{User: "alice"})
	c.add(event.Query, []byte(`{ "text": "<b>&</b>" }`))
	c.addRaw(event.Rows, event.RowsData{Count: 1}, []byte{0, 1, 2, 0xff})
	c.checkpoint(false)
	for i := 0; i < 3; i++ {
		c.add(event.Query, event.QueryData{Text: fmt.Sprintf("select %d", i)})
	}
	c.add(event.SessionEnd, event.SessionEndData{Reason: "client_terminated"})
	c.checkpoint(true)
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	if err := enc.Header(Header{Session: json.RawMessage(`{"id":"` + sid + `"}`)}); err != nil {
		t.Fatal(err)
	}
	for _, e := range c.events {
		if err := enc.Event(e); err != nil {
			t.Fatal(err)
		}
	}
	verifyExport := func(b []byte) (Result, error) {
		v := &Verifier{Keys: key.keys()}
		h, err := ReadExport(bytes.NewReader(b), nil, func(e *event.Event) error { v.Add(e); return nil })
		if err != nil {
			v.ReadError(err)
		}
		if h.SessionID() != sid {
			t.Fatalf("header session %q", h.SessionID())
		}
		return v.Finish(), err
	}
	if r, err := verifyExport(buf.Bytes()); err != nil || !r.Intact {
		t.Fatalf("export does not verify: %+v %v\n%s", r, err, buf.String())
	}
	// Any one-character edit of an event line is caught.
	lines := strings.SplitAfter(buf.String(), "\n")
	for _, edit := range []struct{ old, new string }{{`select 2`, `select 9`}, {`"seq":4,`, `"seq":5,`}, {`"offset_ns":3000000`, `"offset_ns":3000001`}, {`client_terminated`, `client_terminatee`}} {
		for i := 1; i < len(lines); i++ {
			if !strings.Contains(lines[i], edit.old) {
				continue
			}
			b := strings.Join(lines[:i], "") + strings.Replace(lines[i], edit.old, edit.new, 1) + strings.Join(lines[i+1:], "")
			if r, _ := verifyExport([]byte(b)); r.Intact {
				t.Errorf("edit %q -> %q on line %d not caught", edit.old, edit.new, i+1)
			}
			break
		}
	}
}
