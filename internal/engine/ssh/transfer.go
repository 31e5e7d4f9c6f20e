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
//
// A transfer's stdin and stdout are not recorded and it needs only the policy's sftp, so only
// a command that runs nothing but the tool qualifies: one simple command for the target's
// shell (simpleCommand: "scp -f x; sh -i" would be an unrecorded shell), whose program is
// scp or rsync by name or in a system directory (not a program of the user's own called scp).
func parseTransfer(cmd string) *transfer {
	if !simpleCommand(cmd) {
		return nil
	}
	f := strings.Fields(cmd)
	if len(f) < 2 {
		return nil
	}
	t := &transfer{path: f[len(f)-1]}
	prog := f[0]
	if dir, base := path.Split(prog); dir != "" {
		if !systemBinDirs[dir] {
			return nil
		}
		prog = base
	}
	switch prog {
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

// systemBinDirs are where a transfer's program may be named by its path (rsync's
// --rsync-path=/usr/local/bin/rsync).
var systemBinDirs = map[string]bool{"/bin/": true, "/usr/bin/": true, "/usr/local/bin/": true}

// simpleCommand reports whether a POSIX shell runs cmd as one simple command: no separator
// (; & | newline), redirection, subshell, command or parameter substitution outside single
// quotes (nor a substitution inside double quotes). Backslash escapes, as rsync writes paths,
// and globs are fine.
func simpleCommand(cmd string) bool {
	var quote byte
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch quote {
		case '\'':
			if c == '\'' {
				quote = 0
			}
			continue
		case '"':
			switch c {
			case '"':
				quote = 0
			case '\\':
				i++
			case '$', '`':
				return false
			}
			continue
		}
		switch c {
		case '\'', '"':
			quote = c
		case '\\':
			i++
		case ';', '&', '|', '<', '>', '(', ')', '`', '$', '\n', 0:
			return false
		}
	}
	return quote == 0
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
