package masking

import "bytes"

// findEmail returns the first email address starting at or after from, or -1: a local part of
// 1 to 64 bytes from [A-Za-z0-9._%+-] that does not start with '.' and does not follow an '@'
// directly, '@', and a domain of at least two dot-separated labels of [A-Za-z0-9-] (each 1 to 63
// bytes, no leading or trailing '-') whose last label, the TLD, is 2 or more letters. Quoted
// local parts and internationalised addresses are not recognised.
func findEmail(src []byte, from int) (start, end int) {
	lo := from
	for from < len(src) {
		k := bytes.IndexByte(src[from:], '@')
		if k < 0 {
			return -1, -1
		}
		at := from + k
		from = at + 1
		s := at
		for s > 0 && class[src[s-1]]&cLocal != 0 {
			s--
		}
		// The whole local run must be ours: a run that reaches back into the previous match, or
		// starts with '.' (what a kept TLD looks like in masked output), or follows an '@', is
		// not an address. This keeps masking idempotent.
		if s == at || at-s > 64 || s < lo || src[s] == '.' || (s > 0 && src[s-1] == '@') {
			continue
		}
		if e := emailDomain(src, at+1); e > 0 {
			return s, e
		}
	}
	return -1, -1
}

// emailDomain returns the end of a valid domain starting at d, or 0.
func emailDomain(src []byte, d int) int {
	e := d
	for e < len(src) && class[src[e]]&cDomain != 0 {
		e++
	}
	for e > d && (src[e-1] == '.' || src[e-1] == '-') {
		e--
	}
	labels, ls := 0, d
	for i := d; i <= e; i++ {
		if i < e && src[i] != '.' {
			continue
		}
		n := i - ls
		if n == 0 || n > 63 || src[ls] == '-' || src[i-1] == '-' {
			return 0
		}
		labels++
		if i == e { // the TLD
			if labels < 2 || n < 2 {
				return 0
			}
			for _, c := range src[ls:e] {
				if class[c]&(cUpper|cLower) == 0 {
					return 0
				}
			}
		}
		ls = i + 1
	}
	return e
}

// maskEmail keeps the first byte of the local part and the TLD: "j****@****.com".
func maskEmail(out, src []byte, s, e int) []byte {
	tld := bytes.LastIndexByte(src[s:e], '.') + s
	out = append(out, src[s])
	out = append(out, "****@****"...)
	return append(out, src[tld:e]...)
}
