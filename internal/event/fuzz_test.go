package event

import (
	"bytes"
	"testing"
	"time"
)

func FuzzDecodeCanonical(f *testing.F) {
	e := &Event{Session: "s", Seq: 7, Type: Query, Offset: time.Second, Time: time.Unix(1, 2).UTC(), Data: []byte(`{"text":"select 1"}`)}
	f.Add(e.Canonical(nil))
	e.Raw = AppendRow(nil, [][]byte{[]byte("1"), nil})
	f.Add(e.Canonical(nil))
	f.Add((&Event{}).Canonical(nil))
	f.Add([]byte{FormatVersion})
	f.Add([]byte{2, 0, 0})

	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeCanonical(b)
		if err != nil {
			return
		}
		if got := e.Canonical(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, b)
		}
		// What decodes can be sealed and verified.
		e.Seal([32]byte{1}, nil)
		if !e.Verify() {
			t.Fatal("sealed event does not verify")
		}
	})
}

func FuzzDecodeRows(f *testing.F) {
	f.Add(AppendRow(AppendRow(nil, [][]byte{[]byte("a"), nil, {}}), nil))
	f.Add([]byte{0, 0, 0, 2, 0, 0})
	f.Add([]byte{0, 0, 0, 6, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 1})

	f.Fuzz(func(t *testing.T, raw []byte) {
		var rows [][][]byte
		err := DecodeRows(raw, func(values [][]byte) error {
			row := make([][]byte, len(values))
			for i, v := range values {
				if v != nil {
					row[i] = bytes.Clone(v)
				}
			}
			rows = append(rows, row)
			return nil
		})
		if err != nil {
			return
		}
		// Whatever decodes fully re-encodes to the same bytes.
		var got []byte
		for _, r := range rows {
			got = AppendRow(got, r)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, raw)
		}
	})
}
