package mysql

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/guard/mysqlguard"
	"github.com/airlock-gw/airlock/internal/masking"
)

// binaryCharset is the "binary" character set: BINARY, VARBINARY and BLOB values are bytes, not
// text, and the text detectors are not run over them.
const binaryCharset = 63

// masker rewrites rows and error messages before they reach the client (and the recording,
// which keeps what the client saw).
type masker struct {
	m       *masking.Masker
	scratch []byte
	hits    map[string]int // by detector ("column" for column rules) since the last flush

	// The text of the statement whose results are relayed, and (parsed when first needed) the
	// column renames it makes: a column renamed in a derived table or CTE is reported by its new
	// name only.
	sql     string
	nbe     bool
	parsed  bool
	renames map[string]string
	ruled   map[*gomysql.Field]bool // columnRuled's answers for the statement's columns
}

// statement sets the text of the statement whose results follow (nbe: the session's sql_mode
// has NO_BACKSLASH_ESCAPES).
func (mk *masker) statement(sql string, nbe bool) {
	clear(mk.ruled)
	if mk.parsed && sql == mk.sql && nbe == mk.nbe {
		return
	}
	mk.sql, mk.nbe, mk.parsed, mk.renames = sql, nbe, false, nil
}

// renamed returns the column that the statement renames to name, if any.
func (mk *masker) renamed(name []byte) (string, bool) {
	if !mk.parsed {
		mk.parsed = true
		if mk.m.HasColumnRules() && mk.sql != "" {
			mk.renames = mysqlguard.ColumnAliases(mk.sql, mk.nbe)
		}
	}
	under, ok := mk.renames[strings.ToLower(string(name))]
	return under, ok
}

func newMasker(m *masking.Masker) *masker {
	if m == nil || m.Empty() {
		return nil
	}
	return &masker{m: m, hits: map[string]int{}}
}

func (mk *masker) count(hits []masking.Hit) {
	for _, h := range hits {
		mk.hits[h.Detector]++
	}
}

// text masks free text (an error message).
func (mk *masker) text(b []byte) ([]byte, bool) {
	out, hits := mk.m.MaskText(nil, b)
	if len(hits) == 0 {
		return nil, false
	}
	mk.count(hits)
	return out, true
}

// row masks the values of one row in place (values are replaced, never written into) and
// reports whether any changed. Binary-protocol values keep their binary form.
func (mk *masker) row(fields []*gomysql.Field, values [][]byte, binaryRow bool) bool {
	changed := false
	for i, v := range values {
		if v == nil || i >= len(fields) {
			continue
		}
		if nv, ok := mk.value(fields[i], v, binaryRow); ok {
			values[i] = nv
			changed = true
		}
	}
	return changed
}

// columnRuled reports whether a column rule covers the column a field comes from. A column of a
// base table is judged by its original table and column, so an alias does not hide it and a
// same-named column of that table's own rule is told apart. But MySQL reports a derived table, a
// CTE or a view as the original table (MariaDB gives its alias), not the base table the value
// comes from, and an expression has none: where the reported table is not one a rule names for
// that column, the column is judged by its names too, masking a ruled name whatever the table
// (more than asked, never less; PostgreSQL's engine does the same for a source it cannot tell).
func (mk *masker) columnRuled(f *gomysql.Field) bool {
	if !mk.m.HasColumnRules() {
		return false
	}
	// Judged once per column of a result, not per value.
	if v, ok := mk.ruled[f]; ok {
		return v
	}
	v := mk.judge(f)
	if mk.ruled == nil {
		mk.ruled = map[*gomysql.Field]bool{}
	}
	mk.ruled[f] = v
	return v
}

func (mk *masker) judge(f *gomysql.Field) bool {
	var src string
	if len(f.OrgTable) > 0 {
		src = string(f.OrgTable)
		if len(f.Schema) > 0 {
			src = string(f.Schema) + "." + src
		}
		if len(f.OrgName) > 0 && mk.m.MaskColumn(src, string(f.OrgName)) {
			return true
		}
	}
	byName := func(name string) bool {
		return mk.m.MaskColumnName(name) && (src == "" || !mk.m.MaskColumn(src, name))
	}
	for _, name := range [2][]byte{f.Name, f.OrgName} {
		if len(name) > 0 && byName(string(name)) {
			return true
		}
	}
	// A column the statement renamed (`select c from (select cvv as c from t) q`), followed
	// through a few renames.
	name := f.Name
	for i := 0; i < 8 && len(name) > 0; i++ {
		under, ok := mk.renamed(name)
		if !ok || under == strings.ToLower(string(name)) {
			break
		}
		if byName(under) {
			return true
		}
		name = []byte(under)
	}
	return false
}

