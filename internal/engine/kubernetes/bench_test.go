package kubernetes

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// benchExecBytes is what the stand-in API server prints on stdout per benchmark operation.
const benchExecBytes = 16 << 20

// fakeBulkExec answers an exec over WebSocket with benchExecBytes of stdout in 32 KiB frames
// (as the API server sends a `cat` of a large file), then a close.
func fakeBulkExec(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n")
	payload := append([]byte{1}, []byte(strings.Repeat("0123456789abcdef", 2048))...)
	frame := wsFrame(2, payload, false)
	for sent := 0; sent < benchExecBytes; sent += len(payload) - 1 {
		if _, err := brw.Write(frame); err != nil {
			return
		}
	}
	brw.Write(wsFrame(8, []byte{0x03, 0xe8}, false))
	brw.Flush()
}

// BenchmarkExecOutput measures the gateway relaying (and recording) an exec's bulk stdout over
// WebSocket, the path of `kubectl exec ... cat` with kubectl 1.30+:
//
//	go test ./internal/engine/kubernetes -run '^$' -bench ExecOutput -benchtime 20x -cpuprofile cpu.out
func BenchmarkExecOutput(b *testing.B) {
	h := newHarness(b, nil)
	h.api.bulk = true
	b.SetBytes(benchExecBytes)
	b.ResetTimer()
	for range b.N {
		conn, br := h.websocket(b, "exec?command=cat&stdout=true", "v5.channel.k8s.io")
		n, _ := io.Copy(io.Discard, br)
		conn.Close()
		if n < benchExecBytes {
			b.Fatalf("got %d bytes", n)
		}
	}
}
