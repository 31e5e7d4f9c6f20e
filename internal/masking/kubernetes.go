package masking

import (
	"bytes"
	"encoding/json"
	"strings"
)

// KubeSecretMask replaces each masked value of a Kubernetes document in a recording.
const KubeSecretMask = "***"

// lastApplied is the annotation in which kubectl apply keeps the object it applied: for a
// Secret, its data in clear.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// KubeCredentialResource reports whether requests to a resource (and subresource) of the
// Kubernetes API carry credentials in documents that may have no kind: a patch of a Secret, a
// TokenReview posted without its kind. The bodies of such requests and of their responses are
// masked as a whole (see MaskKubeSecrets), and kept only when they can be parsed. The group is
// not checked: a custom resource named secrets is masked as Secrets are.
func KubeCredentialResource(group, resource, subresource string) bool {
	switch {
	case resource == "secrets", resource == "tokenreviews":
		return true
	case resource == "serviceaccounts" && subresource == "token":
		return true // a TokenRequest: its status.token is a bearer token
	}
	return false
}

// MaskKubeSecrets returns body (a Kubernetes JSON document: an object, a list, a Table, a watch
// event, a patch) with its credentials replaced by KubeSecretMask, and how many values it
// replaced. The credentials are:
//   - the values of a Secret's data and stringData, and its last-applied annotation (which
//     holds them in clear); a Secret is an object of kind Secret or an item of a SecretList;
//   - the status.token of a TokenRequest and the spec.token of a TokenReview.
//
// When sensitive is set (the request addressed a credential resource, KubeCredentialResource),
// every object in body, at any depth and of any kind, is taken for one of these, so that a
// patch without kind, the metadata of Secrets in a Table or a PartialObjectMetadataList, or a
// watch event are masked too; and a JSON patch (RFC 6902) has the value of each operation
// masked as if it stood at the operation's path.
//
// A null value is kept: it reveals nothing (in a patch it removes a key). ok is false when
// body is not JSON: the caller must then not keep it. When nothing is masked, body is
// returned as it is, unless an object in it has a key twice (`{"data":{...},"data":null}`):
// out is then body as decoded, each key with its last value.
func MaskKubeSecrets(body []byte, sensitive bool) (out []byte, n int, ok bool) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return body, 0, true
	}
	if !sensitive && !mayHoldCredential(trimmed) {
		// Only valid JSON is kept; checking costs less than decoding.
		return body, 0, json.Valid(trimmed)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || len(bytes.TrimSpace(trimmed[dec.InputOffset():])) > 0 {
		return nil, 0, false // not JSON, or more than one document (dec.More misses a "]" after it)
	}
	n = maskKube(v, sensitive)
	if n == 0 && !hasDuplicateKey(trimmed) {
		return body, 0, true
	}
	// Masked, or a key given twice: what was decoded (the last value of each key) is kept,
	// never a value the masking did not see.
	out, err := json.Marshal(v)
	if err != nil {
		return nil, 0, false
	}
	return out, n, true
}

// mayHoldCredential reports whether a document may name one of the kinds MaskKubeSecrets
// masks: Secret, SecretList, TokenRequest, TokenReview, or spell a kind with a \u escape.
func mayHoldCredential(b []byte) bool {
	return bytes.Contains(b, []byte("Secret")) || bytes.Contains(b, []byte("Token")) ||
		bytes.Contains(b, []byte(`\u`))
}

// maskKube masks the credentials in v (decoded JSON); sensitive says that every object in it
// is taken for a credential's.
func maskKube(v any, sensitive bool) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		kind, _ := x["kind"].(string)
		secret := sensitive || kind == "Secret"
		if secret {
			n += maskSecret(x)
		}
		if sensitive || kind == "TokenRequest" {
			n += maskToken(x, "status")
		}
		if sensitive || kind == "TokenReview" {
			n += maskToken(x, "spec")
		}
		for k, child := range x {
			switch {
			case secret && isSecretData(k):
				// masked above
			case k == "items":
				n += maskKube(child, sensitive || kind == "SecretList")
			default:
				n += maskKube(child, sensitive)
			}
		}
	case []any:
		for _, it := range x {
			if op, ok := it.(map[string]any); ok && sensitive && isPatchOp(op) {
				n += maskPatchOp(op)
				continue
			}
			n += maskKube(it, sensitive)
		}
	}
	return n
}

