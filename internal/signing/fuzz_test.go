package signing

import "testing"

// FuzzParsePublicKeys: key files come from users; parsing must not panic, and every key it
// returns is a whole Ed25519 key with its id.
func FuzzParsePublicKeys(f *testing.F) {
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte(`{"keys":[{"algorithm":"ed25519","public_key":"Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="}]}`))
	f.Add([]byte("Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParsePublicKeys(b)
		if err != nil {
			return
		}
		for _, k := range keys {
			if len(k.Key) != 32 || k.ID != KeyID(k.Key) {
				t.Fatalf("key %+v", k)
			}
		}
	})
}