// value masks one value; ok is false when it is left as it is.
func (mk *masker) value(f *gomysql.Field, v []byte, binaryRow bool) ([]byte, bool) {
	lenenc := binaryRow && isLenenc(f.Type)
	payload := v
	if lenenc {
		payload = lenencPayload(v)
	}
	wrap := func(out []byte) []byte {
		if lenenc {
			return append(gomysql.AppendLengthEncodedInteger(nil, uint64(len(out))), out...)
		}
		return out
	}
	if mk.columnRuled(f) {
		mk.hits["column"]++
		if binaryRow && !lenenc {
			// A fixed-size binary number: zero it (a valid value of its type).
			return make([]byte, len(v)), true
		}
		return wrap(masking.MaskWhole(nil, payload)), true
	}
	switch f.Type {
	case gomysql.MYSQL_TYPE_LONGLONG:
		s := payload
		if binaryRow {
			if len(v) != 8 {
				return nil, false
			}
			if f.Flag&gomysql.UNSIGNED_FLAG != 0 {
				s = strconv.AppendUint(nil, binary.LittleEndian.Uint64(v), 10)
			} else {
				s = strconv.AppendInt(nil, int64(binary.LittleEndian.Uint64(v)), 10)
			}
		}
		out, hit := mk.m.MaskNumber(s)
		if !hit {
			return nil, false
		}
		mk.hits["credit_card"]++
		if !binaryRow {
			return out, true
		}
		// Sent as a number that keeps the visible digits, the masked ones zero.
		n, err := strconv.ParseUint(strings.ReplaceAll(strings.TrimPrefix(string(out), "-"), "*", "0"), 10, 64)
		if err != nil {
			return nil, false
		}
		if strings.HasPrefix(string(out), "-") {
			n = uint64(-int64(n))
		}
		return binary.LittleEndian.AppendUint64(nil, n), true
	case gomysql.MYSQL_TYPE_DECIMAL, gomysql.MYSQL_TYPE_NEWDECIMAL:
		out, hit := mk.m.MaskNumber(payload)
		if !hit {
			return nil, false
		}
		mk.hits["credit_card"]++
		return wrap(out), true
	case gomysql.MYSQL_TYPE_JSON:
		out, hits := mk.m.MaskJSON(nil, payload)
		if len(hits) == 0 {
			return nil, false
		}
		mk.count(hits)
		return wrap(out), true
	case gomysql.MYSQL_TYPE_VARCHAR, gomysql.MYSQL_TYPE_VAR_STRING, gomysql.MYSQL_TYPE_STRING,
		gomysql.MYSQL_TYPE_TINY_BLOB, gomysql.MYSQL_TYPE_MEDIUM_BLOB, gomysql.MYSQL_TYPE_LONG_BLOB,
		gomysql.MYSQL_TYPE_BLOB, gomysql.MYSQL_TYPE_ENUM, gomysql.MYSQL_TYPE_SET:
		// A binary string (CAST(email AS BINARY), a BLOB) is masked as text too, whatever
		// bytes are around the text: a cast must not be a way around the policy.
		out, hits := mk.m.MaskText(nil, payload)
		if len(hits) == 0 {
			return nil, false
		}
		mk.count(hits)
		return wrap(out), true
	}
	// As of 2026-11 other values (dates, floats, BIT, geometry) are forwarded unmasked; see
	// docs/mysql.md.
	return nil, false
}

// isLenenc reports whether a binary-protocol value of type typ is length-encoded.
func isLenenc(typ byte) bool {
	switch typ {
	case gomysql.MYSQL_TYPE_NULL, gomysql.MYSQL_TYPE_TINY, gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_YEAR,
		gomysql.MYSQL_TYPE_INT24, gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_FLOAT, gomysql.MYSQL_TYPE_LONGLONG,
		gomysql.MYSQL_TYPE_DOUBLE, gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_TIMESTAMP,
		gomysql.MYSQL_TYPE_TIME, gomysql.MYSQL_TYPE_NEWDATE:
		return false
	}
	return true
}

// keepOriginal keeps the original of a row (the packet p as the target sent it) for the
// rows.original event that follows the rows event. The first change in a rows event starts orig
// with the rows before it, which were sent unchanged.
func (r *relay) keepOriginal(p []byte, binaryRow bool) {
	if !r.origOn {
		r.orig = append(r.orig[:0], r.rows[r.rowsStart:]...)
		r.origOn = true
	}
	var vals [][]byte
	var err error
	if binaryRow {
		vals, err = splitBinaryRow(p, r.fields, nil)
		for i, v := range vals {
			if v != nil {
				if t, ok := binaryText(r.fields[i].Type, r.fields[i].Flag&gomysql.UNSIGNED_FLAG != 0, v); ok {
					vals[i] = t
				}
			}
		}
	} else {
		vals, err = splitTextRow(p, len(r.fields), nil)
	}
	if err != nil {
		vals = [][]byte{p}
	}
	r.orig = event.AppendRow(r.orig, vals)
}

// keepsOriginals reports whether the originals of masked values are recorded (sealed).
func (r *relay) keepsOriginals() bool { return r.sealer != nil && r.rec != nil }

// recordOriginal seals the original content of the event of type of just recorded into an
// original event (the same form as PostgreSQL's: docs/masking.md).
func (r *relay) recordOriginal(of event.Type, plain []byte) {
	keyID, nonce, ct := r.sealer.Seal(plain, []byte(r.rec.ID()))
	r.rec.Record(event.Original, event.OriginalData{Of: of, KeyID: keyID, Nonce: base64.StdEncoding.EncodeToString(nonce)}, ct)
	clear(plain)
}

// recordOriginals seals orig (the original rows of the rows event just recorded) into a
// rows.original event. Nothing of it is recorded in clear.
func (r *relay) recordOriginals() {
	keyID, nonce, ct := r.sealer.Seal(r.orig, []byte(r.rec.ID()))
	r.rec.Record(event.RowsOriginal, event.RowsOriginalData{KeyID: keyID,
		Nonce: base64.StdEncoding.EncodeToString(nonce), Count: r.rowsN}, ct)
	clear(r.orig)
	r.orig = r.orig[:0]
	r.origOn = false
}

// flushMaskEvent records which detectors fired (never the values).
func (r *relay) flushMaskEvent() {
	mk := r.masker
	if mk == nil || len(mk.hits) == 0 {
		return
	}
	d := event.MaskData{Hits: make(map[string]int, len(mk.hits))}
	for k, v := range mk.hits {
		d.Hits[k] = v
	}
	clear(mk.hits)
	r.rec.Record(event.Mask, d, nil)
}
