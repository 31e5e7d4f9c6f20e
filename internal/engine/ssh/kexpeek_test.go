package ssh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// kexInitPacket is a client's version line and KEXINIT as OpenSSH sends them (unencrypted
// binary packet: length, padding length, payload, padding).
func kexInitPacket(c2s, s2c string) []byte {
	var p []byte
	p = append(p, msgKexInit)
	p = append(p, make([]byte, 16)...) // cookie
	for _, l := range []string{"curve25519-sha256", "ssh-ed25519", c2s, s2c, "hmac-sha2-256", "hmac-sha2-256", "none", "none", "", ""} {
		p = binary.BigEndian.AppendUint32(p, uint32(len(l)))
		p = append(p, l...)
	}
	p = append(p, 0, 0, 0, 0, 0) // first_kex_packet_follows, reserved
	pad := 8 - (5+len(p))%8
	if pad < 4 {
		pad += 8
	}
	out := []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
	out = binary.BigEndian.AppendUint32(out, uint32(1+len(p)+pad))
	out = append(out, byte(pad))
	out = append(out, p...)
	return append(out, make([]byte, pad)...)
}

const openSSHCiphers = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com"

func TestClientKexInit(t *testing.T) {
	full := kexInitPacket(openSSHCiphers, openSSHCiphers)
	// Every prefix short of the whole packet asks for more.
	for n := range len(full) {
		if _, done := clientKexInit(full[:n]); done {
			t.Fatalf("done after %d of %d bytes", n, len(full))
		}
	}
	enc, done := clientKexInit(full)
	if !done || strings.Join(enc[0], ",") != openSSHCiphers || strings.Join(enc[1], ",") != openSSHCiphers {
		t.Fatalf("clientKexInit = %v, %v", enc, done)
	}
	if got := gcmOffer(enc); !slices.Equal(got, gcmCiphers) {
		t.Errorf("offer to OpenSSH = %v, want %v", got, gcmCiphers)
	}
	// Lines before the version line are skipped, as x/crypto/ssh skips them.
	if enc, done := clientKexInit(append([]byte("hello\r\nthere\r\n"), full...)); !done || len(enc[0]) != 6 {
		t.Errorf("with lines before the version: %v, %v", enc, done)
	}

	for _, tc := range []struct {
		name string
		b    []byte
		want []string
	}{
		{"only CTR", kexInitPacket("aes128-ctr,aes256-ctr", "aes128-ctr,aes256-ctr"), nil},
		{"GCM one way only", kexInitPacket("aes256-gcm@openssh.com,aes128-ctr", "aes128-ctr"), nil},
		{"aes256-gcm only", kexInitPacket("aes256-gcm@openssh.com", "aes256-gcm@openssh.com"), []string{"aes256-gcm@openssh.com"}},
	} {
		enc, done := clientKexInit(tc.b)
		if got := gcmOffer(enc); !done || !slices.Equal(got, tc.want) {
			t.Errorf("%s: offer %v (done %v), want %v", tc.name, got, done, tc.want)
		}
	}

	// Not a KEXINIT, or a length no KEXINIT has: done, nothing offered, x/crypto/ssh judges.
	bad := bytes.Clone(full)
	i := bytes.IndexByte(bad, '\n') + 1
	bad[i+5] = 21
	if enc, done := clientKexInit(bad); !done || enc[0] != nil {
		t.Errorf("another message: %v, %v", enc, done)
	}
	huge := bytes.Clone(full)
	binary.BigEndian.PutUint32(huge[i:], 1<<30)
	if enc, done := clientKexInit(huge); !done || enc[0] != nil {
		t.Errorf("huge length: %v, %v", enc, done)
	}
	if _, done := clientKexInit(bytes.Repeat([]byte("x"), 9<<10)); !done {
		t.Error("9 KiB without a line end: still waiting")
	}
}

