package termsafe

import (
	"bytes"
	"io"
	"slices"
	"strconv"
)

// Filter passes a recorded terminal's output to W as the terminal showed it, and drops the
// sequences that make a terminal do more than draw its screen, so that replaying a session
// cannot attack the viewer's terminal:
//
//   - every string sequence: OSC (titles, OSC 52 clipboard writes, OSC 8 hyperlinks,
//     notifications, colour changes and queries), DCS (DECRQSS, XTGETTCAP, sixel, tmux
//     pass-through), SOS, PM and APC (kitty graphics);
//   - the sequences a terminal answers on its input, where the answer would reach the viewer's
//     shell as typed text once the replay ends: DA (CSI c), DSR (CSI n), window reports and
//     operations (CSI t), DECREQTPARM, DECRQM, DECID (ESC Z), ENQ;
//   - modes that make the terminal report mouse and focus events, keyboard lock and local
//     echo (SM 2 and 12), media copy (CSI i), and every CSI sequence with a private prefix or
//     an intermediate other than the screen modes (CSI ? h/l), selective erase (CSI ? J/K)
//     and the cursor style (CSI SP q);
//   - the C1 controls (U+0080 to U+009F, and single bytes 0x80 to 0x9F outside a UTF-8
//     sequence), which some terminals read as ESC [, ESC ], ESC P, ...
//
// Cursor movement, erasing, scrolling, colours and attributes, character sets, the screen
// modes (alternate screen, cursor visibility, wrap) pass as recorded. A sequence may be split
// between writes. Errors are W's.
type Filter struct {
	W io.Writer

	state state
	seq   []byte // the escape sequence being read
	cont  int    // UTF-8 continuation bytes still expected in the ground state
	out   []byte
}

type state uint8

const (
	ground   state = iota
	c2             // after 0xC2: a C1 control if a byte 0x80-0x9F follows
	esc            // after ESC
	escInter       // after ESC and intermediates
	csi            // in a CSI sequence
	csiDrop        // in a CSI sequence too long to keep: dropped up to its final byte
	str            // in a string sequence (OSC, DCS, SOS, PM, APC), dropped
	strC2          // 0xC2 in a string: U+009C (ST) ends it
)

const (
	bel  = 0x07
	enq  = 0x05
	can  = 0x18
	sub  = 0x1a
	escB = 0x1b
)

// maxSeq bounds a kept CSI or ESC sequence; real ones are far shorter.
const maxSeq = 64

