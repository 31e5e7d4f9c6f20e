package masking

import (
	"bytes"
	"encoding/json"
)

// KubeSecretMask replaces each value of a Kubernetes Secret's data and stringData in a
// recording.
const KubeSecretMask = "***"

// lastApplied is the annotation in which kubectl apply keeps the object it applied: for a
// Secret, its data in clear.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// MaskKubeSecrets returns body (a Kubernetes JSON document: an object, a list, a Table, a watch
// event) with the values of every Secret's data and stringData, and the last-applied
// annotation of Secrets, replaced by KubeSecretMask, and how many values it replaced. A Secret
// is an object of kind Secret, an item of a SecretList, or, when secretResource is set (the
// request addressed the secrets resource: a patch body has no kind), the document itself and
// its items. ok is false when body is not JSON: the caller must then not keep it.
// When nothing is masked, body is returned as it is.
func MaskKubeSecrets(body []byte, secretResource bool) (out []byte, n int, ok bool) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return body, 0, true
	}
	if !bytes.Contains(body, []byte("Secret")) && !secretResource {
		// Only valid JSON is kept; checking costs less than decoding.
		return body, 0, json.Valid(trimmed)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, 0, false
	}
	n = maskSecretsIn(v, secretResource)
	if n == 0 {
		return body, 0, true
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, 0, false
	}
	return out, n, true
}

func maskSecretsIn(v any, isSecret bool) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		kind, _ := x["kind"].(string)
		if kind == "Secret" || isSecret {
			n += maskSecret(x)
		}
		itemsAreSecrets := kind == "SecretList" || (isSecret && kind == "")
		for k, child := range x {
			switch k {
			case "items":
				if list, ok := child.([]any); ok {
					for _, it := range list {
						n += maskSecretsIn(it, itemsAreSecrets)
					}
				}
			case "data", "stringData":
				if kind == "Secret" || isSecret {
					continue // masked above
				}
				n += maskSecretsIn(child, false)
			default:
				n += maskSecretsIn(child, false)
			}
		}
	case []any:
		for _, it := range x {
			n += maskSecretsIn(it, false)
		}
	}
	return n
}

// maskSecret masks the values of a Secret object's data and stringData and its last-applied
// annotation.
func maskSecret(obj map[string]any) int {
	n := 0
	for _, field := range []string{"data", "stringData"} {
		if m, ok := obj[field].(map[string]any); ok {
			for k := range m {
				m[k] = KubeSecretMask
				n++
			}
		}
	}
	if md, ok := obj["metadata"].(map[string]any); ok {
		if ann, ok := md["annotations"].(map[string]any); ok {
			if _, ok := ann[lastApplied]; ok {
				ann[lastApplied] = KubeSecretMask
				n++
			}
		}
	}
	return n
}
