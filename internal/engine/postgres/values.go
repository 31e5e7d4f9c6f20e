package postgres

import (
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/airlock-gw/airlock/internal/event"
)

// valueRenderer turns a bound parameter into something an auditor can read: text as sent, a
// binary value decoded by its type when the type is known, hex otherwise.
type valueRenderer struct {
	m *pgtype.Map
}

func newValueRenderer() *valueRenderer { return &valueRenderer{} }

func (v *valueRenderer) render(oid uint32, format int16, b []byte) event.Value {
	if b == nil {
		return event.Value{Null: true, OID: oid}
	}
	if format == 0 {
		s := string(b)
		if utf8.ValidString(s) {
			return event.Value{Text: &s, OID: oid}
		}
		return event.Value{Hex: hex.EncodeToString(b), OID: oid}
	}
	if oid != 0 {
		if v.m == nil {
			v.m = pgtype.NewMap()
		}
		if t, ok := v.m.TypeForOID(oid); ok {
			if val, err := t.Codec.DecodeValue(v.m, oid, pgtype.BinaryFormatCode, b); err == nil {
				if s, ok := textOf(val); ok {
					return event.Value{Text: &s, OID: oid}
				}
			}
		}
	}
	return event.Value{Hex: hex.EncodeToString(b), OID: oid}
}

// textOf renders a decoded value the way PostgreSQL would print it, where that is simple.
func textOf(val any) (string, bool) {
	switch x := val.(type) {
	case nil:
		return "", false
	case string:
		return x, utf8.ValidString(x)
	case []byte:
		return "\\x" + hex.EncodeToString(x), true
	case time.Time:
		return x.Format("2006-01-02 15:04:05.999999Z07:00"), true
	case fmt.Stringer:
		return x.String(), true
	case bool, int16, int32, int64, float32, float64, int, uint32:
		return fmt.Sprint(x), true
	}
	return fmt.Sprintf("%v", val), true
}
