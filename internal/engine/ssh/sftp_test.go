package ssh

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/store/filestore"
)

func sftpPacket(typ byte, id uint32, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(5+len(b)))
	out = append(out, typ)
	out = binary.BigEndian.AppendUint32(out, id)
	return append(out, b...)
}

func sftpStr(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}
func sftpU32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

var sftpOK = append(sftpU32(0), sftpStr("Success")...)

// observeSFTP feeds an sftp exchange, request and answer at a time, to an observer whose
// session records into a file store, and returns the file.transfer events it recorded.
func observeSFTP(t *testing.T, exchange ...[2][]byte) []event.FileTransferData {
	t.Helper()
	st, err := filestore.Open(t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := (&recorder.Recorder{Store: st}).Start(context.Background(), recorder.Info{Protocol: Name, Target: "web-1", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	o := newSFTPObserver(&channel{s: &session{rec: rec}, id: 1})
	for _, x := range exchange {
		o.fromClient(x[0])
		if o.malformed() != "" {
			t.Fatalf("malformed: %s", o.malformed())
		}
		o.fromServer(x[1])
	}
	o.end() // the channel ends
	if err := rec.End(context.Background(), event.SessionEndData{Reason: "client_disconnected"}); err != nil {
		t.Fatal(err)
	}
	var got []event.FileTransferData
	err = st.Events(context.Background(), rec.ID(), 0, func(ev *event.Event) error {
		if ev.Type == event.FileTransfer {
			var d event.FileTransferData
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				return err
			}
			got = append(got, d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSFTPObserverRecordsChanges: every change an sftp client makes to the target's files is
// in the recording, with its path: a rename and a symlink whose two paths are each as long as
// Linux allows (the observer kept 8 KiB of a request, so the second path did not parse and the
// change went unrecorded), a setstat through an open handle (fsetstat) and of a link itself
// (lsetstat@openssh.com), which were not recorded at all, and an open that truncates a file
// with read access only, which was recorded as a read.
func TestSFTPObserverRecordsChanges(t *testing.T) {
	long := func(end string) string { return "/tmp/" + strings.Repeat("./", 2044) + end }
	a, b := long("a"), long("b")
	attrs := append(sftpU32(4), sftpU32(0o777)...) // SSH_FILEXFER_ATTR_PERMISSIONS
	got := observeSFTP(t,
		[2][]byte{sftpPacket(fxpRename, 1, sftpStr(a), sftpStr(b)), sftpPacket(fxpStatus, 1, sftpOK)},
		[2][]byte{sftpPacket(fxpSymlink, 2, sftpStr(a), sftpStr(b)), sftpPacket(fxpStatus, 2, sftpOK)},
		[2][]byte{sftpPacket(fxpOpen, 3, sftpStr("/etc/app.conf"), sftpU32(fxfRead), sftpU32(0)), sftpPacket(fxpHandle, 3, sftpStr("h1"))},
		[2][]byte{sftpPacket(fxpFsetstat, 4, sftpStr("h1"), attrs), sftpPacket(fxpStatus, 4, sftpOK)},
		[2][]byte{sftpPacket(fxpClose, 5, sftpStr("h1")), sftpPacket(fxpStatus, 5, sftpOK)},
		[2][]byte{sftpPacket(fxpExtended, 6, sftpStr("lsetstat@openssh.com"), sftpStr("/tmp/link"), attrs), sftpPacket(fxpStatus, 6, sftpOK)},
		[2][]byte{sftpPacket(fxpOpen, 7, sftpStr("/var/log/audit.log"), sftpU32(fxfRead|fxfTrunc), sftpU32(0)), sftpPacket(fxpHandle, 7, sftpStr("h2"))},
		[2][]byte{sftpPacket(fxpClose, 8, sftpStr("h2")), sftpPacket(fxpStatus, 8, sftpOK)},
	)
	want := []event.FileTransferData{
		{Op: "rename", Path: a, NewPath: b},
		{Op: "symlink", Path: a, NewPath: b},
		{Op: "setstat", Path: "/etc/app.conf"},
		{Op: "read", Path: "/etc/app.conf"},
		{Op: "setstat", Path: "/tmp/link"},
		{Op: "write", Path: "/var/log/audit.log"},
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %d file.transfer events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Op != w.Op || g.Path != w.Path || g.NewPath != w.NewPath || g.Status != "ok" {
			t.Errorf("event %d: %s %.40q -> %.40q (%s), want %s %.40q -> %.40q (ok)", i, g.Op, g.Path, g.NewPath, g.Status, w.Op, w.Path, w.NewPath)
		}
	}
}

// TestSFTPObserverUnfinished: a file the client never closes (it drops the channel instead)
// and a change whose answer does not come back before the channel ends are recorded when it
// ends; they were not recorded at all (a file's bytes were recorded at its close only).
func TestSFTPObserverUnfinished(t *testing.T) {
	data := make([]byte, 5000)
	got := observeSFTP(t,
		[2][]byte{sftpPacket(fxpOpen, 1, sftpStr("/etc/cron.d/job"), sftpU32(fxfWrite|fxfCreat|fxfTrunc), sftpU32(0)), sftpPacket(fxpHandle, 1, sftpStr("h1"))},
		[2][]byte{sftpPacket(fxpWrite, 2, sftpStr("h1"), sftpU32(0), sftpU32(0), sftpStr(string(data))), sftpPacket(fxpStatus, 2, sftpOK)},
		[2][]byte{sftpPacket(fxpOpen, 3, sftpStr("/etc/motd"), sftpU32(fxfRead), sftpU32(0)), nil}, // read-only, unanswered
		[2][]byte{sftpPacket(fxpRemove, 4, sftpStr("/var/log/auth.log")), nil},
	)
	if len(got) != 2 {
		t.Fatalf("recorded %+v, want the unclosed write and the unanswered remove", got)
	}
	slices.SortFunc(got, func(a, b event.FileTransferData) int { return strings.Compare(a.Op, b.Op) })
	if g := got[1]; g.Op != "write" || g.Path != "/etc/cron.d/job" || g.BytesWritten != int64(len(data)) || g.Status != "not closed" {
		t.Errorf("unclosed file: %+v", g)
	}
	if g := got[0]; g.Op != "remove" || g.Path != "/var/log/auth.log" || g.Status != "no answer" {
		t.Errorf("unanswered remove: %+v", g)
	}
}

// TestSFTPObserverMalformed: a request whose fields run past its declared length is one the
// target reads differently from the observer (OpenSSH's sftp-server takes the rest from the
// bytes after the packet, runs the request, and only then exits): the observer says so, for
// the channel to end before the bytes reach the target. Before, a REMOVE sent with a length
// of 9 went unrecorded.
func TestSFTPObserverMalformed(t *testing.T) {
	short := func(p []byte, n uint32) []byte {
		binary.BigEndian.PutUint32(p, n)
		return p
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"remove past its length", short(sftpPacket(fxpRemove, 1, sftpStr("/etc/passwd")), 9)},
		{"rename past its length", short(sftpPacket(fxpRename, 1, sftpStr("/a"), sftpStr("/b")), 15)},
		{"write data past its length", short(sftpPacket(fxpWrite, 1, sftpStr("h"), sftpU32(0), sftpU32(0), sftpStr("abcdef")), 27)},
		{"length 0", append([]byte{0, 0, 0, 0}, sftpPacket(fxpRemove, 1, sftpStr("/etc/passwd"))[4:]...)},
		{"no id", short(sftpPacket(fxpRemove, 1), 3)},
		{"extended name past its length", short(sftpPacket(fxpExtended, 1, sftpStr("posix-rename@openssh.com")), 12)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newSFTPObserver(&channel{s: &session{}, id: 1})
			o.fromClient(tc.b)
			if o.malformed() == "" {
				t.Errorf("% x: not reported", tc.b)
			}
		})
	}
	// Well-formed requests, a packet split anywhere, and trailing bytes a server discards are fine.
	o := newSFTPObserver(&channel{s: &session{}, id: 1})
	stream := append(sftpPacket(1, 3), sftpPacket(fxpWrite, 1, sftpStr("h"), sftpU32(0), sftpU32(0), sftpStr("abcdef"))...)
	stream = append(stream, sftpPacket(fxpRemove, 2, sftpStr("/x"), []byte("trailing"))...)
	stream = append(stream, sftpPacket(17, 3, sftpStr("/etc"))...) // stat: not followed
	for i := range stream {
		o.fromClient(stream[i : i+1])
	}
	if m := o.malformed(); m != "" {
		t.Errorf("a well-formed stream reported: %s", m)
	}
}
