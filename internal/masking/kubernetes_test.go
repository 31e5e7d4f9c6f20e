package masking

import (
	"bytes"
	"encoding/json"
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
		{"secret with escaped kind", `{"kind":"Secr\u0065t","data":{"k":"dmFsdWU="}}`, false, 1, true, []string{"dmFsdWU="}, nil},

		// Bodies sent to the secrets resource (sensitive): patches of every type, apply.
		{"json patch replace of a key", `[{"op":"replace","path":"/data/password","value":"aHVudGVyMg=="}]`, true, 1, true,
			[]string{"aHVudGVyMg=="}, []string{`"path":"/data/password"`, `"op":"replace"`, `"value":"***"`}},
		{"json patch add and test of keys", `[{"op":"test","path":"/stringData/a","value":"old-plain"},{"op":"add","path":"/stringData/a","value":"new-plain"}]`, true, 2, true,
			[]string{"old-plain", "new-plain"}, []string{`"op":"test"`}},
		{"json patch of the whole data", `[{"op":"add","path":"/data","value":{"a":"eHg=","b":"eXk="}}]`, true, 2, true,
			[]string{"eHg=", "eXk="}, []string{`"a":"***"`, `"b":"***"`}},
		{"json patch of the whole document", `[{"op":"replace","path":"","value":{"kind":"Secret","metadata":{"name":"s"},"data":{"a":"eHg="}}}]`, true, 1, true,
			[]string{"eHg="}, []string{`"name":"s"`}},
		{"json patch of the last-applied annotation", `[{"op":"replace","path":"/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration","value":"{\"data\":{\"a\":\"eHg=\"}}"}]`, true, 1, true,
			[]string{"eHg="}, nil},
		{"json patch of the annotations", `[{"op":"add","path":"/metadata/annotations","value":{"kubectl.kubernetes.io/last-applied-configuration":"eHg=","team":"blue"}}]`, true, 1, true,
			[]string{"eHg="}, []string{`"team":"blue"`}},
		{"json patch of a label untouched", `[{"op":"replace","path":"/metadata/labels/team","value":"blue"},{"op":"remove","path":"/data/a"},{"op":"move","from":"/data/a","path":"/data/b"}]`, true, 0, true,
			nil, []string{`"value":"blue"`, `"from":"/data/a"`}},
		{"json patch with a path that is no pointer", `[{"op":"add","path":"data/a","value":"eHg="}]`, true, 1, true, []string{"eHg="}, nil},
		{"merge patch removing a key", `{"data":{"gone":null,"kept":"eHg="}}`, true, 1, true, []string{"eHg="}, []string{`"gone":null`}},
		{"merge patch with data spelt otherwise", `{"Data":{"a":"eHg="},"STRINGDATA":{"b":"plain"}}`, true, 2, true, []string{"eHg=", "plain"}, nil},
		{"merge patch with data not a map", `{"data":"eHg="}`, true, 1, true, []string{"eHg="}, nil},
		{"strategic merge patch of kubectl apply", `{"data":{"a":"eHg="},"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"a\":\"eHg=\"}}\n"}}}`, true, 2, true,
			[]string{"eHg="}, nil},
		{"server-side apply body (JSON)", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"p":"plain"}}`, true, 1, true,
			[]string{"plain"}, []string{`"name":"s"`}},
		{"server-side apply body (YAML)", "apiVersion: v1\nkind: Secret\nstringData:\n  p: plain\n", true, 0, false, nil, nil},

		// Responses of the secrets resource that hold Secrets without their kind.
		{"table of secrets' metadata", `{"kind":"Table","rows":[{"cells":["s","Opaque",1],"object":{"kind":"PartialObjectMetadata","metadata":{"name":"s","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"a\":\"eHg=\"}}"}}}}]}`, true, 1, true,
			[]string{"eHg="}, []string{`"Opaque"`}},
		{"metadata list of secrets", `{"kind":"PartialObjectMetadataList","items":[{"metadata":{"name":"s","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"eHg="}}}]}`, true, 1, true,
			[]string{"eHg="}, nil},
		{"watch event of a table of secrets", `{"type":"ADDED","object":{"kind":"Table","rows":[{"object":{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"eHg="}}}}]}}`, true, 1, true,
			[]string{"eHg="}, []string{`"ADDED"`}},
		{"status of a refused secret request untouched", `{"kind":"Status","status":"Failure","message":"secrets \"s\" not found","reason":"NotFound","code":404}`, true, 0, true,
			nil, []string{`not found`}},

		// Tokens.
		{"token request response", `{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"name":"sa"},"spec":{"audiences":["https://kubernetes.default.svc"]},"status":{"token":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln","expirationTimestamp":"2026-11-27T05:00:00Z"}}`, false, 1, true,
			[]string{"eyJhbGciOiJSUzI1NiJ9"}, []string{`"expirationTimestamp":"2026-11-27T05:00:00Z"`, `"audiences"`}},
		{"token request to serviceaccounts/token, no token yet", `{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":null,"expirationSeconds":3600}}`, true, 0, true,
			nil, nil},
		{"token review with kind", `{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln"},"status":{"authenticated":true,"user":{"username":"system:serviceaccount:default:sa"}}}`, false, 1, true,
			[]string{"eyJhbGciOiJSUzI1NiJ9"}, []string{`"username":"system:serviceaccount:default:sa"`}},
		{"token review without kind", `{"apiVersion":"authentication.k8s.io/v1","spec":{"token":"opaque-bearer"}}`, true, 1, true,
			[]string{"opaque-bearer"}, nil},
		{"token field of another kind untouched", `{"kind":"ConfigMap","data":{"token":"v"},"spec":{"token":"w"}}`, false, 0, true, nil, []string{`"token":"v"`, `"token":"w"`}},
		{"certificate signing request untouched", `{"kind":"CertificateSigningRequest","status":{"certificate":"LS0tLS1CRUdJTg=="}}`, false, 0, true, nil, []string{"LS0tLS1CRUdJTg=="}},

		{"secret whose data is given twice", `{"kind":"Secret","data":{"k":"eHg="},"data":null}`, false, 0, true, []string{"eHg="}, []string{`"data":null`}},
		{"secret patch whose key is given twice", `{"data":{"k":"eHg=","k":null}}`, true, 0, true, []string{"eHg="}, []string{`"k":null`}},
		{"key twice elsewhere", `{"kind":"SecretList","metadata":{"a":1,"a":2},"items":[]}`, false, 0, true, nil, []string{`"a":2`}},
		{"same key in two objects is no duplicate", `{"kind":"SecretList","items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}],"metadata":{}}`, false, 0, true,
			nil, []string{`"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}],"metadata":{}}`}},
		{"a closing bracket and a second document", `{"a":1}]{"data":{"k":"eHg="}}`, true, 0, false, nil, nil},
		{"two documents", `{"kind":"ConfigMap"} {"kind":"Secret","data":{"k":"eHg="}}`, false, 0, false, nil, nil},
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
	f.Add([]byte(`[{"op":"add","path":"/data/a","value":"b"}]`), true)
	f.Add([]byte(`{"kind":"Secret","data":{"a":"b"},"data":null,"x":[{"y":1,"y":2}]}`), false)
	f.Fuzz(func(t *testing.T, in []byte, secret bool) {
		out, n, ok := MaskKubeSecrets(in, secret)
		if ok && n > 0 && strings.Contains(string(out), `"data":{"a":"b"}`) {
			t.Errorf("masked %d values but kept data in %s", n, out)
		}
		if doc := bytes.TrimSpace(out); ok && len(doc) > 0 && !json.Valid(doc) {
			t.Errorf("ok but not JSON: %q", out)
		}
		if ok && secret && strings.Contains(string(out), `"data":{"a":"b"}`) {
			t.Errorf("a body of a credential resource kept data in %s", out)
		}
	})
}

func TestKubeCredentialResource(t *testing.T) {
	tests := []struct {
		group, resource, sub string
		want                 bool
	}{
		{"", "secrets", "", true},
		{"authentication.k8s.io", "tokenreviews", "", true},
		{"", "serviceaccounts", "token", true},
		{"", "serviceaccounts", "", false},
		{"", "configmaps", "", false},
		{"certificates.k8s.io", "certificatesigningrequests", "", false},
	}
	for _, tt := range tests {
		if got := KubeCredentialResource(tt.group, tt.resource, tt.sub); got != tt.want {
			t.Errorf("KubeCredentialResource(%q, %q, %q) = %v, want %v", tt.group, tt.resource, tt.sub, got, tt.want)
		}
	}
}
