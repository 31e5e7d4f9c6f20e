package masking

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// The built-in detector names, as policies write them.
const (
	CreditCard    = "credit_card"
	Email         = "email"
	Phone         = "phone"
	USSSN         = "us_ssn"
	IBAN          = "iban"
	AWSAccessKey  = "aws_access_key"
	JWT           = "jwt"
	PEMPrivateKey = "pem_private_key"
)

type kind uint8

const (
	kCard kind = iota
	kEmail
	kPhone
	kSSN
	kIBAN
	kAWS
	kJWT
	kPEM
	kRegex
)

// builtin lists the built-in detectors with the shortest value each can match, in the order
// they are tried when two matches start at the same byte.
var builtin = []struct {
	name   string
	kind   kind
	minLen int
}{
	{PEMPrivateKey, kPEM, 27},
	{JWT, kJWT, 20},
	{AWSAccessKey, kAWS, 20},
	{IBAN, kIBAN, 15},
	{CreditCard, kCard, 13},
	{USSSN, kSSN, 11},
	{Phone, kPhone, 8},
	{Email, kEmail, 6},
}

// Detectors returns the names of the built-in detectors.
func Detectors() []string {
	names := make([]string, len(builtin))
	for i, b := range builtin {
		names[i] = b.name
	}
	return names
}

// Rule is one entry of a masking policy in structured form. Exactly one of Detector or Column is
// set; Pattern makes Detector the name of a custom detector.
type Rule struct {
	// Detector is a built-in detector name (credit_card, email, ...) or, with Pattern, the name
	// of a custom detector ([a-z0-9_-], not a built-in name); it names the detector in hits.
	Detector string
	// Pattern is an RE2 regular expression (Go regexp syntax). Every match is masked: ASCII
	// letters and digits and non-ASCII bytes become '*', punctuation stays.
	Pattern string
	// Column is "column", "table.column" or "schema.table.column": that column's values are
	// masked whole (see MaskWhole), whatever they hold. Matching ignores case.
	Column string
}

// ParseRule parses the string form of a rule: a built-in detector name, "column:COLUMN" or
// "regex:NAME:PATTERN" (the pattern is everything after the second colon).
func ParseRule(s string) (Rule, error) {
	switch {
	case strings.HasPrefix(s, "column:"):
		return Rule{Column: strings.TrimPrefix(s, "column:")}, nil
	case strings.HasPrefix(s, "regex:"):
		name, pat, ok := strings.Cut(strings.TrimPrefix(s, "regex:"), ":")
		if !ok {
			return Rule{}, fmt.Errorf("masking rule %q: want regex:NAME:PATTERN", s)
		}
		return Rule{Detector: name, Pattern: pat}, nil
	}
	return Rule{Detector: s}, nil
}

// Masker applies one policy's masking rules. It is immutable after New and safe for concurrent
// use; build it once per policy, not per session.
type Masker struct {
	dets     []detector
	minLen   int  // no value shorter than this can match any detector
	card     bool // credit_card is on: MaskNumber applies
	profiled bool // a detector on needs the value's profile
	columns  []column
}

type detector struct {
	name string
	kind kind
	re   *regexp.Regexp // kRegex
}

type column struct{ schema, table, name string }