func FuzzClientKexInit(f *testing.F) {
	f.Add(kexInitPacket(openSSHCiphers, openSSHCiphers))
	f.Add(kexInitPacket("", ""))
	f.Add([]byte("SSH-2.0-x\r\n\x00\x00\x00\x0c\x0a\x14"))
	f.Fuzz(func(t *testing.T, b []byte) {
		enc, _ := clientKexInit(b)
		for _, c := range gcmOffer(enc) {
			if !slices.Contains(gcmCiphers, c) {
				t.Fatalf("offered %q", c)
			}
		}
	})
}

// TestPeekCiphersHandshake: x/crypto/ssh clients complete the handshake through peekCiphers,
// with the cipher the offer leaves them: GCM when they have it, their own otherwise.
func TestPeekCiphersHandshake(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		ciphers []string
		want    []string
	}{
		{"default", nil, gcmCiphers},
		{"CTR only", []string{"aes128-ctr"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := tcpPair(t)
			done := make(chan error, 1)
			go func() {
				c, _, _, err := ssh.NewClientConn(cc, "x", &ssh.ClientConfig{User: "u", Config: ssh.Config{Ciphers: tc.ciphers},
					HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
				if err == nil {
					c.Close()
				}
				done <- err
			}()
			pc, offer, err := peekCiphers(sc, "SSH-2.0-Airlock", time.Now().Add(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(offer, tc.want) {
				t.Errorf("offer %v, want %v", offer, tc.want)
			}
			cfg := &ssh.ServerConfig{NoClientAuth: true, ServerVersion: "SSH-2.0-Airlock",
				Config: ssh.Config{Ciphers: append([]string{"aes128-ctr"}, gcmCiphers...)}}
			if offer != nil {
				cfg.Ciphers = offer
			}
			cfg.AddHostKey(hostKey)
			conn, _, _, err := ssh.NewServerConn(pc, cfg)
			if err != nil {
				t.Fatalf("server handshake: %v", err)
			}
			if v := string(conn.ClientVersion()); !strings.HasPrefix(v, "SSH-2.0-Go") {
				t.Errorf("client version %q", v)
			}
			if err := <-done; err != nil {
				t.Fatalf("client handshake: %v", err)
			}
		})
	}
}

// TestPeekCiphersWaitingClient: a client that sends its version line and then waits for the
// server's KEXINIT gets the usual offer after kexPeekWait, and its bytes are all replayed.
func TestPeekCiphersWaitingClient(t *testing.T) {
	defer func(d time.Duration) { kexPeekWait = d }(kexPeekWait)
	kexPeekWait = 50 * time.Millisecond
	cc, sc := tcpPair(t)
	cc.Write([]byte("SSH-2.0-Patient\r\n"))
	pc, offer, err := peekCiphers(sc, "SSH-2.0-Airlock", time.Now().Add(5*time.Second))
	if err != nil || offer != nil {
		t.Fatalf("peekCiphers: %v, %v", offer, err)
	}
	got := make([]byte, 64)
	n, _ := pc.Read(got)
	if string(got[:n]) != "SSH-2.0-Patient\r\n" {
		t.Errorf("replayed %q", got[:n])
	}
	// The server's version line went out once, though x/crypto/ssh writes it again.
	if _, err := pc.Write([]byte("SSH-2.0-Airlock\r\n")); err != nil {
		t.Fatal(err)
	}
	pc.Write([]byte("next"))
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, len("SSH-2.0-Airlock\r\nnext"))
	if _, err := io.ReadFull(cc, b); err != nil || string(b) != "SSH-2.0-Airlock\r\nnext" {
		t.Errorf("client read %q, %v", b, err)
	}
	// The read deadline is the handshake's again, not the peek's.
	go func() { time.Sleep(2 * kexPeekWait); cc.Write([]byte("late")) }()
	if n, err := pc.Read(got); err != nil || string(got[:n]) != "late" {
		t.Errorf("read after the peek's wait: %q, %v", got[:n], err)
	}
}
