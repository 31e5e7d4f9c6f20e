package masking

import (
	"bytes"
	"time"
)

// HoldFor is how long a stream's held-back tail (Stream.Held) waits for the rest of its value
// before it is sent as it is. On a terminal: long enough for the next read of output already on
// its way, short enough not to be noticed at a prompt. Without one the output goes to a program
// or a file more than to a person typing, and a tail waits a second: on a busy machine the target
// can pause for more than 20 ms in the middle of a card number, which would then go out unmasked
// (SSH's TestSSH/MaskCat saw it at a load average of 18). The SSH and Kubernetes engines use it.
func HoldFor(terminal bool) time.Duration {
	if terminal {
		return 20 * time.Millisecond
	}
	return time.Second
}

// How far back from the end of a chunk Pending looks for the start of a value that may go on
// in the next chunk, per kind of value. A longer tail is not held: a value longer than this that
// a read boundary splits is masked in each part only as far as each part matches on its own.
const (
	pendNumber = 64              // cards, phones, SSNs: digits and number separators
	pendIBAN   = 48              // 34 characters and the spaces between groups of four
	pendEmail  = 64 + 1 + 255    // local part, '@', domain
	pendAWS    = 20              // AKIA + 16
	pendJWT    = 8 << 10         // three base64url parts
	pendPEM    = 16 << 10        // a private key block (an RSA 8192 key is about 6.5 KiB)
	pendRegex  = 256             // custom patterns: the last run of non-space bytes
	MaxPending = pendPEM + 1<<10 // the longest tail Pending returns, plus what a straddling match adds
)

// Stream masks a byte stream that arrives in chunks of any size, such as a terminal's output
// (a card number may be split between two reads): a value split between chunks is masked as if
// it had come in one. Each chunk is masked but for a tail that could be the first part of a
// value a detector matches once more bytes follow; that tail is held back and put in front of
// the next chunk, or masked and sent as it is by Flush (when the stream ends or pauses). The
// last bytes sent are kept too, as the left edge of the next chunk's values.
//
// The tails are bounded (MaxPending), and ordinary output rarely leaves any: a line break, or a
// space after a word, ends every candidate of the built-in detectors but email's, which holds a
// trailing word, and custom patterns', which hold the last run of bytes that are not white
// space. A Stream is not safe for concurrent use.
type Stream struct {
	m   *Masker
	buf []byte // the context (the last bytes sent, unmasked), then the bytes held back
	ctx int    // the context's length
	out []byte
	// spare is the other buffer: buf and spare swap at each chunk.
	spare []byte
}

// streamContext is how many bytes sent before a chunk are kept as its left edge (the number
// detectors look two bytes back).
const streamContext = 8

// NewStream returns a Stream that masks with m.
func (m *Masker) NewStream() *Stream { return &Stream{m: m} }

// Next takes the next chunk and returns the masked bytes to send now and the hits (offsets into
// the unmasked bytes sent now). With hold false nothing is held back: everything held and chunk
// are sent. out is valid until the next call; chunk is not kept.
func (s *Stream) Next(chunk []byte, hold bool) (out []byte, hits []Hit) {
	s.buf = append(s.buf, chunk...)
	cut := len(s.buf)
	if hold {
		cut = s.m.pending(s.buf, s.ctx)
	}
	out, hits = s.m.maskFrom(s.out[:0], s.buf[:cut], s.ctx)
	if len(hits) > 0 {
		s.out = out[:0]
	}
	for i := range hits {
		hits[i].Start -= s.ctx
		hits[i].End -= s.ctx
	}
	if cut == s.ctx { // nothing sent: the context stays
		return out, hits
	}
	// The new context and the held tail go to the front of the other buffer: out may be a
	// slice of this one (when nothing matched), and must stay intact until the next call.
	keep := max(0, cut-streamContext)
	s.spare = append(s.spare[:0], s.buf[keep:]...)
	s.buf, s.spare = s.spare, s.buf
	s.ctx = cut - keep
	return out, hits
}

// Held is how many bytes are held back.
func (s *Stream) Held() int { return len(s.buf) - s.ctx }

// Flush returns everything held back, masked, and lets go of buffers grown for large chunks.
func (s *Stream) Flush() (out []byte, hits []Hit) {
	out, hits = s.Next(nil, false)
	if cap(s.out) > 64<<10 {
		s.out = nil
	}
	if cap(s.spare) > 64<<10 {
		s.spare = nil
	}
	if cap(s.buf) > 64<<10 {
		s.buf = append([]byte(nil), s.buf...)
	}
	return out, hits
}

// Pending returns the offset at which Stream would start to hold src back: src[Pending(src):]
// is the tail that could be the first part of a value once more bytes follow (len(src) when
// there is none). No match MaskText finds in src straddles it.
func (m *Masker) Pending(src []byte) int { return m.pending(src, 0) }

// pending is Pending for src[from:], src[:from] being bytes already sent (never held).
func (m *Masker) pending(src []byte, from int) int {
	n := len(src)
	p := n
	number := false
	for i := range m.dets {
		switch m.dets[i].kind {
		case kCard, kPhone, kSSN:
			number = true
		case kIBAN:
			p = min(p, pendingIBAN(src))
		case kEmail:
			p = min(p, pendingEmail(src))
		case kAWS:
			p = min(p, pendingAWS(src))
		case kJWT:
			p = min(p, pendingJWT(src))
		case kPEM:
			p = min(p, pendingPEM(src))
		case kRegex:
			p = min(p, pendingWord(src))
		}
	}
	if number {
		p = min(p, pendingNumber(src))
	}
	p = max(p, from)
	if p == n {
		return p
	}
	// A complete match that starts before p and ends after it (a card followed by more digit
	// groups than a tail holds, say) is held whole; so is one that ends just before p, since
	// the two bytes after a match decide its edge and how much of it is kept visible, and so,
	// in turn, is a match just before that one.
	var prof profile
	if m.profiled {
		prof = profileOf(src[from:])
	}
	var near [][2]int
	for pos := from; pos < p; {
		d, s, e := m.next(src, pos, prof)
		if d == nil || s >= p {
			break
		}
		if e+2 > p-MaxPending {
			near = append(near, [2]int{s, e})
		}
		pos = e
	}
	for i := len(near) - 1; i >= 0 && near[i][0] >= n-MaxPending; i-- {
		if near[i][1]+2 > p {
			p = near[i][0]
		}
	}
	return p
}