func (f *Filter) Write(p []byte) (int, error) {
	f.out = f.out[:0]
	for i := 0; i < len(p); i++ {
		f.byte(p[i])
	}
	if len(f.out) == 0 {
		return len(p), nil
	}
	if _, err := f.W.Write(f.out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *Filter) byte(b byte) {
	switch f.state {
	case ground:
		f.ground(b)
	case c2:
		f.state = ground
		if b >= 0x80 && b <= 0x9f {
			return // U+0080-U+009F: a C1 control
		}
		f.out = append(f.out, 0xc2)
		f.ground(b)
	case esc:
		f.escape(b)
	case escInter:
		switch {
		case b >= 0x20 && b <= 0x2f && len(f.seq) < maxSeq:
			f.seq = append(f.seq, b)
		case b >= 0x30 && b <= 0x7e:
			f.out = append(append(f.out, f.seq...), b)
			f.state = ground
		default:
			f.inSequence(b)
		}
	case csi:
		switch {
		case b >= 0x20 && b <= 0x3f:
			if f.seq = append(f.seq, b); len(f.seq) > maxSeq {
				f.state = csiDrop
			}
		case b >= 0x40 && b <= 0x7e:
			if csiAllowed(f.seq[2:], b) {
				f.out = append(append(f.out, f.seq...), b)
			}
			f.state = ground
		default:
			f.inSequence(b)
		}
	case csiDrop:
		switch {
		case b >= 0x20 && b <= 0x3f:
		case b >= 0x40 && b <= 0x7e:
			f.state = ground
		default:
			f.inSequence(b)
		}
	case str:
		switch b {
		case bel, can, sub:
			f.state = ground
		case escB:
			f.state = esc // ends the string; ESC \ is its terminator
			f.seq = append(f.seq[:0], escB)
		case 0xc2:
			f.state = strC2
		}
	case strC2:
		f.state = str
		if b == 0x9c {
			f.state = ground
		} else {
			f.byte(b)
		}
	}
}

// ground handles a byte outside any escape sequence.
func (f *Filter) ground(b byte) {
	if f.cont > 0 {
		if b >= 0x80 && b <= 0xbf {
			f.cont--
			f.out = append(f.out, b)
			return
		}
		f.cont = 0 // not UTF-8: b starts afresh
	}
	switch {
	case b == escB:
		f.state = esc
		f.seq = append(f.seq[:0], escB)
	case b == enq: // the answerback message
	case b < 0x80:
		f.out = append(f.out, b)
	case b <= 0x9f: // a C1 control byte
	case b == 0xc2:
		f.state = c2
	case b >= 0xc3 && b <= 0xdf:
		f.cont = 1
		f.out = append(f.out, b)
	case b >= 0xe0 && b <= 0xef:
		f.cont = 2
		f.out = append(f.out, b)
	case b >= 0xf0 && b <= 0xf4:
		f.cont = 3
		f.out = append(f.out, b)
	default:
		f.out = append(f.out, b)
	}
}

// escape handles the byte after ESC.
func (f *Filter) escape(b byte) {
	switch {
	case b == '[':
		f.seq = append(f.seq, b)
		f.state = csi
	case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
		f.state = str
	case b == '\\': // ST, alone or ending a string
		f.state = ground
	case b == 'Z': // DECID: the terminal answers with its attributes
		f.state = ground
	case b >= 0x20 && b <= 0x2f:
		f.seq = append(f.seq, b)
		f.state = escInter
	case b >= 0x30 && b <= 0x7e:
		f.out = append(f.out, escB, b)
		f.state = ground
	default:
		f.inSequence(b)
	}
}

// inSequence handles a byte that is not part of the escape sequence being read: a C0 control
// is carried out by a terminal without ending the sequence, ESC starts another one, CAN and
// SUB cancel it; anything else ends it (dropped) and is read afresh.
func (f *Filter) inSequence(b byte) {
	switch {
	case b == escB:
		f.state = esc
		f.seq = append(f.seq[:0], escB)
	case b == can || b == sub:
		f.state = ground
	case b == enq:
	case b < 0x20:
		f.out = append(f.out, b)
	default:
		f.state = ground
		f.ground(b)
	}
}

// csiAllowed reports whether the CSI sequence with parameters and intermediates p and final
// byte final only draws the screen.
func csiAllowed(p []byte, final byte) bool {
	var prefix byte
	if len(p) > 0 && p[0] >= '<' && p[0] <= '?' {
		prefix, p = p[0], p[1:]
	}
	params, inter := p, []byte(nil)
	if i := bytes.IndexFunc(p, func(r rune) bool { return r >= 0x20 && r <= 0x2f }); i >= 0 {
		params, inter = p[:i], p[i:]
	}
	switch {
	case prefix == 0 && inter == nil:
		switch final {
		case 'h', 'l': // ANSI modes: insert (4) only; 2 locks the keyboard, 12 echoes locally
			return allParams(params, func(n int) bool { return n == 4 })
		}
		return bytes.IndexByte([]byte("@ABCDEFGHIJKLMPSTXZ`abdefgmrsu"), final) >= 0
	case prefix == '?' && inter == nil:
		switch final {
		case 'J', 'K':
			return true
		case 'h', 'l':
			return allParams(params, func(n int) bool { return !slices.Contains(reportingModes, n) })
		}
	case prefix == 0 && string(inter) == " " && final == 'q': // cursor style
		return true
	}
	return false
}

// reportingModes are the DEC private modes that make a terminal send mouse and focus events.
var reportingModes = []int{9, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1015, 1016}

func allParams(params []byte, ok func(int) bool) bool {
	for _, s := range bytes.Split(params, []byte{';'}) {
		n, err := strconv.Atoi(string(s))
		if err != nil || !ok(n) {
			return false
		}
	}
	return true
}
