package postgres

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/airlock-gw/airlock/internal/masking"
)

func binArray(elem uint32, vals ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 1) // ndim
	b = binary.BigEndian.AppendUint32(b, 0)    // has nulls (ignored by readers)
	b = binary.BigEndian.AppendUint32(b, elem)
	b = binary.BigEndian.AppendUint32(b, uint32(len(vals)))
	b = binary.BigEndian.AppendUint32(b, 1)
	for _, v := range vals {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

type field struct {
	oid uint32
	v   []byte
}

func binRecord(fs ...field) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(fs)))
	for _, f := range fs {
		b = binary.BigEndian.AppendUint32(b, f.oid)
		if f.v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.v)))
		b = append(b, f.v...)
	}
	return b
}

func numeric(t *testing.T, s string) []byte {
	t.Helper()
	var n pgtype.Numeric
	if err := numMap().Scan(oidNumeric, pgtype.TextFormatCode, []byte(s), &n); err != nil {
		t.Fatal(err)
	}
	b, err := numMap().Encode(oidNumeric, pgtype.BinaryFormatCode, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func numericText(t *testing.T, b []byte) string {
	t.Helper()
	var n pgtype.Numeric
	if err := numMap().Scan(oidNumeric, pgtype.BinaryFormatCode, b, &n); err != nil {
		t.Fatal(err)
	}
	out, err := numMap().Encode(oidNumeric, pgtype.TextFormatCode, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestBinaryContainers(t *testing.T) {
	m, err := masking.New([]string{"credit_card", "email"})
	if err != nil {
		t.Fatal(err)
	}
	mk := newMasker(m)
	const card = "4111 1111 1111 1111"

	// numeric: the card's masked digits become zeros; other numbers are left alone.
	out, ok := mk.binaryValue(oidNumeric, numeric(t, "4111111111111111.00"), 0)
	if !ok || numericText(t, out) != "1111.00" {
		t.Fatalf("numeric card: %v %q", ok, out)
	}
	if _, ok := mk.binaryValue(oidNumeric, numeric(t, "1234567890123456"), 0); ok {
		t.Fatal("a number failing Luhn was masked")
	}
	if _, ok := mk.binaryValue(oidNumeric, numeric(t, "NaN"), 0); ok {
		t.Fatal("NaN was masked")
	}

	// text[] with a NULL: only the card element changes, lengths are rewritten.
	arr := binArray(oidText, []byte("plain"), nil, []byte(card), []byte("x@example.com"))
	out, ok = mk.binaryValue(1009, arr, 0)
	want := binArray(oidText, []byte("plain"), nil, []byte("**** **** **** 1111"), []byte("x****@****.com"))
	if !ok || !bytes.Equal(out, want) {
		t.Fatalf("text[]:\n got %q\nwant %q", out, want)
	}
	// An array with nothing to mask is left as it is.
	if _, ok := mk.binaryValue(1009, binArray(oidText, []byte("a"), []byte("b")), 0); ok {
		t.Fatal("unchanged text[] reported as masked")
	}

	// record(int4, text, numeric[]) with the card in the text and in the array.
	int4 := binary.BigEndian.AppendUint32(nil, 7)
	rec := binRecord(field{23, int4}, field{oidText, []byte("card " + card)}, field{1231, binArray(oidNumeric, numeric(t, "4111111111111111"))}, field{oidText, nil})
	out, ok = mk.binaryValue(oidRecord, rec, 0)
	if !ok {
		t.Fatal("record not masked")
	}
	if bytes.Contains(out, []byte(card)) || bytes.Contains(out, numeric(t, "4111111111111111")) {
		t.Fatalf("record still holds the card: %q", out)
	}
	wantRec := binRecord(field{23, int4}, field{oidText, []byte("card **** **** **** 1111")}, field{1231, binArray(oidNumeric, numeric(t, "1111"))}, field{oidText, nil})
	if !bytes.Equal(out, wantRec) {
		t.Fatalf("record:\n got %q\nwant %q", out, wantRec)
	}

	// Malformed framing is left alone (and does not panic).
	for _, bad := range [][]byte{arr[:len(arr)-1], append(append([]byte{}, arr...), 0), {0, 0, 0, 1}, rec[:9]} {
		if _, ok := mk.binaryValue(1009, bad, 0); ok {
			t.Errorf("malformed array %q masked", bad)
		}
		if _, ok := mk.binaryValue(oidRecord, bad, 0); ok {
			t.Errorf("malformed record %q masked", bad)
		}
	}
	// Nesting deeper than maxNesting is not walked.
	deep := binArray(oidText, []byte(card))
	for i := 0; i < maxNesting+1; i++ {
		deep = binArray(1009, deep)
	}
	if _, ok := mk.binaryValue(1009, deep, 0); ok {
		t.Error("a value nested deeper than maxNesting was walked")
	}
}

// Binary values of types the masker does not know by OID (a table's row type, citext, a domain,
// xml, tsvector ...) are masked too: walked as records or arrays when framed so, else as text.
// Types known to hold no text are left as they are.
func TestBinaryUnknownTypes(t *testing.T) {
	m, err := masking.New([]string{"credit_card", "email"})
	if err != nil {
		t.Fatal(err)
	}
	mk := newMasker(m)
	const email = "jane.roe@example.com"
	rowType := uint32(16390) // select u from users u
	int4 := binary.BigEndian.AppendUint32(nil, 7)
	row := binRecord(field{23, int4}, field{oidText, []byte(email)}, field{16400, []byte("x " + email)}) // 16400: citext
	out, ok := mk.binaryValue(rowType, row, 0)
	if want := binRecord(field{23, int4}, field{oidText, []byte("j****@****.com")}, field{16400, []byte("x j****@****.com")}); !ok || !bytes.Equal(out, want) {
		t.Fatalf("row type:\n got %v %q\nwant %q", ok, out, want)
	}
	for _, oid := range []uint32{16400, 142 /* xml */, 3614 /* tsvector: text after a header */} {
		v := []byte("<e>" + email + "</e>")
		if out, ok := mk.binaryValue(oid, v, 0); !ok || bytes.Contains(out, []byte(email)) {
			t.Errorf("type %d: %v %q", oid, ok, out)
		}
	}
	// An array of a row type.
	arr := binArray(rowType, row)
	if out, ok := mk.binaryValue(16391, arr, 0); !ok || bytes.Contains(out, []byte(email)) {
		t.Errorf("array of a row type: %v %q", ok, out)
	}
	// Types holding no text are left alone, whatever their bytes.
	for _, oid := range []uint32{23, 1184, 2950, 1007} {
		if _, ok := mk.binaryValue(oid, []byte(email), 0); ok {
			t.Errorf("type %d was masked", oid)
		}
	}
}