// isSecretData reports whether k names a Secret's data or stringData. Case is ignored, as
// older API servers ignored it when decoding.
func isSecretData(k string) bool {
	return strings.EqualFold(k, "data") || strings.EqualFold(k, "stringData")
}

// maskSecret masks the values of an object's data and stringData and its last-applied
// annotation.
func maskSecret(obj map[string]any) int {
	n := 0
	for k, v := range obj {
		if !isSecretData(k) {
			continue
		}
		switch m := v.(type) {
		case nil:
		case map[string]any:
			for key, val := range m {
				if val != nil {
					m[key] = KubeSecretMask
					n++
				}
			}
		default: // not a map: not a valid Secret, but what it holds is no less secret
			obj[k] = KubeSecretMask
			n++
		}
	}
	if md, ok := obj["metadata"].(map[string]any); ok {
		if ann, ok := md["annotations"].(map[string]any); ok {
			if v, ok := ann[lastApplied]; ok && v != nil {
				ann[lastApplied] = KubeSecretMask
				n++
			}
		}
	}
	return n
}

// maskToken masks the token in obj[field] (the status of a TokenRequest, the spec of a
// TokenReview).
func maskToken(obj map[string]any, field string) int {
	m, ok := obj[field].(map[string]any)
	if !ok {
		return 0
	}
	n := 0
	for k, v := range m {
		if strings.EqualFold(k, "token") && v != nil {
			m[k] = KubeSecretMask
			n++
		}
	}
	return n
}

// isPatchOp reports whether m is an operation of a JSON patch.
func isPatchOp(m map[string]any) bool {
	_, op := m["op"].(string)
	_, path := m["path"].(string)
	return op && path
}

// maskPatchOp masks the value of a JSON patch operation on a credential resource: the value
// is placed at the operation's path in an otherwise empty object, masked there as a whole
// document would be, and taken back. A path that is not a JSON pointer has its value masked
// whole.
func maskPatchOp(op map[string]any) int {
	val, ok := op["value"]
	if !ok || val == nil {
		return 0
	}
	tokens, ok := pointerTokens(op["path"].(string))
	if !ok {
		op["value"] = KubeSecretMask
		return 1
	}
	if len(tokens) == 0 {
		return maskKube(val, true) // the whole document
	}
	root := map[string]any{}
	parent := root
	for _, t := range tokens[:len(tokens)-1] {
		m := map[string]any{}
		parent[t] = m
		parent = m
	}
	last := tokens[len(tokens)-1]
	parent[last] = val
	n := maskKube(root, true)
	op["value"] = parent[last]
	return n
}

// pointerTokens splits a JSON pointer (RFC 6901) into its unescaped reference tokens.
func pointerTokens(p string) ([]string, bool) {
	if p == "" {
		return nil, true
	}
	if p[0] != '/' {
		return nil, false
	}
	tokens := strings.Split(p[1:], "/")
	for i, t := range tokens {
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return tokens, true
}

// hasDuplicateKey reports whether an object in the JSON document b has a key twice. b is
// valid JSON.
func hasDuplicateKey(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		keys  map[string]bool // nil for an array
		isKey bool            // the next token of an object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false // io.EOF: the end
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.keys != nil && top.isKey {
				if d, ok := tok.(json.Delim); ok && d == '}' {
					stack = stack[:len(stack)-1]
					continue
				}
				k, _ := tok.(string)
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.isKey = false
				continue
			}
			if top.keys != nil {
				top.isKey = true // this token is the value
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]bool{}, isKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}
