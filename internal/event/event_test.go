package event

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

func TestCanonicalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    Event
	}{
		{"empty", Event{Time: time.Unix(0, 0).UTC()}},
		{"query", Event{Session: "0193", Seq: 1, Type: Query, Offset: 1500 * time.Microsecond,
			Time: time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC), Data: []byte(`{"text":"select 1"}`)}},
		{"rows", Event{Session: "s", Seq: 1 << 40, Type: Rows, Offset: -1, Time: time.Unix(-5, 7).UTC(),
			Data: []byte(`{"count":2}`), Raw: AppendRow(AppendRow(nil, [][]byte{[]byte("a"), nil}), [][]byte{{}, {0xff}})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.e.Canonical(nil)
			got, err := DecodeCanonical(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Session != tt.e.Session || got.Seq != tt.e.Seq || got.Type != tt.e.Type || got.Offset != tt.e.Offset ||
				!got.Time.Equal(tt.e.Time) || !bytes.Equal(got.Data, tt.e.Data) || !bytes.Equal(got.Raw, tt.e.Raw) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.e)
			}
			if again := got.Canonical(nil); !bytes.Equal(again, b) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}

func TestDecodeCanonicalErrors(t *testing.T) {
	good := (&Event{Session: "s", Type: Query, Data: []byte("{}")}).Canonical(nil)
	tests := []struct {
		name    string
		b       []byte
		corrupt bool
	}{
		{"empty", nil, true},
		{"truncated", good[:len(good)-1], true},
		{"trailing byte", append(bytes.Clone(good), 0), true},
		{"future version", append([]byte{FormatVersion + 1}, good[1:]...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCanonical(tt.b)
			if err == nil {
				t.Fatal("decoded")
			}
			if errors.Is(err, ErrCorrupt) != tt.corrupt {
				t.Fatalf("err = %v, ErrCorrupt %v", err, tt.corrupt)
			}
		})
	}
}

func TestSealVerifyChain(t *testing.T) {
	var prev [32]byte
	var buf []byte
	events := make([]*Event, 3)
	for i := range events {
		e := &Event{Session: "s", Seq: uint64(i + 1), Type: Query, Time: time.Unix(int64(i), 0).UTC(), Data: []byte(`{}`)}
		buf = e.Seal(prev, buf)
		prev = e.Hash
		events[i] = e
	}
	for _, e := range events {
		if !e.Verify() {
			t.Fatalf("event %d does not verify", e.Seq)
		}
	}
	if events[1].Prev != events[0].Hash || events[0].Prev != ([32]byte{}) {
		t.Fatal("not chained")
	}
	altered := *events[1]
	altered.Data = []byte(`{"x":1}`)
	if altered.Verify() {
		t.Fatal("altered data verifies")
	}
	moved := *events[2]
	moved.Prev = events[0].Hash
	if moved.Verify() {
		t.Fatal("event re-chained past a removed one verifies")
	}
}

// TestSealHashesCanonical: Hash is SHA-256(Prev || Canonical()), however Seal gets there (it
// hashes Raw where it is, after CanonicalHead), with and without raw bytes.
func TestSealHashesCanonical(t *testing.T) {
	for _, raw := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("0123456789"), 30000)} {
		e := &Event{Session: "s", Seq: 7, Type: TerminalOutput, Offset: time.Second, Time: time.Unix(5, 6).UTC(), Data: []byte(`{"bytes":1}`), Raw: raw}
		prev := [32]byte{9, 8, 7}
		e.Seal(prev, []byte("scratch that must not matter"))
		want := sha256.Sum256(append(prev[:], e.Canonical(nil)...))
		if e.Hash != want {
			t.Fatalf("raw of %d bytes: Seal's hash is not SHA-256(prev || canonical)", len(raw))
		}
		if head := e.CanonicalHead(nil); !bytes.Equal(append(head, raw...), e.Canonical(nil)) {
			t.Fatalf("raw of %d bytes: CanonicalHead + Raw is not Canonical", len(raw))
		}
	}
}

func TestDecodeRows(t *testing.T) {
	raw := AppendRow(AppendRow(nil, [][]byte{[]byte("1"), nil, {}}), [][]byte{})
	raw = AppendRowBody(raw, []byte{0, 1, 0, 0, 0, 1, 'z'})
	var got [][]string
	err := DecodeRows(raw, func(values [][]byte) error {
		var row []string
		for _, v := range values {
			if v == nil {
				row = append(row, "NULL")
			} else {
				row = append(row, "'"+string(v)+"'")
			}
		}
		got = append(got, row)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "[['1' NULL ''] [] ['z']]"
	if s := fmtRows(got); s != want {
		t.Fatalf("rows = %s, want %s", s, want)
	}
	for _, bad := range [][]byte{
		{0, 0, 0},                         // short header
		{0, 0, 0, 9, 0, 0},                // length past the end
		{0, 0, 0, 1, 0},                   // length below the column count
		{0, 0, 0, 4, 0, 1, 0, 0},          // truncated column header
		{0, 0, 0, 6, 0, 1, 0, 0, 0, 5},    // column past the row
		{0, 0, 0, 6, 0, 1, 0x80, 0, 0, 0}, // negative length that is not NULL
		{0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0}, // trailing bytes in the row
	} {
		if err := DecodeRows(bad, func([][]byte) error { return nil }); err == nil {
			t.Errorf("DecodeRows(%x) accepted", bad)
		}
	}
}

func fmtRows(rows [][]string) string {
	s := "["
	for i, r := range rows {
		if i > 0 {
			s += " "
		}
		s += "["
		for j, v := range r {
			if j > 0 {
				s += " "
			}
			s += v
		}
		s += "]"
	}
	return s + "]"
}
