package ssh

import (
	"encoding/binary"
	"fmt"

	"github.com/airlock-gw/airlock/internal/event"
)

// SFTP packet types (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks).
const (
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpSetstat  = 9
	fxpFsetstat = 10
	fxpOpendir  = 11
	fxpRemove   = 13
	fxpMkdir    = 14
	fxpRmdir    = 15
	fxpRename   = 18
	fxpSymlink  = 20
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpExtended = 200

	fxfRead   = 0x01
	fxfWrite  = 0x02
	fxfAppend = 0x04
	fxfCreat  = 0x08
	fxfTrunc  = 0x10

	// sftpHeaderMax is how much of a write request or of an answer the observer keeps: enough
	// for every field it reads; the payload of a write or a data answer is only counted.
	sftpHeaderMax = 8 << 10
	// sftpRequestMax is how much of any other request it keeps: all of it, up to the largest
	// packet OpenSSH's sftp-server takes (SFTP_MAX_MSG_LENGTH). A rename or symlink carries two
	// paths of up to PATH_MAX (4 KiB on Linux) each, more than sftpHeaderMax: cut there, the
	// second did not parse and the change went unrecorded.
	sftpRequestMax = 256 << 10
)

// sftpStatus names the SFTP status codes.
var sftpStatus = map[uint32]string{0: "ok", 1: "eof", 2: "no such file", 3: "permission denied", 4: "failure",
	5: "bad message", 6: "no connection", 7: "connection lost", 8: "operation unsupported"}

// sftpFile is an open handle's transfer so far.
type sftpFile struct {
	path          string
	write         bool
	dir           bool
	read, written int64
}

// sftpOp is a request waiting for its answer.
type sftpOp struct {
	typ     byte
	path    string
	newPath string
	write   bool
	handle  string // fxpClose
}

// sftpObserver follows an sftp channel's packets in both directions and records its file
// operations: an open file's bytes when it is closed, and each change to the file system when
// the target answers it. It never changes the stream. Each direction is fed by one goroutine.
type sftpObserver struct {
	ch      *channel
	cli     sftpReader
	srv     sftpReader
	pending map[uint32]sftpOp
	handles map[string]*sftpFile
	mu      chanMutex
	// bad says why the client's stream cannot be followed: a request whose fields run past
	// its length, which a server would read from the bytes after it (OpenSSH's sftp-server
	// runs such a request, then exits), so that what it does is not what the observer saw.
	// The channel must then end before the bytes reach the target. Client goroutine only.
	bad string
}

// chanMutex is a one-slot channel used as a mutex (the two directions share the maps).
type chanMutex chan struct{}

func (m chanMutex) lock()   { m <- struct{}{} }
func (m chanMutex) unlock() { <-m }

func newSFTPObserver(ch *channel) *sftpObserver {
	o := &sftpObserver{ch: ch, pending: map[uint32]sftpOp{}, handles: map[string]*sftpFile{}, mu: make(chanMutex, 1)}
	o.cli.onPacket = o.request
	o.cli.requests = true
	o.cli.onBroken = func(total int) { o.bad = fmt.Sprintf("an sftp packet of length %d", total) }
	o.srv.onPacket = o.answer
	return o
}

func (o *sftpObserver) fromClient(b []byte) { o.cli.feed(b) }
func (o *sftpObserver) fromServer(b []byte) { o.srv.feed(b) }

// sftpReader splits a byte stream into SFTP packets (uint32 length, then the body), handing
// over the first bytes of each body (keep) and its full length.
type sftpReader struct {
	lenBuf   [4]byte
	lenN     int
	remain   int // body bytes still to come of the current packet
	total    int
	hdr      []byte
	onPacket func(hdr []byte, total int)
	onBroken func(total int) // a length it does not take (0, or over 16 MiB)
	broken   bool
	// requests: the client's direction, whose packets other than writes are kept whole (up
	// to sftpRequestMax).
	requests bool
}

// keep is how much of the current packet the reader keeps, once its type (the body's first
// byte) is typ.
func (r *sftpReader) keep(typ byte) int {
	if r.requests && typ != fxpWrite {
		return sftpRequestMax
	}
	return sftpHeaderMax
}

