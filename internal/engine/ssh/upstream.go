package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/target"
)

const upstreamHandshakeTimeout = 15 * time.Second

// hostKeyMismatch is what the pinned host key check reports.
type hostKeyMismatch struct {
	target        string
	got, want     ssh.PublicKey
	gotFP, wantFP string
}

func (h *hostKeyMismatch) Error() string {
	return fmt.Sprintf("the host key of target %s does not match the pinned one: it presented %s %s, the gateway pins %s %s. "+
		"If the target's key was changed on purpose, update the target's host_key; otherwise something may be intercepting the connection",
		h.target, h.got.Type(), h.gotFP, h.want.Type(), h.wantFP)
}

// hostKeyAlgorithms are the host key algorithms that make a server present a key of the pinned
// key's type (an OpenSSH server has several host keys and would otherwise pick its favourite).
func hostKeyAlgorithms(k ssh.PublicKey) []string {
	switch k.Type() {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	default:
		return []string{k.Type()}
	}
}

// dialTarget connects and authenticates to an ssh target as the gateway: the target's login
// name, the gateway's credential for it, and its pinned host key. A target served by an agent is
// logged in to by the agent, with its own credential and pin (agentrelay.go).
func (e *Engine) dialTarget(ctx context.Context, t target.Target) (*ssh.Client, upstreamInfo, error) {
	if t.Agent != "" {
		return e.dialViaAgent(ctx, t)
	}
	cc, chans, reqs, err := connectTarget(ctx, t, func(ctx context.Context) (net.Conn, error) { return e.d.Connector.Dial(ctx, t) })
	if err != nil {
		return nil, upstreamInfo{}, err
	}
	return ssh.NewClient(cc, chans, reqs), upstreamInfo{Version: string(cc.ServerVersion()), Login: t.Username}, nil
}

// upstreamInfo is what session.start says of the connection to the target.
type upstreamInfo struct {
	Version string // the target's SSH version string
	Login   string // the login name on the target
	Via     string // the agent that carries it; "" for a direct target
	// lost, for a target served by an agent, is the loss of that agent's tunnel under the
	// connection, or nil while it holds; nil for a direct target. Not in session.start.
	lost func() *connector.LostError
}

// connectTarget runs the SSH login to t over a stream from dial, where t's credentials are (the
// gateway, or the agent serving t). Its errors are *userError, worded for the user.
func connectTarget(ctx context.Context, t target.Target, dial func(context.Context) (net.Conn, error)) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	if strings.TrimSpace(t.HostKey) == "" {
		return nil, nil, nil, &userError{fmt.Sprintf("target %s has no pinned host_key; the gateway does not connect to an SSH server it cannot identify", t.Name)}
	}
	pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t.HostKey))
	if err != nil {
		return nil, nil, nil, &userError{fmt.Sprintf("target %s: host_key does not parse: %v", t.Name, err)}
	}
	var methods []ssh.AuthMethod
	if t.PrivateKeyFile != "" {
		b, err := os.ReadFile(t.PrivateKeyFile)
		if err != nil {
			return nil, nil, nil, &userError{fmt.Sprintf("target %s: the gateway cannot read its private key: %v", t.Name, err)}
		}
		signer, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, nil, nil, &userError{fmt.Sprintf("target %s: the gateway's private key does not parse: %v", t.Name, err)}
		}
		methods = append(methods, ssh.PublicKeys(signer))
	}
	if t.Password != "" {
		pw := t.Password
		methods = append(methods, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			a := make([]string, len(qs))
			for i := range a {
				a[i] = pw
			}
			return a, nil
		}))
	}
	if len(methods) == 0 {
		return nil, nil, nil, &userError{fmt.Sprintf("target %s has no credential: set private_key_file or password", t.Name)}
	}
	if t.Username == "" {
		return nil, nil, nil, &userError{fmt.Sprintf("target %s has no username (the login name on the target)", t.Name)}
	}
	var mismatch *hostKeyMismatch
	cfg := &ssh.ClientConfig{
		User:              t.Username,
		Auth:              methods,
		HostKeyAlgorithms: hostKeyAlgorithms(pinned),
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if bytes.Equal(key.Marshal(), pinned.Marshal()) {
				return nil
			}
			mismatch = &hostKeyMismatch{target: t.Name, got: key, want: pinned,
				gotFP: ssh.FingerprintSHA256(key), wantFP: ssh.FingerprintSHA256(pinned)}
			return mismatch
		},
		ClientVersion: "SSH-2.0-Airlock",
		Timeout:       upstreamHandshakeTimeout,
	}
	nc, err := dial(ctx)
	if err != nil {
		return nil, nil, nil, &userError{fmt.Sprintf("cannot reach target %s at %s: %v", t.Name, t.Address, unwrapDial(err))}
	}
	nc.SetDeadline(time.Now().Add(upstreamHandshakeTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(newCoalesceConn(nc), t.Address, cfg)
	if err != nil {
		nc.Close()
		if mismatch != nil {
			return nil, nil, nil, &userError{mismatch.Error()}
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, nil, nil, &userError{fmt.Sprintf("target %s refused the gateway's credential for %s: %v", t.Name, t.Username, err)}
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, nil, &userError{fmt.Sprintf("target %s at %s did not complete the SSH handshake within %s", t.Name, t.Address, upstreamHandshakeTimeout)}
		}
		return nil, nil, nil, &userError{fmt.Sprintf("SSH handshake with target %s failed: %v", t.Name, err)}
	}
	nc.SetDeadline(time.Time{})
	return cc, chans, reqs, nil
}

// unwrapDial shortens a dial error to its cause ("connection refused").
func unwrapDial(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
