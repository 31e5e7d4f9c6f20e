package verify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
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

type kindSeq struct {
	Kind Kind
	Seq  uint64
}

func findings(r Result) []kindSeq {
	out := []kindSeq{}
	for _, f := range r.Findings {
		out = append(out, kindSeq{f.Kind, f.Seq})
	}
	return out
}

// TestOneFindingPerProblem: events are placed by sequence number, each problem is reported once
// where it is, both for export lines (which carry their prev) and for events read from a store
// (NoPrev: the verifier chains each event to its predecessor's stored hash).
func TestOneFindingPerProblem(t *testing.T) {
	key := newKey()
	// newChain(key, 4, 2): 1 start, 2 q0, 3 q1, 4 checkpoint, 5 q2, 6 q3, 7 checkpoint, 8 end, 9 final.
	tests := []struct {
		name   string
		tamper func([]*event.Event) []*event.Event
		want   []kindSeq
	}{
		{"intact", func(ev []*event.Event) []*event.Event { return ev }, []kindSeq{}},
		{"missing", func(ev []*event.Event) []*event.Event { return slices.Delete(ev, 4, 5) }, []kindSeq{{Missing, 5}}},
		{"two missing", func(ev []*event.Event) []*event.Event { return slices.Delete(ev, 1, 3) }, []kindSeq{{Missing, 2}}},
		{"swapped", func(ev []*event.Event) []*event.Event { ev[4], ev[5] = ev[5], ev[4]; return ev }, []kindSeq{{Reordered, 5}}},
		{"moved back", func(ev []*event.Event) []*event.Event {
			e := ev[1]
			ev = slices.Delete(ev, 1, 2)
			return slices.Insert(ev, 4, e) // after the checkpoint that signs it
		}, []kindSeq{{Reordered, 2}}},
		{"gap half filled", func(ev []*event.Event) []*event.Event {
			e := ev[2]
			ev = slices.Delete(ev, 1, 3)
			return slices.Insert(ev, 3, e) // 1 4 5 3 6 ...: 2 missing, 3 late
		}, []kindSeq{{Missing, 2}, {Reordered, 3}}},
		{"repeated", func(ev []*event.Event) []*event.Event { return slices.Insert(ev, 5, ev[4]) }, []kindSeq{{Inserted, 5}}},
		{"forgery in front of the original", func(ev []*event.Event) []*event.Event {
			x := *ev[4]
			x.Data = []byte(`{"text":"drop table t","protocol":"simple"}`)
			x.Seal(ev[3].Hash, nil)
			return slices.Insert(ev, 4, &x)
		}, []kindSeq{{Inserted, 5}}},
		{"altered before a checkpoint", func(ev []*event.Event) []*event.Event {
			ev[2].Data = []byte(`{"text":"select 9","protocol":"simple"}`)
			return ev
		}, []kindSeq{{Altered, 3}}},
	}
	for _, noPrev := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/noprev=%v", tt.name, noPrev), func(t *testing.T) {
				c := newChain(key, 4, 2)
				ev := tt.tamper(c.events)
				v := &Verifier{Keys: key.keys(), Session: sid, NoPrev: noPrev}
				for _, e := range ev {
					if noPrev {
						x := *e
						x.Prev = [32]byte{}
						e = &x
					}
					v.Add(e)
				}
				if got := findings(v.Finish()); !slices.Equal(got, tt.want) {
					t.Fatalf("findings %v, want %v", got, tt.want)
				}
			})
		}
	}
}

func TestDamagedRecords(t *testing.T) {
	key := newKey()
	c := newChain(key, 4, 2)
	// A record whose bytes changed where the hash does not cover them (its checksum): altered,
	// once; one whose content changed too: altered, once.
	v := &Verifier{Keys: key.keys(), Session: sid, NoPrev: true}
	for i, e := range c.events {
		switch i {
		case 1:
			v.AddDamaged(e, "checksum mismatch")
		case 2:
			x := *e
			x.Data = []byte(`{"text":"select 9"}`)
			v.AddDamaged(&x, "checksum mismatch")
		case 4:
			v.Undecodable(e.Hash, "does not decode: truncated")
		default:
			v.Add(e)
		}
	}
	if got, want := findings(v.Finish()), []kindSeq{{Altered, 2}, {Altered, 3}, {Altered, 5}}; !slices.Equal(got, want) {
		t.Fatalf("findings %v, want %v", got, want)
	}
}

func TestCheckHeader(t *testing.T) {
	key := newKey()
	c := &chain{key: key}
	c.add(event.SessionStart, event.SessionStartData{User: "alice", Target: "db", TargetType: "postgres", ClientAddr: "10.0.0.1:5000"})
	c.add(event.Query, event.QueryData{Text: "select 1"})
	c.add(event.SessionEnd, event.SessionEndData{Reason: "client_terminated"})
	c.checkpoint(true)
	started, ended := c.events[0].Time.Add(-time.Millisecond), c.events[2].Time
	last := c.events[len(c.events)-1]
	base := map[string]any{"id": sid, "user": "alice", "target": "db", "type": "postgres", "client_addr": "10.0.0.1:5000",
		"started_at": started, "ended_at": ended, "status": "ended", "end_reason": "client_terminated",
		"events": last.Seq, "head": hex.EncodeToString(last.Hash[:]), "hold": false}
	tests := []struct {
		name  string
		field string
		value any
		want  []kindSeq
	}{
		{"as exported", "", nil, []kindSeq{}},
		{"hold is not covered", "hold", true, []kindSeq{}},
		{"user", "user", "bob", []kindSeq{{Altered, 1}}},
		{"type", "type", "mysql", []kindSeq{{Altered, 1}}},
		{"client_addr", "client_addr", "10.0.0.2:5000", []kindSeq{{Altered, 1}}},
		{"started_at later", "started_at", c.events[0].Time.Add(time.Second), []kindSeq{{Altered, 1}}},
		{"ended_at", "ended_at", ended.Add(-time.Second), []kindSeq{{Altered, 0}}},
		{"status active", "status", "active", []kindSeq{{Altered, 0}}},
		{"still running", "ended_at", nil, []kindSeq{{Altered, 0}}},
		{"end_reason", "end_reason", "upstream_closed", []kindSeq{{Altered, 0}}},
		{"events", "events", last.Seq + 1, []kindSeq{{Truncated, last.Seq + 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := maps.Clone(base)
			if tt.field != "" {
				m[tt.field] = tt.value
			}
			if tt.name == "still running" {
				m["status"] = "active"
			}
			b, _ := json.Marshal(m)
			v := &Verifier{Keys: key.keys(), Session: sid}
			for _, e := range c.events {
				v.Add(e)
			}
			v.CheckHeader(&Header{Session: b})
			if got := findings(v.Finish()); !slices.Equal(got, tt.want) {
				t.Fatalf("findings %v, want %v", got, tt.want)
			}
		})
	}
}
