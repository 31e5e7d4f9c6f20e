package agent

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/airlock-gw/airlock/internal/target"
)

// BenchmarkRoundTrip measures one small request/response (the shape of pgbench -S) through the
// tunnel, against the same echo target dialled directly, in the same run.
func BenchmarkRoundTrip(b *testing.B) {
	run := func(b *testing.B, c net.Conn) {
		msg := make([]byte, 60)
		buf := make([]byte, 60)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	f := newBenchFixture(b)
	f.start(b, f.create(b, "bench"))
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", f.target)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "x\n")
		io.ReadFull(c, make([]byte, 5))
		run(b, c)
	})
	b.Run("tunnel", func(b *testing.B) {
		u, err := f.hub.Open(context.Background(), target.Target{Name: "echo", Type: "agent-test", Agent: "*"}, "agent-test", []byte("x"))
		if err != nil {
			b.Fatal(err)
		}
		defer u.Close()
		run(b, u)
	})
}
