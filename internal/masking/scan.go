package masking

// Byte classes, looked up in one table so the scanners that run on every value stay branch-light.
const (
	cDigit  = 1 << iota // 0-9
	cUpper              // A-Z
	cLower              // a-z
	cWord               // letters, digits, '_'
	cLocal              // the practical email local-part set: letters, digits, . _ % + -
	cDomain             // letters, digits, . -
	cB64URL             // base64url alphabet: letters, digits, - _
	cNumSep             // what may join the digit groups of a card, phone or SSN: space - . ( ) +
)

var class = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= cDigit | cWord | cLocal | cDomain | cB64URL
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= cUpper | cWord | cLocal | cDomain | cB64URL
		t[c+'a'-'A'] |= cLower | cWord | cLocal | cDomain | cB64URL
	}
	t['_'] |= cWord | cLocal | cB64URL
	t['-'] |= cLocal | cDomain | cB64URL
	t['.'] |= cLocal | cDomain
	t['%'] |= cLocal
	t['+'] |= cLocal
	for _, c := range " -.()+" {
		t[c] |= cNumSep
	}
	return t
}()

func isDigit(c byte) bool { return class[c]&cDigit != 0 }
func isUpper(c byte) bool { return class[c]&cUpper != 0 }
func isWord(c byte) bool  { return class[c]&cWord != 0 }
func isAlnum(c byte) bool { return class[c]&(cDigit|cUpper|cLower) != 0 }

// glued reports whether a token next to c is part of a larger word. '*' counts: it is what
// masked letters and digits become, so masked output must draw the same boundaries as its
// source did, or masking it again would find new matches.
func glued(c byte) bool { return class[c]&cWord != 0 || c == '*' }

// skipDigits returns the index of the first non-digit at or after i.
func skipDigits(src []byte, i int) int {
	for i < len(src) && isDigit(src[i]) {
		i++
	}
	return i
}

// leftOK reports whether a number-like token may start at s: it is not glued to a word
// (x4111..., see glued), and not the tail of a dotted or dashed number (1.4111..., 12-4111...). A space
// before it is fine even after a digit: "order 1234 4111 1111 1111 1111" holds a card.
func leftOK(src []byte, s int) bool {
	if s == 0 {
		return true
	}
	c := src[s-1]
	if glued(c) {
		return false
	}
	return !((c == '-' || c == '.') && s >= 2 && isDigit(src[s-2]))
}

// rightOK is leftOK for the end of a token at e (exclusive).
func rightOK(src []byte, e int) bool {
	if e >= len(src) {
		return true
	}
	c := src[e]
	if glued(c) {
		return false
	}
	return !((c == '-' || c == '.') && e+1 < len(src) && isDigit(src[e+1]))
}

// continues reports whether the token ending at e is followed by a space and another digit,
// i.e. it is not the last number of a space-separated run. The number masks then keep no digits
// at all: kept digits next to more digits could form a new match when masked output is masked
// again, and masking must be idempotent.
func continues(src []byte, e int) bool {
	return e+1 < len(src) && src[e] == ' ' && isDigit(src[e+1])
}

// appendDigitsMasked appends seg with every digit but the last keep replaced by '*'; other bytes
// (separators, '+', parentheses) are kept so the value keeps its shape.
func appendDigitsMasked(out, seg []byte, keep int) []byte {
	n := 0
	for _, c := range seg {
		if isDigit(c) {
			n++
		}
	}
	for _, c := range seg {
		if isDigit(c) {
			if n > keep {
				c = '*'
			}
			n--
		}
		out = append(out, c)
	}
	return out
}

// appendStars appends n '*'.
func appendStars(out []byte, n int) []byte {
	for ; n > 0; n-- {
		out = append(out, '*')
	}
	return out
}

// appendAlnumMasked appends seg with ASCII letters and digits and every non-ASCII byte replaced
// by '*'. Punctuation stays, so a masked value inside an array, composite or JSON literal keeps
// the literal's syntax (quotes, braces, commas and backslashes are never rewritten).
func appendAlnumMasked(out, seg []byte) []byte {
	for _, c := range seg {
		if isAlnum(c) || c >= 0x80 {
			c = '*'
		}
		out = append(out, c)
	}
	return out
}

// profile is what one pass over a value says about it: the most digits in one run of digits and
// number separators, and whether it holds an upper-case letter. The number detectors and the
// IBAN detector need these; a value that cannot hold their shortest match skips them, which is
// what makes a value without a match cheap (one table lookup per byte).
type profile struct {
	digits int
	upper  bool
}

func profileOf(src []byte) profile {
	best, run := 0, 0
	var all uint8
	for _, c := range src {
		k := class[c]
		all |= k
		if k&cDigit != 0 {
			run++
			best = max(best, run)
		} else if k&cNumSep == 0 {
			run = 0
		}
	}
	return profile{digits: best, upper: all&cUpper != 0}
}