// pendingNumber: the earliest start of a number (a digit, '+' or '(' at a number boundary) in
// the trailing run of digits and number separators.
func pendingNumber(src []byte) int {
	n := len(src)
	lo := max(0, n-pendNumber)
	i := n
	for i > lo && class[src[i-1]]&(cDigit|cNumSep) != 0 {
		i--
	}
	for k := i; k < n; k++ {
		c := src[k]
		if (isDigit(c) || c == '+' || c == '(') && leftOK(src, k) {
			return k
		}
	}
	return n
}

// pendingIBAN: a trailing run of upper-case letters, digits and single spaces that begins like
// an IBAN (a registered country code, two check digits).
func pendingIBAN(src []byte) int {
	n := len(src)
	lo := max(0, n-pendIBAN)
	i := n
	for i > lo && (class[src[i-1]]&(cUpper|cDigit) != 0 || src[i-1] == ' ') {
		i--
	}
	for k := i; k < n; k++ {
		if !isUpper(src[k]) || (k > 0 && glued(src[k-1])) {
			continue
		}
		t := src[k:]
		if len(t) >= 2 && (!isUpper(t[1]) || ibanLength[int(t[0]-'A')*26+int(t[1]-'A')] == 0) {
			continue
		}
		if (len(t) >= 3 && !isDigit(t[2])) || (len(t) >= 4 && !isDigit(t[3])) {
			continue
		}
		return k
	}
	return n
}

// pendingEmail: a trailing local part, or a local part, '@' and a domain so far.
func pendingEmail(src []byte) int {
	n := len(src)
	i := n
	for i > max(0, n-255) && class[src[i-1]]&cDomain != 0 {
		i--
	}
	if i > 0 && src[i-1] == '@' {
		at := i - 1
		j := at
		for j > max(0, at-64) && class[src[j-1]]&cLocal != 0 {
			j--
		}
		if j < at {
			return j
		}
		return n
	}
	j := n
	for j > max(0, n-64) && class[src[j-1]]&cLocal != 0 {
		j--
	}
	return j
}

// pendingAWS: a trailing AKIA/ASIA and up to 16 upper-case letters or digits (all 20 too: the
// byte after them decides whether they are a key).
func pendingAWS(src []byte) int {
	n := len(src)
	for k := max(0, n-pendAWS); k < n; k++ {
		if src[k] != 'A' || (k > 0 && glued(src[k-1])) {
			continue
		}
		t := src[k:]
		ok := (len(t) < 2 || t[1] == 'K' || t[1] == 'S') && (len(t) < 3 || t[2] == 'I') && (len(t) < 4 || t[3] == 'A')
		for _, c := range t[min(4, len(t)):] {
			ok = ok && class[c]&(cUpper|cDigit) != 0
		}
		if ok {
			return k
		}
	}
	return n
}

// pendingJWT: a trailing run of base64url and dots, with at most two dots, that starts with
// "ey" (or "e" at the very end).
func pendingJWT(src []byte) int {
	n := len(src)
	lo := max(0, n-pendJWT)
	i := n
	dots := 0
	for i > lo && (class[src[i-1]]&cB64URL != 0 || src[i-1] == '.') {
		if src[i-1] == '.' {
			dots++
		}
		i--
	}
	if i == n || dots > 2 || src[i] != 'e' || (i+1 < n && src[i+1] != 'y') || (i > 0 && src[i-1] == '*') {
		return n
	}
	if i == lo && i > 0 && (class[src[i-1]]&cB64URL != 0 || src[i-1] == '.') {
		return n // the run goes on before the window: not a start
	}
	return i
}

// pendingPEM: a private key block begun and not ended, or the first bytes of "-----BEGIN ".
func pendingPEM(src []byte) int {
	n := len(src)
	lo := max(0, n-pendPEM)
	p := n
	if k := bytes.LastIndex(src[lo:], pemBegin); k >= 0 {
		k += lo
		ls := k + len(pemBegin)
		le := bytes.Index(src[ls:], pemDash)
		switch {
		case le < 0:
			if pemLabel(bytes.TrimRight(src[ls:], "-")) {
				p = k // the BEGIN line is not complete yet
			}
		default:
			label := src[ls : ls+le]
			if bytes.HasSuffix(label, []byte("PRIVATE KEY")) && pemLabel(label) {
				end := append(append(append([]byte(nil), pemEnd...), label...), pemDash...)
				if !bytes.Contains(src[ls+le+len(pemDash):], end) {
					p = k
				}
			}
		}
	}
	for l := min(len(pemBegin)-1, n); l > 0; l-- {
		if bytes.HasPrefix(pemBegin, src[n-l:]) {
			return min(p, n-l)
		}
	}
	return p
}

// pendingWord: the trailing run of bytes that are not white space, for custom patterns (whose
// shape Pending cannot know; a pattern that matches across white space and a read boundary is
// not held).
func pendingWord(src []byte) int {
	n := len(src)
	i := n
	for i > max(0, n-pendRegex) {
		switch src[i-1] {
		case ' ', '\t', '\n', '\r':
			return i
		}
		i--
	}
	return i
}
