package masking

import "testing"

// BenchmarkMaskText measures the per-value cost on typical row values with the two detectors of
// the 2M-row benchmark (credit_card, email) on. Only the last case matches.
func BenchmarkMaskText(b *testing.B) {
	m, err := New([]string{CreditCard, Email})
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct{ name, val string }{
		{"int", "1234567"},
		{"md5", "c4ca4238a0b923820dcc509a6f75849b"},
		{"email-like-no-tld", "user@localhost"},
		{"sentence", "The quick brown fox jumps over the lazy dog, order 2024-01-15 #8812."},
		{"uuid", "550e8400-e29b-41d4-a716-446655440000"},
		{"match-email", "jane.roe@example.com"},
		{"match-card", "4111 1111 1111 1111"},
	} {
		src := []byte(v.val)
		dst := make([]byte, 0, 256)
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				m.MaskText(dst, src)
			}
		})
	}
}

// BenchmarkMaskTextAll is the same with every built-in detector on.
func BenchmarkMaskTextAll(b *testing.B) {
	m, err := New(Detectors())
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct{ name, val string }{
		{"int", "1234567"},
		{"md5", "c4ca4238a0b923820dcc509a6f75849b"},
		{"sentence", "The quick brown fox jumps over the lazy dog, order 2024-01-15 #8812."},
	} {
		src := []byte(v.val)
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.MaskText(nil, src)
			}
		})
	}
}

func BenchmarkMaskJSON(b *testing.B) {
	m, err := New([]string{CreditCard, Email})
	if err != nil {
		b.Fatal(err)
	}
	src := []byte(`{"id":42,"name":"Jane Roe","tags":["a","b"],"note":"paid \"in full\" on 2024-01-15"}`)
	b.ReportAllocs()
	for b.Loop() {
		m.MaskJSON(nil, src)
	}
}
