package masking

// findSSN returns the first US social security number starting at or after from, or -1:
// AAA-GG-SSSS (dashes, or spaces, the same both times) at number boundaries, where the area AAA
// is 001-899 but not 666, the group GG is not 00 and the serial SSSS is not 0000. A bare run of
// nine digits is not taken for an SSN; use a column rule for such columns.
func findSSN(src []byte, from int) (start, end int) {
	for i := from; i+11 <= len(src); {
		if !isDigit(src[i]) {
			i++
			continue
		}
		if leftOK(src, i) && isSSN(src, i) {
			return i, i + 11
		}
		i = skipDigits(src, i)
	}
	return -1, -1
}

func isSSN(b []byte, i int) bool {
	sep := b[i+3]
	if (sep != '-' && sep != ' ') || b[i+6] != sep ||
		!digitsN(b, i, 3) || !digitsN(b, i+4, 2) || !digitsN(b, i+7, 4) || !rightOK(b, i+11) {
		return false
	}
	area := int(b[i]-'0')*100 + int(b[i+1]-'0')*10 + int(b[i+2]-'0')
	if area == 0 || area == 666 || area >= 900 {
		return false
	}
	return string(b[i+4:i+6]) != "00" && string(b[i+7:i+11]) != "0000"
}

// maskSSN keeps the separators and the serial: "***-**-6789" (no digits when more follow,
// see continues).
func maskSSN(out, src []byte, s, e int) []byte {
	keep := 4
	if continues(src, e) {
		keep = 0
	}
	return appendDigitsMasked(out, src[s:e], keep)
}

// ibanLength is the IBAN length of each country in the SWIFT IBAN registry, indexed by the
// two-letter code ((c0-'A')*26 + c1-'A'); 0 means no IBAN.
var ibanLength = func() (t [26 * 26]uint8) {
	for _, e := range []struct {
		cc string
		n  uint8
	}{
		{"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
		{"BG", 22}, {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22},
		{"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DJ", 27}, {"DK", 18}, {"DO", 28}, {"EE", 20},
		{"EG", 29}, {"ES", 24}, {"FI", 18}, {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22},
		{"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HN", 28}, {"HR", 21},
		{"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30},
		{"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
		{"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MN", 20},
		{"MR", 27}, {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23},
		{"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22},
		{"RU", 33}, {"SA", 24}, {"SC", 31}, {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24},
		{"SM", 27}, {"SO", 23}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26},
		{"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20}, {"YE", 30},
	} {
		t[int(e.cc[0]-'A')*26+int(e.cc[1]-'A')] = e.n
	}
	return t
}()

// findIBAN returns the first IBAN starting at or after from, or -1: a country code with an entry
// in the registry, two check digits, then upper-case letters and digits up to the country's
// length, either compact or in groups of four separated by single spaces, at word boundaries,
// whose ISO 7064 mod-97 remainder is 1. Lower-case IBANs are not recognised.
func findIBAN(src []byte, from int) (start, end int) {
	for i := from; i+15 <= len(src); i++ {
		if !isUpper(src[i]) || !isUpper(src[i+1]) || !isDigit(src[i+2]) || !isDigit(src[i+3]) ||
			(i > 0 && glued(src[i-1])) {
			continue
		}
		want := int(ibanLength[int(src[i]-'A')*26+int(src[i+1]-'A')])
		if want == 0 {
			continue
		}
		n, j := 4, i+4
		for n < want && j < len(src) {
			c := src[j]
			if c == ' ' && n%4 == 0 && j+1 < len(src) && class[src[j+1]]&(cUpper|cDigit) != 0 {
				j++
				continue
			}
			if class[c]&(cUpper|cDigit) == 0 {
				break
			}
			n++
			j++
		}
		if n == want && (j == len(src) || !glued(src[j])) && ibanValid(src[i:j]) {
			return i, j
		}
	}
	return -1, -1
}

// ibanValid computes the mod-97 remainder of the IBAN with its first four characters moved to
// the end and letters read as 10..35.
func ibanValid(b []byte) bool {
	r := 0
	add := func(c byte) {
		switch {
		case isDigit(c):
			r = (r*10 + int(c-'0')) % 97
		case isUpper(c):
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	for _, c := range b[4:] {
		add(c)
	}
	for _, c := range b[:4] {
		add(c)
	}
	return r == 1
}

// maskIBAN keeps the country code, the spaces and the last four characters:
// "DE** **** **** **** **30 00" (only the country code when digits follow, see continues).
func maskIBAN(out, src []byte, s, e int) []byte {
	keep := 4
	if continues(src, e) {
		keep = 0
	}
	n := 0
	for _, c := range src[s:e] {
		if c != ' ' {
			n++
		}
	}
	for k, c := range src[s:e] {
		if c != ' ' {
			if k >= 2 && n > keep {
				c = '*'
			}
			n--
		}
		out = append(out, c)
	}
	return out
}
