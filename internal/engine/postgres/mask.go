package postgres

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
)

// Type OIDs whose values the masker reads.
const (
	oidInt8    = 20
	oidNumeric = 1700
	oidJSON    = 114
	oidJSONB   = 3802
	oidText    = 25
	oidVarchar = 1043
	oidBpchar  = 1042
	oidName    = 19
	oidUnknown = 705
	oidBytea   = 17
)

// masker rewrites what the target sends before it reaches the client (and the recording, which
// keeps what the client saw). It is used by the target-to-client direction only.
type masker struct {
	m       *masking.Masker
	scratch []byte
	values  [][]byte
	hits    map[string]int // by detector ("column" for column rules) since the last flush
}

func newMasker(m *masking.Masker) *masker {
	if m == nil || m.Empty() {
		return nil
	}
	return &masker{m: m, hits: map[string]int{}}
}

// rewrite masks the message that starts at buf[start] (type byte, length, body to the end of
// buf) and returns buf with the message replaced when anything was masked.
func (r *relay) rewrite(typ byte, buf []byte, start int) []byte {
	mk := r.masker
	body := buf[start+5:]
	r.msgOrigOn = false
	var out []byte
	switch typ {
	case 'D':
		out = mk.dataRow(r.currentColumns(), body)
		if out != nil && r.keepsOriginals() {
			r.keepOriginal(body)
		}
	case 'd':
		if masked, hits := mk.m.MaskText(mk.scratch[:0], body); len(hits) > 0 {
			mk.count(hits)
			out = masked
			if r.keepsOriginals() {
				r.keepCopyOriginal(body)
			}
		}
	case 'V': // a function call's result: of a type not known, masked as text
		var v pgproto3.FunctionCallResponse
		if v.Decode(body) == nil && v.Result != nil {
			if masked, hits := mk.m.MaskText(nil, v.Result); len(hits) > 0 {
				mk.count(hits)
				if r.keepsOriginals() {
					r.keepOriginal(functionRow(v.Result))
				}
				v.Result = masked
				out, _ = v.Encode(nil)
				out = out[5:]
			}
		}
	case 'S':
		// A reported setting: set_config('application_name', (select email ...), false) makes
		// the target send the value back in one.
		var ps pgproto3.ParameterStatus
		if ps.Decode(body) == nil {
			if masked, hits := mk.m.MaskText(nil, []byte(ps.Value)); len(hits) > 0 {
				mk.count(hits)
				ps.Value = string(masked)
				out, _ = ps.Encode(nil)
				out = out[5:]
			}
		}
	case 'N', 'E':
		out = mk.message(typ, body)
	case 'A':
		var n pgproto3.NotificationResponse
		if n.Decode(body) == nil {
			if masked, hits := mk.m.MaskText(nil, []byte(n.Payload)); len(hits) > 0 {
				mk.count(hits)
				n.Payload = string(masked)
				out, _ = n.Encode(nil)
				out = out[5:]
			}
		}
	}
	if out == nil {
		return buf
	}
	if (typ == 'N' || typ == 'E' || typ == 'A') && r.keepsOriginals() {
		r.msgOrig = append(r.msgOrig[:0], body...)
		r.msgOrigOn = true
	}
	// Copy out first: out may alias the scratch buffer, never buf.
	buf = append(buf[:start+1], 0, 0, 0, 0)
	binary.BigEndian.PutUint32(buf[start+1:], uint32(4+len(out)))
	return append(buf, out...)
}

func (mk *masker) count(hits []masking.Hit) {
	for _, h := range hits {
		mk.hits[h.Detector]++
	}
}

