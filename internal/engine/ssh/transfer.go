package ssh

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/airlock-gw/airlock/internal/event"
)

// transfer is an exec channel that runs the server side of a file copy: scp's legacy protocol
// (scp -O, or scp before OpenSSH 9.0) or rsync over ssh. Its stdout and stdin carry the files
// in the tool's own framing: they are relayed as they are (masking would corrupt them) and not
// kept in the recording; the copy is recorded as an exec, a file_transfer event with the bytes
// each way, and the exit status.
type transfer struct {
	tool string // scp | rsync
	op   string // write: files go to the target; read: from it
	path string
	// Bytes relayed each way on stdin/stdout.
	fromClient, toClient atomic.Int64
}

// parseTransfer recognises the server side of scp (-t: to the target, -f: from it) and of
// rsync (--server, with --sender when files come from the target). Anything else is nil.
func parseTransfer(cmd string) *transfer {
	f := strings.Fields(cmd)
	if len(f) < 2 {
		return nil
	}
	t := &transfer{path: f[len(f)-1]}
	switch path.Base(f[0]) {
	case "scp":
		t.tool = "scp"
		for _, a := range f[1 : len(f)-1] {
			if !strings.HasPrefix(a, "-") || strings.HasPrefix(a, "--") {
				continue
			}
			// Flags may be grouped (-dt); -t and -f take no argument.
			if strings.ContainsRune(a[1:], 't') {
				t.op = "write"
			}
			if strings.ContainsRune(a[1:], 'f') {
				t.op = "read"
			}
		}
	case "rsync":
		if !slices.Contains(f, "--server") {
			return nil
		}
		t.tool, t.op = "rsync", "write"
		if slices.Contains(f, "--sender") {
			t.op = "read"
		}
	}
	if t.op == "" {
		return nil
	}
	return t
}

// record writes the transfer's file_transfer event; status is the exit status or signal.
func (t *transfer) record(ch *channel, status string) {
	if status == "" {
		status = "no exit status"
	}
	d := event.FileTransferData{Channel: ch.id, Op: t.op, Path: t.path, Status: status, Tool: t.tool}
	// What the tool moved: file data plus its protocol's framing.
	if t.op == "write" {
		d.BytesWritten = t.fromClient.Load()
	} else {
		d.BytesRead = t.toClient.Load()
	}
	ch.s.record(event.FileTransfer, d, nil)
}

func exitText(status *int, signal string) string {
	switch {
	case status != nil && *status == 0:
		return "ok"
	case status != nil:
		return fmt.Sprintf("exit status %d", *status)
	case signal != "":
		return "signal " + signal
	}
	return "no exit status"
}
