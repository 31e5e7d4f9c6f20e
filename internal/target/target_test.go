package target

import "testing"

func TestUpstreamTLS(t *testing.T) {
	for _, tc := range []struct {
		tls, address, want string
	}{
		{"", "db.internal:5432", "prefer"},
		{"prefer", "10.0.0.7:5432", "prefer"},
		{"", "127.0.0.1:5432", "disable"},
		{"prefer", "127.0.0.53:3306", "disable"},
		{"prefer", "[::1]:5432", "disable"},
		{"prefer", "[::ffff:127.0.0.1]:5432", "disable"},
		{"prefer", "localhost:5432", "disable"},
		{"prefer", "localhost.example.com:5432", "prefer"}, // names are not resolved
		{"prefer", "128.0.0.1:5432", "prefer"},
		{"require", "127.0.0.1:5432", "require"},
		{"verify-full", "localhost:5432", "verify-full"},
		{"disable", "db.internal:5432", "disable"},
	} {
		if got := (Target{TLS: tc.tls, Address: tc.address}).UpstreamTLS(); got != tc.want {
			t.Errorf("tls %q to %s: %q, want %q", tc.tls, tc.address, got, tc.want)
		}
	}
}
