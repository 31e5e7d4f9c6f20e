package event

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// sameAsMarshal fails t unless v's AppendJSON gives json.Marshal's bytes, appended after a
// prefix that must survive.
func sameAsMarshal(t *testing.T, v JSONAppender) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got := v.AppendJSON([]byte("prefix"))
	if !bytes.HasPrefix(got, []byte("prefix")) || !bytes.Equal(got[len("prefix"):], want) {
		t.Fatalf("AppendJSON of %#v:\n got %s\nwant prefix%s", v, got, want)
	}
}

func TestAppendJSON(t *testing.T) {
	text := "it's <b>&</b>"
	empty := ""
	for _, v := range []JSONAppender{
		QueryData{Text: "select 1", Protocol: "simple"},
		QueryData{Text: "select $1, $2", Protocol: "extended", Statement: "s1", Portal: "p",
			Params: []Value{{Null: true}, {Text: &text, OID: 25}, {Hex: "00ff", OID: 17}, {Text: &empty}, {}}},
		QueryData{Text: "é\u2028\x00\"\\\t\xff", Protocol: "simple", Params: []Value{}},
		ColumnsData{},
		ColumnsData{Columns: []Column{}},
		ColumnsData{Columns: []Column{{Name: "aid", OID: 23}, {Name: "b\"", OID: math.MaxUint32, Format: -1, Ruled: true}}},
		RowsData{}, RowsData{Count: -3}, RowsData{Count: math.MaxInt},
		ResultData{Tag: "SELECT 1", Rows: 1, DurationNS: 12345},
		ResultData{Tag: "", Rows: math.MinInt64, DurationNS: math.MaxInt64, Suspended: true},
	} {
		sameAsMarshal(t, v)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("select 1", "simple", "", "", "text", true, false, uint32(25), int16(0), int64(1), int64(5), true)
	f.Add("é\u2028<>&\x00\xff", "\"", "s", "p", "\\", false, true, uint32(0), int16(-1), int64(-1), int64(0), false)
	f.Fuzz(func(t *testing.T, text, proto, stmt, portal, s string, null, hasText bool, oid uint32, format int16, n, dur int64, flag bool) {
		v := Value{Null: null, Hex: stmt, OID: oid}
		if hasText {
			v.Text = &s
		}
		sameAsMarshal(t, QueryData{Text: text, Protocol: proto, Statement: stmt, Portal: portal, Params: []Value{v, {}}})
		sameAsMarshal(t, v)
		sameAsMarshal(t, ColumnsData{Columns: []Column{{Name: text, OID: oid, Format: format, Ruled: flag}, {Name: s}}})
		sameAsMarshal(t, RowsData{Count: int(n)})
		sameAsMarshal(t, ResultData{Tag: text, Rows: n, DurationNS: dur, Suspended: flag})
	})
}

// go test ./internal/event -run '^$' -bench AppendJSON: the statement payloads, encoding/json
// against AppendJSON.
func BenchmarkAppendJSON(b *testing.B) {
	q := QueryData{Text: "SELECT abalance FROM pgbench_accounts WHERE aid = 48305;", Protocol: "simple"}
	r := ResultData{Tag: "SELECT 1", Rows: 1, DurationNS: 81234}
	c := ColumnsData{Columns: []Column{{Name: "abalance", OID: 23}}}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(q)
			json.Marshal(c)
			json.Marshal(r)
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			q.AppendJSON(make([]byte, 0, 64))
			c.AppendJSON(make([]byte, 0, 64))
			r.AppendJSON(make([]byte, 0, 64))
		}
	})
}
