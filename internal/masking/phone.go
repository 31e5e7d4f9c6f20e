package masking

// findPhone returns the first phone number starting at or after from, or -1. Three shapes are
// recognised, all at number boundaries; a bare run of digits never is (it is too often an id):
//
//   - international (E.164 as people write it): '+', a digit 1-9, then digit groups joined by
//     single spaces, dashes or dots, a group may be in parentheses ("+44 (0)20 7946 0958"),
//     8 to 15 digits in all;
//   - North American: optional "1" and a separator, an area code NXX either as "(NXX)" with an
//     optional space or followed by a separator, then NXX, separator, XXXX, where N is 2-9 and
//     the separators (space, dash, dot) are the same: "(415) 555-2671", "415.555.2671";
//   - trunk-prefixed national numbers: '0' then 1-9, a first group of 2 to 5 digits, 2 to 6
//     groups joined by one kind of separator (space or dash), 9 to 11 digits: "020 7946 0958",
//     "06 12 34 56 78", "030-1234567".
func findPhone(src []byte, from int) (start, end int) {
	for i := from; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '+':
			if leftOK(src, i) {
				if e := intlPhone(src, i); e > 0 {
					return i, e
				}
			}
		case c == '(' || isDigit(c):
			if leftOK(src, i) && (i == 0 || src[i-1] != '+') {
				if e := nanpPhone(src, i); e > 0 {
					return i, e
				}
				if c == '0' {
					if e := trunkPhone(src, i); e > 0 {
						return i, e
					}
				}
			}
			if c != '(' {
				i = skipDigits(src, i) - 1
			}
		}
	}
	return -1, -1
}

func intlPhone(src []byte, i int) int {
	j := i + 1
	if j >= len(src) || src[j] < '1' || src[j] > '9' {
		return 0
	}
	best, n := 0, 0
	for {
		paren := j < len(src) && src[j] == '('
		if paren {
			j++
		}
		k := skipDigits(src, j)
		if k == j {
			return best
		}
		n += k - j
		if paren {
			if k >= len(src) || src[k] != ')' {
				return best
			}
			k++
		}
		if n > 15 {
			return best
		}
		if n >= 8 && rightOK(src, k) {
			best = k
		}
		switch {
		case k+1 < len(src) && (src[k] == ' ' || src[k] == '-' || src[k] == '.') &&
			(isDigit(src[k+1]) || src[k+1] == '('):
			j = k + 1
		case k < len(src) && src[k] == '(', paren && k < len(src) && isDigit(src[k]):
			j = k
		default:
			return best
		}
	}
}

func isPhoneSep(c byte) bool { return c == ' ' || c == '-' || c == '.' }

// digitsN reports whether src[i:i+n] are digits not followed by another digit.
func digitsN(src []byte, i, n int) bool {
	if i+n > len(src) {
		return false
	}
	for k := i; k < i+n; k++ {
		if !isDigit(src[k]) {
			return false
		}
	}
	return i+n == len(src) || !isDigit(src[i+n])
}

func nanpPhone(src []byte, i int) int {
	j := i
	if src[j] == '1' && j+2 < len(src) && isPhoneSep(src[j+1]) {
		j += 2
	}
	var sep byte
	if src[j] == '(' {
		if !digitsN(src, j+1, 3) || src[j+1] < '2' || j+4 >= len(src) || src[j+4] != ')' {
			return 0
		}
		j += 5
		if j < len(src) && src[j] == ' ' {
			j++
		}
	} else {
		if !digitsN(src, j, 3) || src[j] < '2' || j+3 >= len(src) || !isPhoneSep(src[j+3]) {
			return 0
		}
		sep = src[j+3]
		j += 4
	}
	if !digitsN(src, j, 3) || src[j] < '2' || j+3 >= len(src) || !isPhoneSep(src[j+3]) {
		return 0
	}
	if sep != 0 && src[j+3] != sep {
		return 0
	}
	j += 4
	if !digitsN(src, j, 4) || !rightOK(src, j+4) {
		return 0
	}
	return j + 4
}

func trunkPhone(src []byte, i int) int {
	if i+1 >= len(src) || src[i+1] < '1' || src[i+1] > '9' {
		return 0
	}
	best, n, groups := 0, 0, 0
	var sep byte
	for j := i; ; {
		k := skipDigits(src, j)
		g := k - j
		if groups == 0 && (g < 2 || g > 5) {
			return 0
		}
		n += g
		groups++
		if n > 11 || groups > 6 {
			return best
		}
		if groups >= 2 && n >= 9 && rightOK(src, k) {
			best = k
		}
		if k+1 < len(src) && (src[k] == ' ' || src[k] == '-') && isDigit(src[k+1]) &&
			(sep == 0 || sep == src[k]) {
			sep = src[k]
			j = k + 1
			continue
		}
		return best
	}
}

// maskPhone keeps '+', separators, parentheses and the last four digits: "+* *** ***-2671".
func maskPhone(out, src []byte, s, e int) []byte {
	keep := 4
	if continues(src, e) {
		keep = 0
	}
	return appendDigitsMasked(out, src[s:e], keep)
}