// New builds a Masker from the string form of a policy's rules, e.g.
// ["credit_card", "email", "column:payments.cvv", "regex:ticket:TCK-[0-9]{6}"].
func New(specs []string) (*Masker, error) {
	rules := make([]Rule, 0, len(specs))
	for _, s := range specs {
		r, err := ParseRule(s)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return Compile(rules)
}

// Compile builds a Masker from rules. A repeated rule is applied once.
func Compile(rules []Rule) (*Masker, error) {
	m := &Masker{minLen: 1 << 30}
	seen := map[string]bool{}
	var custom []detector
	for _, r := range rules {
		switch {
		case r.Column != "" && (r.Detector != "" || r.Pattern != ""):
			return nil, fmt.Errorf("masking rule: a column rule (%q) takes no detector or pattern", r.Column)
		case r.Column != "":
			parts := strings.Split(r.Column, ".")
			if len(parts) > 3 || strings.Contains(r.Column, " ") || slicesContainEmpty(parts) {
				return nil, fmt.Errorf("masking rule column:%s: want column, table.column or schema.table.column", r.Column)
			}
			var c column
			c.name = parts[len(parts)-1]
			if len(parts) >= 2 {
				c.table = parts[len(parts)-2]
			}
			if len(parts) == 3 {
				c.schema = parts[0]
			}
			m.columns = append(m.columns, c)
		case r.Pattern != "":
			if !validName(r.Detector) || isBuiltin(r.Detector) {
				return nil, fmt.Errorf("masking rule regex:%s: the name must be [a-z0-9_-]+ and not a built-in detector", r.Detector)
			}
			re, err := regexp.Compile(r.Pattern)
			if err != nil {
				return nil, fmt.Errorf("masking rule regex:%s: %w", r.Detector, err)
			}
			if seen[r.Detector] {
				return nil, fmt.Errorf("masking rule regex:%s: the name is used twice", r.Detector)
			}
			seen[r.Detector] = true
			custom = append(custom, detector{name: r.Detector, kind: kRegex, re: re})
			m.minLen = 1
		case r.Detector == "":
			return nil, fmt.Errorf("masking rule: empty")
		default:
			if !isBuiltin(r.Detector) {
				return nil, fmt.Errorf("masking rule %q: unknown detector (built-in: %s; or column:NAME, regex:NAME:PATTERN)",
					r.Detector, strings.Join(Detectors(), ", "))
			}
			seen[r.Detector] = true
		}
	}
	for _, b := range builtin {
		if seen[b.name] {
			m.dets = append(m.dets, detector{name: b.name, kind: b.kind})
			m.minLen = min(m.minLen, b.minLen)
			m.card = m.card || b.kind == kCard
			m.profiled = m.profiled || b.kind <= kIBAN && b.kind != kEmail
		}
	}
	m.dets = append(m.dets, custom...)
	return m, nil
}

func isBuiltin(name string) bool {
	for _, b := range builtin {
		if b.name == name {
			return true
		}
	}
	return false
}

func validName(s string) bool {
	for _, c := range []byte(s) {
		if class[c]&(cLower|cDigit) == 0 && c != '_' && c != '-' {
			return false
		}
	}
	return s != ""
}

func slicesContainEmpty(parts []string) bool {
	for _, p := range parts {
		if p == "" {
			return true
		}
	}
	return false
}

// Hit says that a detector fired on src[Start:End]. It never carries the value, so it can be
// recorded as is.
type Hit struct {
	Detector   string
	Start, End int
}

// Empty reports whether the masker has no rules at all.
func (m *Masker) Empty() bool { return len(m.dets) == 0 && len(m.columns) == 0 }

// MaskText masks every detector match in src. When nothing matches it returns src itself and
// nil, and allocates nothing. Otherwise out is the masked value, built in dst's storage
// (dst[:0], grown as needed; dst must not overlap src), and hits lists the matches in order,
// with offsets into src. Matches never overlap: where two would, the one that starts first wins,
// then the longer one. Masked values are not always as long as the original (emails are not).
func (m *Masker) MaskText(dst, src []byte) (out []byte, hits []Hit) {
	return m.maskFrom(dst, src, 0)
}

// maskFrom is MaskText for src[from:], with src[:from] read only as what comes before it (so
// that a number glued to the byte before is not taken for a card). Hit offsets are into src.
func (m *Masker) maskFrom(dst, src []byte, from int) (out []byte, hits []Hit) {
	if len(src)-from < m.minLen {
		return src[from:], nil
	}
	var p profile
	if m.profiled {
		p = profileOf(src[from:])
	}
	last := from
	for pos := from; pos < len(src); {
		d, s, e := m.next(src, pos, p)
		if d == nil {
			break
		}
		if hits == nil {
			out = dst[:0]
		}
		out = append(out, src[last:s]...)
		out = d.mask(out, src, s, e)
		hits = append(hits, Hit{Detector: d.name, Start: s, End: e})
		last, pos = e, e
	}
	if hits == nil {
		return src[from:], nil
	}
	return append(out, src[last:]...), hits
}

// next returns the detector whose match starts first at or after pos (the longest on a tie),
// or nil.
func (m *Masker) next(src []byte, pos int, p profile) (best *detector, bs, be int) {
	bs = len(src)
	for i := range m.dets {
		d := &m.dets[i]
		switch d.kind {
		case kCard:
			if p.digits < 13 {
				continue
			}
		case kPhone:
			if p.digits < 8 {
				continue
			}
		case kSSN:
			if p.digits < 9 {
				continue
			}
		case kIBAN:
			if !p.upper {
				continue
			}
		}
		s, e := d.find(src, pos)
		if s >= 0 && (s < bs || (s == bs && e > be)) {
			best, bs, be = d, s, e
		}
	}
	return best, bs, be
}

func (d *detector) find(src []byte, from int) (start, end int) {
	switch d.kind {
	case kCard:
		return findCard(src, from)
	case kEmail:
		return findEmail(src, from)
	case kPhone:
		return findPhone(src, from)
	case kSSN:
		return findSSN(src, from)
	case kIBAN:
		return findIBAN(src, from)
	case kAWS:
		return findAWSKey(src, from)
	case kJWT:
		return findJWT(src, from)
	case kPEM:
		return findPEMKey(src, from)
	}
	for from <= len(src) {
		loc := d.re.FindIndex(src[from:])
		if loc == nil {
			break
		}
		if loc[1] > loc[0] {
			return from + loc[0], from + loc[1]
		}
		from += loc[0] + 1 // an empty match masks nothing
	}
	return -1, -1
}

func (d *detector) mask(out, src []byte, s, e int) []byte {
	switch d.kind {
	case kCard:
		return maskCard(out, src, s, e)
	case kEmail:
		return maskEmail(out, src, s, e)
	case kPhone:
		return maskPhone(out, src, s, e)
	case kSSN:
		return maskSSN(out, src, s, e)
	case kIBAN:
		return maskIBAN(out, src, s, e)
	case kAWS, kJWT:
		return appendStars(out, e-s)
	case kPEM:
		return maskPEMKey(out, src, s, e)
	}
	return appendAlnumMasked(out, src[s:e])
}

// HasColumnRules reports whether any column rule is set.
func (m *Masker) HasColumnRules() bool { return len(m.columns) > 0 }

// MaskColumn reports whether a column rule covers table.column. table may be schema-qualified;
// a rule without a schema matches the table in any schema, a rule without a table any table.
func (m *Masker) MaskColumn(table, column string) bool {
	if len(m.columns) == 0 {
		return false
	}
	schema, tbl, ok := strings.Cut(table, ".")
	if !ok {
		schema, tbl = "", table
	}
	for _, c := range m.columns {
		if strings.EqualFold(c.name, column) &&
			(c.table == "" || strings.EqualFold(c.table, tbl)) &&
			(c.schema == "" || strings.EqualFold(c.schema, schema)) {
			return true
		}
	}
	return false
}

// MaskColumnName reports whether a column rule names this column, whatever its table. Engines
// use it for a column whose source table they cannot tell (an expression, or a lookup that
// failed), masking a ruled column name in every table: more than asked, never less.
func (m *Masker) MaskColumnName(column string) bool {
	for _, c := range m.columns {
		if strings.EqualFold(c.name, column) {
			return true
		}
	}
	return false
}

// MaskWhole masks a whole value for a column rule: ASCII letters and digits and non-ASCII bytes
// become '*', punctuation stays, so an array or composite literal keeps its syntax and the value
// its length ("123" -> "***", "{12,34}" -> "{**,**}"). It writes to dst[:0].
func MaskWhole(dst, src []byte) []byte {
	return appendAlnumMasked(dst[:0], src)
}

// Cache compiles each distinct list of masking specs once and shares the Masker (which is safe
// for concurrent use) between the sessions that use it. The zero Cache is ready.
type Cache struct{ m sync.Map } // joined specs -> *Masker

// Get returns the Masker for specs, nil when there are none.
func (c *Cache) Get(specs []string) (*Masker, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	key := strings.Join(specs, "\x00")
	if m, ok := c.m.Load(key); ok {
		return m.(*Masker), nil
	}
	m, err := New(specs)
	if err != nil {
		return nil, err
	}
	c.m.Store(key, m)
	return m, nil
}
