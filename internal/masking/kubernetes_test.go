package masking

import (
	"strings"
	"testing"
)

func TestMaskKubeSecrets(t *testing.T) {
	tests := []struct {
		name           string
		in             string
		secretResource bool
		n              int
		ok             bool
		leaks          []string // must not be in the output
		keeps          []string // must be
	}{
		{"secret", `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"p\":\"c2VjcmV0\"}}"}},"data":{"p":"c2VjcmV0","q":"eHg="},"stringData":{"r":"plain"}}`,
			false, 4, true, []string{"c2VjcmV0", "eHg=", "plain"}, []string{`"name":"s"`, `"p":"***"`}},
		{"secret list items have no kind", `{"kind":"SecretList","items":[{"metadata":{"name":"a"},"data":{"k":"dmFsdWU="}}]}`,
			false, 1, true, []string{"dmFsdWU="}, []string{`"name":"a"`}},
		{"watch event", `{"type":"ADDED","object":{"kind":"Secret","data":{"k":"dmFsdWU="}}}`, false, 1, true, []string{"dmFsdWU="}, []string{`"ADDED"`}},
		{"patch body of a secret", `{"data":{"k":"dmFsdWU="}}`, true, 1, true, []string{"dmFsdWU="}, nil},
		{"configmap untouched", `{"kind":"ConfigMap","data":{"k":"v"}}`, false, 0, true, nil, []string{`"k":"v"`}},
		{"configmap mentioning Secret untouched", `{"kind":"ConfigMap","data":{"Secret":"v"}}`, false, 0, true, nil, []string{`"Secret":"v"`}},
		{"table with full objects", `{"kind":"Table","rows":[{"cells":["a"],"object":{"kind":"Secret","data":{"k":"dmFsdWU="}}}]}`, false, 1, true, []string{"dmFsdWU="}, nil},
		{"not JSON", `kind: Secret`, false, 0, false, nil, nil},
		{"empty", ``, false, 0, true, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, n, ok := MaskKubeSecrets([]byte(tt.in), tt.secretResource)
			if n != tt.n || ok != tt.ok {
				t.Fatalf("n=%d ok=%v, want %d %v; out %s", n, ok, tt.n, tt.ok, out)
			}
			for _, l := range tt.leaks {
				if strings.Contains(string(out), l) {
					t.Errorf("output %s still holds %q", out, l)
				}
			}
			for _, k := range tt.keeps {
				if !strings.Contains(string(out), k) {
					t.Errorf("output %s lost %q", out, k)
				}
			}
		})
	}
}

func FuzzMaskKubeSecrets(f *testing.F) {
	f.Add([]byte(`{"kind":"Secret","data":{"a":"b"}}`), false)
	f.Add([]byte(`{"items":[{"data":{"a":"b"}}]}`), true)
	f.Fuzz(func(t *testing.T, in []byte, secret bool) {
		out, n, ok := MaskKubeSecrets(in, secret)
		if ok && n > 0 && strings.Contains(string(out), `"data":{"a":"b"}`) {
			t.Errorf("masked %d values but kept data in %s", n, out)
		}
	})
}
