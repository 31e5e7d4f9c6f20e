package masking

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// findAWSKey returns the first AWS access key id starting at or after from, or -1: "AKIA"
// (long-term) or "ASIA" (temporary) followed by 16 upper-case letters or digits, not glued to
// another letter or digit.
func findAWSKey(src []byte, from int) (start, end int) {
	for from+20 <= len(src) {
		k := bytes.IndexByte(src[from:], 'A')
		if k < 0 {
			return -1, -1
		}
		i := from + k
		from = i + 1
		if i+20 > len(src) {
			return -1, -1
		}
		if (src[i+1] != 'K' && src[i+1] != 'S') || src[i+2] != 'I' || src[i+3] != 'A' ||
			(i > 0 && glued(src[i-1])) || (i+20 < len(src) && glued(src[i+20])) {
			continue
		}
		ok := true
		for _, c := range src[i+4 : i+20] {
			if class[c]&(cUpper|cDigit) == 0 {
				ok = false
				break
			}
		}
		if ok {
			return i, i + 20
		}
	}
	return -1, -1
}

// findJWT returns the first JSON Web Token starting at or after from, or -1: three base64url
// parts joined by dots (the signature may be empty, as with alg "none"), not glued to other
// base64url characters or dots, whose first part starts with "ey" (a JSON object) and decodes to
// a JSON object that has an "alg" member.
func findJWT(src []byte, from int) (start, end int) {
	for from < len(src) {
		k := bytes.Index(src[from:], []byte("ey"))
		if k < 0 {
			return -1, -1
		}
		i := from + k
		from = i + 1
		if i > 0 && (class[src[i-1]]&cB64URL != 0 || src[i-1] == '.' || src[i-1] == '*') {
			continue
		}
		h := skipB64(src, i)
		if h >= len(src) || src[h] != '.' {
			continue
		}
		p := skipB64(src, h+1)
		if p == h+1 || p >= len(src) || src[p] != '.' {
			continue
		}
		e := skipB64(src, p+1)
		if e < len(src) && src[e] == '.' {
			continue // five parts: a JWE, or not a token at all
		}
		if jwtHeader(src[i:h]) {
			return i, e
		}
	}
	return -1, -1
}

func skipB64(src []byte, i int) int {
	for i < len(src) && class[src[i]]&cB64URL != 0 {
		i++
	}
	return i
}

func jwtHeader(b []byte) bool {
	var buf [384]byte
	if base64.RawURLEncoding.DecodedLen(len(b)) > len(buf) {
		return false
	}
	n, err := base64.RawURLEncoding.Decode(buf[:], b)
	if err != nil {
		return false
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(buf[:n], &h) != nil {
		return false
	}
	_, ok := h["alg"]
	return ok
}

var (
	pemBegin = []byte("-----BEGIN ")
	pemEnd   = []byte("-----END ")
	pemDash  = []byte("-----")
)

// findPEMKey returns the first PEM private key block starting at or after from, or -1: from
// "-----BEGIN <label>-----", where the label is upper-case letters, digits and spaces ending in
// "PRIVATE KEY" (PKCS#8, RSA, EC, DSA, OPENSSH, ENCRYPTED), to the matching
// "-----END <label>-----", or to the end of the value when that is missing (a truncated key is
// still a key).
func findPEMKey(src []byte, from int) (start, end int) {
	for from < len(src) {
		k := bytes.Index(src[from:], pemBegin)
		if k < 0 {
			return -1, -1
		}
		i := from + k
		from = i + 1
		ls := i + len(pemBegin)
		le := bytes.Index(src[ls:], pemDash)
		if le < 0 {
			return -1, -1
		}
		label := src[ls : ls+le]
		if !bytes.HasSuffix(label, []byte("PRIVATE KEY")) || !pemLabel(label) {
			continue
		}
		body := ls + le + len(pemDash)
		for j := body; ; {
			m := bytes.Index(src[j:], pemEnd)
			if m < 0 {
				return i, len(src)
			}
			j += m + len(pemEnd)
			if bytes.HasPrefix(src[j:], label) && bytes.HasPrefix(src[j+len(label):], pemDash) {
				return i, j + len(label) + len(pemDash)
			}
		}
	}
	return -1, -1
}

func pemLabel(b []byte) bool {
	for _, c := range b {
		if class[c]&(cUpper|cDigit) == 0 && c != ' ' {
			return false
		}
	}
	return true
}

// maskPEMKey keeps the BEGIN and END lines and every byte of the body that is not base64 (line
// breaks, header punctuation), and an escape sequence such as \n or \u000a whole, so the block
// masked inside a JSON or SQL string literal is still a valid literal.
func maskPEMKey(out, src []byte, s, e int) []byte {
	ls := s + len(pemBegin)
	label := src[ls : ls+bytes.Index(src[ls:e], pemDash)]
	b := ls + len(label) + len(pemDash)
	out = append(out, src[s:b]...)
	tail := e // a block without its END line is masked to the end
	if n := len(pemEnd) + len(label) + len(pemDash); e-b >= n && bytes.HasPrefix(src[e-n:e], pemEnd) {
		tail = e - n
	}
	for i := b; i < tail; i++ {
		c := src[i]
		if c == '\\' && i+1 < tail {
			n := 2
			if src[i+1] == 'u' {
				n = 6
			}
			n = min(n, tail-i)
			out = append(out, src[i:i+n]...)
			i += n - 1
			continue
		}
		if isAlnum(c) || c == '+' || c == '/' || c == '=' {
			c = '*'
		}
		out = append(out, c)
	}
	return append(out, src[tail:e]...)
}
