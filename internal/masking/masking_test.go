package masking

import (
	"bytes"
	"strings"
	"testing"
)

const testJWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

func mustNew(t testing.TB, specs ...string) *Masker {
	t.Helper()
	m, err := New(specs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDetectors: each detector on its own, positives with the exact masked shape and near misses
// that must come back untouched (want == "").
func TestDetectors(t *testing.T) {
	pem := "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM\nkRUhOz6q+/b==\n-----END RSA PRIVATE KEY-----"
	pemMasked := "-----BEGIN RSA PRIVATE KEY-----\n************************************\n*************\n-----END RSA PRIVATE KEY-----"
	tests := []struct {
		det, in, want string
	}{
		// credit_card
		{CreditCard, "4111111111111111", "************1111"},
		{CreditCard, "4111 1111 1111 1111", "**** **** **** 1111"},
		{CreditCard, "4111-1111-1111-1111", "****-****-****-1111"},
		{CreditCard, "card 5555555555554444, exp 12/29", "card ************4444, exp 12/29"},
		{CreditCard, "amex 3782 822463 10005.", "amex **** ****** *0005."},
		{CreditCard, "4222222222222", "*********2222"},
		{CreditCard, "6011111111111117", "************1117"},
		{CreditCard, "{4111111111111111,5555555555554444}", "{************1111,************4444}"},
		{CreditCard, `("4111 1111 1111 1111",x)`, `("**** **** **** 1111",x)`},
		{CreditCard, "order 1234 4111 1111 1111 1111", "order 1234 **** **** **** 1111"},
		{CreditCard, "4111111111111111 2029", "**************** 2029"},
		{CreditCard, "4111111111111112", ""},                     // Luhn
		{CreditCard, "1234567890123456", ""},                     // order id, Luhn-invalid
		{CreditCard, "41111111111111110000", ""},                 // 20 digits
		{CreditCard, "x4111111111111111", ""},                    // glued to a word
		{CreditCard, "4111111111111111abc", ""},                  //
		{CreditCard, "3.4111111111111111", ""},                   // a decimal
		{CreditCard, "4111111111111111.5", ""},                   //
		{CreditCard, "12-4111111111111111", ""},                  // a dashed reference
		{CreditCard, "4111--1111-1111-1111", ""},                 // double separator
		{CreditCard, "2024-01-15 10:30:00", ""},                  // date
		{CreditCard, "550e8400-e29b-41d4-a716-446655440000", ""}, // UUID
		{CreditCard, "192.168.100.200", ""},                      // IP
		{CreditCard, "v1.22.4111111111111111", ""},               // version-ish
		{CreditCard, "c4ca4238a0b923820dcc509a6f75849b", ""},     // md5
		{CreditCard, "1 2 3 4 5 6 7 8 9 1 2 3", ""},              // 12 digits
		// email
		{Email, "john.doe@example.com", "j****@****.com"},
		{Email, "Mail: a@b.co.uk!", "Mail: a****@****.uk!"},
		{Email, `{"to":"x+tag@mail.example.org"}`, `{"to":"x****@****.org"}`},
		{Email, "{a@b.io,c@d.io}", "{a****@****.io,c****@****.io}"},
		{Email, "user@localhost", ""},
		{Email, "pkg@1.2.3", ""},
		{Email, "a@b.c", ""},
		{Email, "@example.com", ""},
		{Email, "a@-b.com", ""},
		{Email, "x@y.c0m", ""},
		// phone
		{Phone, "+1 415 555 2671", "+* *** *** 2671"},
		{Phone, "+14155552671", "+*******2671"},
		{Phone, "+44 (0)20 7946 0958", "+** (*)** **** 0958"},
		{Phone, "(415) 555-2671", "(***) ***-2671"},
		{Phone, "call 415.555.2671 now", "call ***.***.2671 now"},
		{Phone, "1-800-555-0199", "*-***-***-0199"},
		{Phone, "020 7946 0958", "*** **** 0958"},
		{Phone, "06 12 34 56 78", "** ** ** 56 78"},
		{Phone, "4155552671", ""},        // bare digits
		{Phone, "415-555-26711", ""},     // too long
		{Phone, "415-155-2671", ""},      // exchange starts with 1
		{Phone, "415-555.2671", ""},      // mixed separators
		{Phone, "2024-01-15", ""},        // date
		{Phone, "01-02-2024", ""},        // date, 8 digits
		{Phone, "192.168.100.200", ""},   // IP
		{Phone, "+123", ""},              // too short
		{Phone, "+1234567890123456", ""}, // 16 digits
		{Phone, "12-415-555-2671", ""},   // tail of a dashed number
		{Phone, "1.2.3", ""},             //
		// us_ssn
		{USSSN, "123-45-6789", "***-**-6789"},
		{USSSN, "ssn 078 05 1120.", "ssn *** ** 1120."},
		{USSSN, "000-12-3456", ""},
		{USSSN, "666-12-3456", ""},
		{USSSN, "900-12-3456", ""},
		{USSSN, "123-00-4567", ""},
		{USSSN, "123-45-0000", ""},
		{USSSN, "123-45 6789", ""},
		{USSSN, "123456789", ""},
		{USSSN, "1123-45-6789", ""},
		// iban
		{IBAN, "GB82WEST12345698765432", "GB****************5432"},
		{IBAN, "GB82 WEST 1234 5698 7654 32", "GB** **** **** **** **54 32"},
		{IBAN, "iban: DE89370400440532013000.", "iban: DE****************3000."},
		{IBAN, "NL91ABNA0417164300", "NL************4300"},
		{IBAN, "GB83WEST12345698765432", ""},  // checksum
		{IBAN, "GB82WEST1234569876543", ""},   // length
		{IBAN, "XX82WEST12345698765432", ""},  // country
		{IBAN, "gb82west12345698765432", ""},  // lower case
		{IBAN, "AGB82WEST12345698765432", ""}, // glued
		// aws_access_key
		{AWSAccessKey, "key=AKIAIOSFODNN7EXAMPLE", "key=********************"},
		{AWSAccessKey, "ASIAY34FZKBOKMUTVV7A", "********************"},
		{AWSAccessKey, "AKIAIOSFODNN7EXAMPL", ""},
		{AWSAccessKey, "AKIAIOSFODNN7EXAMPLEX", ""},
		{AWSAccessKey, "AKIAiosfodnn7example", ""},
		{AWSAccessKey, "AIDAIOSFODNN7EXAMPLE", ""},
		// jwt
		{JWT, "Bearer " + testJWT, "Bearer " + strings.Repeat("*", len(testJWT))},
		{JWT, "eyJmb28iOiJiYXIifQ.eyJhIjoxfQ.sig", ""}, // no alg
		{JWT, "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.", strings.Repeat("*", 31)},
		{JWT, "eyJhbGciOiJub25lIn0", ""},
		{JWT, "a.eyJhbGciOiJub25lIn0.eyJhIjoxfQ.x", ""},
		// pem_private_key
		{PEMPrivateKey, pem, pemMasked},
		{PEMPrivateKey, "-----BEGIN PRIVATE KEY-----\nMIIE", "-----BEGIN PRIVATE KEY-----\n****"},
		{PEMPrivateKey, "-----BEGIN CERTIFICATE-----\nMIIE\n-----END CERTIFICATE-----", ""},
		{PEMPrivateKey, `"-----BEGIN PRIVATE KEY-----\nMIIE\u00e9\n-----END PRIVATE KEY-----"`,
			`"-----BEGIN PRIVATE KEY-----\n****\u00e9\n-----END PRIVATE KEY-----"`},
	}
	for _, tt := range tests {
		t.Run(tt.det+"/"+tt.in, func(t *testing.T) {
			m := mustNew(t, tt.det)
			out, hits := m.MaskText(nil, []byte(tt.in))
			if tt.want == "" {
				if len(hits) != 0 || string(out) != tt.in {
					t.Fatalf("masked %q to %q (%v), want untouched", tt.in, out, hits)
				}
				return
			}
			if string(out) != tt.want {
				t.Fatalf("got  %q\nwant %q", out, tt.want)
			}
			if len(hits) == 0 || hits[0].Detector != tt.det {
				t.Fatalf("hits %v", hits)
			}
			again, h2 := m.MaskText(nil, out)
			if !bytes.Equal(again, out) {
				t.Fatalf("not idempotent: %q -> %q (%v)", out, again, h2)
			}
		})
	}
}
