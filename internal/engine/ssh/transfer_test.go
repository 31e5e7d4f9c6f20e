package ssh

import (
	"encoding/binary"
	"testing"
)

func TestParseTransfer(t *testing.T) {
	tests := []struct {
		cmd, tool, op, path string
	}{
		{"scp -t -- /tmp/x", "scp", "write", "/tmp/x"},
		{"scp -v -d -t /tmp/dir", "scp", "write", "/tmp/dir"},
		{"scp -f /tmp/file", "scp", "read", "/tmp/file"},
		{"scp -r -pf dir", "scp", "read", "dir"},
		{"/usr/bin/scp -t .", "scp", "write", "."},
		{"rsync --server -vlogDtpre.iLsfxCIvu . /tmp/dest/", "rsync", "write", "/tmp/dest/"},
		{"rsync --server --sender -vlogDtpre.iLsfxCIvu . /tmp/src", "rsync", "read", "/tmp/src"},
		{`rsync --server -logDtpre.iLsfxCIvu . /tmp/a\;c`, "rsync", "write", `/tmp/a\;c`},
		{"scp -t '/tmp/a;b'", "scp", "write", "'/tmp/a;b'"},
		{"/usr/local/bin/rsync --server . /d", "rsync", "write", "/d"},
		{"scp other:/a /b", "", "", ""}, // a copy the target makes itself: an ordinary command
		// More than the tool: an ordinary command (recorded, needs exec), not a transfer
		// whose stdin and stdout go unrecorded with only sftp allowed.
		{"scp -f x; sh -i 2>&1", "", "", ""},
		{"scp -t x && rm -rf /", "", "", ""},
		{"scp -t x | sh", "", "", ""},
		{"scp -t x\nsh -i", "", "", ""},
		{"scp -t $(sh -c id)", "", "", ""},
		{"scp -t `id`", "", "", ""},
		{`scp -t "$(id)"`, "", "", ""},
		{"scp -f x > /tmp/y", "", "", ""},
		{"rsync --server --sender . x & sh", "", "", ""},
		{"scp -t 'x", "", "", ""},
		{"./scp -t x", "", "", ""}, // a program of the user's own
		{"/tmp/u/scp -f x", "", "", ""},
		{"rsync -a a b", "", "", ""},
		{"cat /etc/passwd", "", "", ""},
		{"scp", "", "", ""},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			x := parseTransfer(tt.cmd)
			if tt.tool == "" {
				if x != nil {
					t.Fatalf("got %+v, want none", x)
				}
				return
			}
			if x == nil || x.tool != tt.tool || x.op != tt.op || x.path != tt.path {
				t.Fatalf("got %+v, want %s %s %s", x, tt.tool, tt.op, tt.path)
			}
		})
	}
}

// FuzzSFTPObserver feeds arbitrary bytes to both directions of the sftp observer, split at an
// arbitrary point: it must not panic or grow without bound.
func FuzzSFTPObserver(f *testing.F) {
	pkt := func(typ byte, id uint32, body ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(5+len(body)))
		b = append(b, typ)
		b = binary.BigEndian.AppendUint32(b, id)
		return append(b, body...)
	}
	str := func(s string) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...) }
	open := pkt(fxpOpen, 1, append(str("/tmp/x"), 0, 0, 0, 2, 0, 0, 0, 0)...)
	handle := pkt(fxpHandle, 1, str("h1")...)
	f.Add(open, handle, uint8(3))
	f.Add(pkt(fxpClose, 2, str("h1")...), pkt(fxpStatus, 2, append([]byte{0, 0, 0, 0}, str("ok")...)...), uint8(0))
	f.Add([]byte{0, 0, 0, 1}, []byte{0xff, 0xff, 0xff, 0xff}, uint8(1))
	f.Fuzz(func(t *testing.T, cli, srv []byte, cut uint8) {
		ch := &channel{s: &session{}, id: 1}
		o := newSFTPObserver(ch)
		k := int(cut) % (len(cli) + 1)
		o.fromClient(cli[:k])
		o.fromServer(srv)
		o.fromClient(cli[k:])
		if len(o.cli.hdr) > sftpRequestMax || len(o.srv.hdr) > sftpHeaderMax {
			t.Fatalf("kept %d and %d bytes of a packet", len(o.cli.hdr), len(o.srv.hdr))
		}
	})
}