func (r *sftpReader) feed(b []byte) {
	for len(b) > 0 && !r.broken {
		if r.remain == 0 {
			n := copy(r.lenBuf[r.lenN:], b)
			r.lenN += n
			b = b[n:]
			if r.lenN < 4 {
				return
			}
			r.lenN = 0
			r.total = int(binary.BigEndian.Uint32(r.lenBuf[:]))
			r.remain = r.total
			r.hdr = r.hdr[:0]
			if r.total == 0 || r.total > 1<<24 {
				r.broken = true // not an sftp stream we understand: stop observing
				if r.onBroken != nil {
					r.onBroken(r.total)
				}
				return
			}
			continue
		}
		n := min(r.remain, len(b))
		typ := b[0]
		if len(r.hdr) > 0 {
			typ = r.hdr[0]
		}
		if room := r.keep(typ) - len(r.hdr); room > 0 {
			r.hdr = append(r.hdr, b[:min(n, room)]...)
		}
		r.remain -= n
		b = b[n:]
		if r.remain == 0 {
			r.onPacket(r.hdr, r.total)
		}
	}
}

// sftpFields reads SFTP's big-endian fields from a packet's kept bytes.
type sftpFields struct {
	b  []byte
	ok bool
}

func (f *sftpFields) u32() uint32 {
	if !f.ok || len(f.b) < 4 {
		f.ok = false
		return 0
	}
	v := binary.BigEndian.Uint32(f.b)
	f.b = f.b[4:]
	return v
}

func (f *sftpFields) str() string {
	n := int(f.u32())
	if !f.ok || n > len(f.b) {
		f.ok = false
		return ""
	}
	s := string(f.b[:n])
	f.b = f.b[n:]
	return s
}

// strLen reads a string's length and skips what of it is kept.
func (f *sftpFields) strLen() int {
	n := int(f.u32())
	f.b = f.b[min(n, len(f.b)):]
	return n
}

// malformed is why the client's stream cannot be relayed, or "".
func (o *sftpObserver) malformed() string { return o.bad }

func (o *sftpObserver) request(hdr []byte, total int) {
	if len(hdr) < 5 {
		o.bad = fmt.Sprintf("an sftp packet of %d bytes, too short for a request", total)
		return
	}
	typ := hdr[0]
	f := sftpFields{b: hdr[1:], ok: true}
	id := f.u32()
	o.mu.lock()
	defer o.mu.unlock()
	defer func() {
		if !f.ok && o.bad == "" {
			o.bad = fmt.Sprintf("an sftp request (type %d) whose fields do not fit in its %d bytes", typ, total)
		}
	}()
	switch typ {
	case fxpOpen:
		path := f.str()
		pflags := f.u32()
		if f.ok {
			// Creating or truncating a file changes it as a write does, whatever the access.
			write := pflags&(fxfWrite|fxfAppend|fxfCreat|fxfTrunc) != 0 || pflags&fxfRead == 0
			o.pending[id] = sftpOp{typ: typ, path: path, write: write}
		}
	case fxpOpendir:
		if p := f.str(); f.ok {
			o.pending[id] = sftpOp{typ: typ, path: p}
		}
	case fxpClose:
		if h := f.str(); f.ok {
			o.pending[id] = sftpOp{typ: typ, handle: h}
		}
	case fxpWrite:
		h := f.str()
		f.u32()
		f.u32()                       // offset
		at := len(hdr) - len(f.b) + 4 // through the data's length
		n := f.strLen()
		if at+n > total {
			f.ok = false
		}
		if file := o.handles[h]; f.ok && file != nil {
			file.written += int64(n)
		}
	case fxpRead:
		// Counted from the data answers.
		h := f.str()
		if f.ok {
			o.pending[id] = sftpOp{typ: typ, handle: h}
		}
	case fxpRemove, fxpMkdir, fxpRmdir, fxpSetstat:
		if p := f.str(); f.ok {
			o.pending[id] = sftpOp{typ: typ, path: p}
		}
	case fxpFsetstat: // a setstat (chmod, chown, truncate, times) of an open file
		if h := f.str(); f.ok {
			op := sftpOp{typ: fxpSetstat}
			if file := o.handles[h]; file != nil {
				op.path = file.path
			}
			o.pending[id] = op
		}
	case fxpRename, fxpSymlink:
		a := f.str()
		b := f.str()
		if f.ok {
			o.pending[id] = sftpOp{typ: typ, path: a, newPath: b}
		}
	case fxpExtended:
		name := f.str()
		switch name {
		case "lsetstat@openssh.com": // setstat of a symbolic link itself
			if p := f.str(); f.ok {
				o.pending[id] = sftpOp{typ: fxpSetstat, path: p}
			}
		case "posix-rename@openssh.com":
			a, b := f.str(), f.str()
			if f.ok {
				o.pending[id] = sftpOp{typ: fxpRename, path: a, newPath: b}
			}
		case "hardlink@openssh.com":
			a, b := f.str(), f.str()
			if f.ok {
				o.pending[id] = sftpOp{typ: fxpSymlink, path: a, newPath: b}
			}
		}
	}
}

