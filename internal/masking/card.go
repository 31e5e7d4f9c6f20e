package masking

// findCard returns the first payment card number starting at or after from, or -1.
//
// A candidate is a run of digit groups joined by single spaces or dashes, starting and ending at
// a number boundary (leftOK/rightOK), with 13 to 19 digits in all, that passes the Luhn check.
// Within a space-separated run of groups, every group start is tried and the longest valid
// candidate from the earliest start wins; a single run of more than 19 digits is never searched
// for a card inside it (a 24-digit reference is not a card number).
func findCard(src []byte, from int) (start, end int) {
	for i := from; i < len(src); {
		if !isDigit(src[i]) {
			i++
			continue
		}
		if leftOK(src, i) {
			if e := cardFrom(src, i); e > 0 {
				return i, e
			}
		}
		i = skipDigits(src, i)
	}
	return -1, -1
}

// cardFrom returns the end of the longest card number starting at s, or 0.
func cardFrom(src []byte, s int) int {
	best, n := 0, 0
	for i := s; ; {
		j := skipDigits(src, i)
		n += j - i
		if n > 19 {
			return best
		}
		if n >= 13 && rightOK(src, j) && luhn(src[s:j]) {
			best = j
		}
		if j+1 < len(src) && (src[j] == ' ' || src[j] == '-') && isDigit(src[j+1]) {
			i = j + 1
			continue
		}
		return best
	}
}

// luhn checks the Luhn (mod 10) check digit over the digits of b, ignoring other bytes.
func luhn(b []byte) bool {
	sum, double := 0, false
	for i := len(b) - 1; i >= 0; i-- {
		c := b[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// maskCard keeps the separators and the last four digits: "**** **** **** 1111".
func maskCard(out, src []byte, s, e int) []byte {
	keep := 4
	if continues(src, e) {
		keep = 0
	}
	return appendDigitsMasked(out, src[s:e], keep)
}

// MaskNumber masks a value that is a whole number in text form (an int8 or numeric column, a
// JSON number) when it is a payment card number: 13 to 19 digits that pass Luhn, with an optional
// sign and an optional fraction (numeric(20,2) prints 4111111111111111.00). out is the star form
// ("************1111", the fraction kept) in a new slice; when hit is false out is src. It only
// applies when the masker has the credit_card detector. Other detectors never look at numbers:
// a bare number is not an email, and a bare 9- or 10-digit number is too often an id to be
// taken for an SSN or phone (use a column rule for those columns).
func (m *Masker) MaskNumber(src []byte) (out []byte, hit bool) {
	if !m.card {
		return src, false
	}
	i := 0
	if i < len(src) && (src[i] == '-' || src[i] == '+') {
		i++
	}
	j := skipDigits(src, i)
	if n := j - i; n < 13 || n > 19 {
		return src, false
	}
	if j < len(src) {
		if src[j] != '.' || skipDigits(src, j+1) != len(src) {
			return src, false
		}
	}
	if !luhn(src[i:j]) {
		return src, false
	}
	out = make([]byte, 0, len(src))
	out = append(out, src[:i]...)
	out = appendDigitsMasked(out, src[i:j], 4)
	return append(out, src[j:]...), true
}