// dataRow masks a DataRow body; nil when nothing changed.
func (mk *masker) dataRow(cols []event.Column, body []byte) []byte {
	if len(body) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(body))
	mk.values = mk.values[:0]
	p := body[2:]
	for i := 0; i < n; i++ {
		if len(p) < 4 {
			return nil // malformed: forward as is, the client will say so
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if l < 0 {
			mk.values = append(mk.values, nil)
			continue
		}
		if int(l) > len(p) {
			return nil
		}
		mk.values = append(mk.values, p[:l:l])
		p = p[l:]
	}
	changed := false
	for i, v := range mk.values {
		if v == nil {
			continue
		}
		// A value whose column is not known is masked as text, and whole when the session
		// has column rules: it could be any column.
		c := event.Column{Ruled: mk.m.HasColumnRules()}
		if i < len(cols) {
			c = cols[i]
		}
		if nv, ok := mk.value(c, v); ok {
			mk.values[i] = nv
			changed = true
		}
	}
	if !changed {
		return nil
	}
	out := binary.BigEndian.AppendUint16(mk.scratch[:0], uint16(n))
	for _, v := range mk.values {
		if v == nil {
			out = binary.BigEndian.AppendUint32(out, 0xFFFFFFFF)
			continue
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
		out = append(out, v...)
	}
	mk.scratch = out
	return out
}

// value masks one column value; ok is false when it is left as it is.
func (mk *masker) value(c event.Column, v []byte) ([]byte, bool) {
	if c.Ruled {
		mk.hits["column"]++
		return masking.MaskWhole(nil, v), true
	}
	if c.Format == 0 {
		switch c.OID {
		case oidInt8, oidNumeric:
			if out, hit := mk.m.MaskNumber(v); hit {
				mk.hits["credit_card"]++
				return out, true
			}
			return nil, false
		case oidJSON, oidJSONB:
			return mk.hitsOf(mk.m.MaskJSON(nil, v))
		case oidBytea:
			if out, ok := mk.hexBytea(v); ok {
				return out, true
			}
		}
		return mk.hitsOf(mk.m.MaskText(nil, v))
	}
	return mk.binaryValue(c.OID, v, 0)
}

// hexBytea masks a bytea in the hex output format (\x...) whose bytes are text: a cast to
// bytea (convert_to(email, 'UTF8'), card::bytea) must not be a way around the policy. The
// escape output format shows text as it is, and is masked as text.
func (mk *masker) hexBytea(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '\\' || v[1] != 'x' {
		return nil, false
	}
	raw := make([]byte, hex.DecodedLen(len(v)-2))
	if _, err := hex.Decode(raw, v[2:]); err != nil {
		return nil, false
	}
	out, ok := mk.hitsOf(mk.m.MaskText(nil, raw))
	if !ok {
		return nil, false
	}
	return hex.AppendEncode(append(make([]byte, 0, 2+2*len(out)), '\\', 'x'), out), true
}

func (mk *masker) hitsOf(out []byte, hits []masking.Hit) ([]byte, bool) {
	if len(hits) == 0 {
		return nil, false
	}
	mk.count(hits)
	return out, true
}

// message masks the text fields of an ErrorResponse or NoticeResponse (a unique violation's
// DETAIL quotes the key).
func (mk *masker) message(typ byte, body []byte) []byte {
	var e pgproto3.ErrorResponse
	if e.Decode(body) != nil {
		return nil
	}
	changed := false
	for _, f := range []*string{&e.Message, &e.Detail, &e.Hint, &e.Where, &e.InternalQuery} {
		if *f == "" {
			continue
		}
		if out, hits := mk.m.MaskText(nil, []byte(*f)); len(hits) > 0 {
			mk.count(hits)
			*f = string(out)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	var enc []byte
	if typ == 'N' {
		enc, _ = (*pgproto3.NoticeResponse)(&e).Encode(nil)
	} else {
		enc, _ = e.Encode(nil)
	}
	if len(enc) < 5 {
		return nil
	}
	return enc[5:]
}

// keepOriginal keeps the original of a DataRow masking changed, for the rows.original event that
// follows the rows event. The first change in a rows event starts orig with the rows before it,
// which were sent unchanged.
func (r *relay) keepOriginal(body []byte) {
	if !r.origOn {
		r.orig = append(r.orig[:0], r.rows[r.rowsStart:]...)
		r.origOn = true
	}
	r.orig = event.AppendRowBody(r.orig, body)
	r.origAdded = true
}

// keepsOriginals reports whether the originals of masked values are recorded (sealed).
func (r *relay) keepsOriginals() bool { return r.sealer != nil && r.rec != nil }

// seal encrypts plain with the recording key, the session id as additional data.
func (r *relay) seal(plain []byte) (keyID, nonce string, ct []byte) {
	k, n, ct := r.sealer.Seal(plain, []byte(r.rec.ID()))
	return k, base64.StdEncoding.EncodeToString(n), ct
}

// recordOriginals seals orig (the original rows of the rows event just recorded) into a
// rows.original event. Nothing of it is recorded in clear.
func (r *relay) recordOriginals() {
	keyID, nonce, ct := r.seal(r.orig)
	r.rec.Record(event.RowsOriginal, event.RowsOriginalData{KeyID: keyID, Nonce: nonce, Count: r.rowsN}, ct)
	clear(r.orig)
	r.orig = r.orig[:0]
	r.origOn, r.origAdded = false, false
}

// keepCopyOriginal keeps the original of a CopyData masking changed, like keepOriginal for rows:
// the first change starts copyOrig with the unchanged bytes of the batch before it.
func (r *relay) keepCopyOriginal(body []byte) {
	if !r.copyOrigOn {
		r.copyOrig = append(r.copyOrig[:0], r.copyOut[r.copyStart:]...)
		r.copyOrigOn = true
	}
	r.copyOrig = append(r.copyOrig, body...)
	r.copyOrigAdded = true
}

// recordOriginal seals the original content of the event of type of just recorded.
func (r *relay) recordOriginal(of event.Type, plain []byte) {
	keyID, nonce, ct := r.seal(plain)
	r.rec.Record(event.Original, event.OriginalData{Of: of, KeyID: keyID, Nonce: nonce}, ct)
	clear(plain)
}

// flushMaskEvent records which detectors fired in the batch (never the values).
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