var sftpOpNames = map[byte]string{fxpRemove: "remove", fxpMkdir: "mkdir", fxpRmdir: "rmdir", fxpSetstat: "setstat",
	fxpRename: "rename", fxpSymlink: "symlink"}

func (o *sftpObserver) answer(hdr []byte, total int) {
	if len(hdr) < 5 {
		return
	}
	typ := hdr[0]
	f := sftpFields{b: hdr[1:], ok: true}
	id := f.u32()
	o.mu.lock()
	defer o.mu.unlock()
	op, ok := o.pending[id]
	if !ok {
		return
	}
	delete(o.pending, id)
	switch typ {
	case fxpHandle:
		h := f.str()
		if f.ok && (op.typ == fxpOpen || op.typ == fxpOpendir) {
			o.handles[h] = &sftpFile{path: op.path, write: op.write, dir: op.typ == fxpOpendir}
		}
	case fxpData:
		n := f.strLen()
		if file := o.handles[op.handle]; file != nil && op.typ == fxpRead {
			file.read += int64(n)
		}
	case fxpStatus:
		code := f.u32()
		msg := f.str()
		status := sftpStatus[code]
		if status == "" {
			status = fmt.Sprintf("status %d", code)
		}
		if code > 1 && msg != "" {
			status += ": " + msg
		}
		switch op.typ {
		case fxpRead:
			return
		case fxpClose:
			file := o.handles[op.handle]
			delete(o.handles, op.handle)
			if file == nil || file.dir {
				return
			}
			name := "read"
			if file.write {
				name = "write"
			}
			o.ch.s.rec.Record(event.FileTransfer, event.FileTransferData{Tool: "sftp", Channel: o.ch.id, Op: name, Path: file.path,
				BytesRead: file.read, BytesWritten: file.written, Status: status}, nil)
		case fxpOpen, fxpOpendir:
			if code != 0 {
				name := "open"
				if op.write {
					name = "write"
				} else if op.typ == fxpOpendir {
					name = "opendir"
				} else {
					name = "read"
				}
				o.ch.s.rec.Record(event.FileTransfer, event.FileTransferData{Tool: "sftp", Channel: o.ch.id, Op: name, Path: op.path, Status: status}, nil)
			}
		default:
			o.ch.s.rec.Record(event.FileTransfer, event.FileTransferData{Tool: "sftp", Channel: o.ch.id, Op: sftpOpNames[op.typ],
				Path: op.path, NewPath: op.newPath, Status: status}, nil)
		}
	}
}

// end records, when the channel ends, what the target may have done without its answer
// reaching the observer: a file still open (the client never closed it, or the channel went
// before it could: its bytes so far, status "not closed"), and a change whose answer did not
// come back ("no answer").
func (o *sftpObserver) end() {
	o.mu.lock()
	defer o.mu.unlock()
	rec := o.ch.s.rec
	for h, file := range o.handles {
		delete(o.handles, h)
		if file.dir {
			continue
		}
		name := "read"
		if file.write {
			name = "write"
		}
		rec.Record(event.FileTransfer, event.FileTransferData{Tool: "sftp", Channel: o.ch.id, Op: name, Path: file.path,
			BytesRead: file.read, BytesWritten: file.written, Status: "not closed"}, nil)
	}
	for id, op := range o.pending {
		delete(o.pending, id)
		name := sftpOpNames[op.typ]
		if op.typ == fxpOpen && op.write {
			name = "write"
		}
		if name == "" {
			continue // a read, a close, an opendir, a read-only open: nothing changed
		}
		rec.Record(event.FileTransfer, event.FileTransferData{Tool: "sftp", Channel: o.ch.id, Op: name,
			Path: op.path, NewPath: op.newPath, Status: "no answer"}, nil)
	}
}
