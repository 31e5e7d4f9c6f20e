package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func init() {
	register("ssh-cert", "get a short-lived SSH certificate for your public key from the gateway's user CA", func(args []string) int {
		return runSSHCert(osEnv(), args)
	})
}

const sshCertUsage = `ssh-cert [--ssh-key FILE.pub] [--ttl DURATION] [--json]

Asks the gateway's SSH user CA (POST /api/v1/ssh/certificate, with the saved login) for a
certificate of your public key, and writes it next to the key as FILE-cert.pub, where ssh finds
it by itself: ssh -i ~/.ssh/id_ed25519 then logs in to the gateway's SSH listener as you, with no
key registered there, until the certificate expires (--ttl, default 8h, at most 24h and never
past the saved token). The key file may also be the only argument.`

// sshCertAnswer is the API's answer.
type sshCertAnswer struct {
	Certificate string    `json:"certificate"`
	KeyID       string    `json:"key_id"`
	Serial      string    `json:"serial"`
	Principals  []string  `json:"principals"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	CAPublicKey string    `json:"ca_public_key"`
}

func runSSHCert(e *env, args []string) int {
	fs := e.newFlagSet("ssh-cert", sshCertUsage)
	keyFile := fs.String("ssh-key", "", "the public key to certify (default ~/.ssh/id_ed25519.pub)")
	ttl := fs.Duration("ttl", 0, "how long the certificate is valid (default 8h, at most 24h)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 1 || (len(pos) == 1 && *keyFile != "") {
		fmt.Fprintln(e.stderr, "airlock ssh-cert: name one public key file (--ssh-key FILE or FILE)")
		return exitUsage
	}
	if len(pos) == 1 {
		*keyFile = pos[0]
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path, ans, err := e.issueSSHCert(ctx, c, *keyFile, *ttl)
	if err != nil {
		return e.fail(err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(ans, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return exitOK
	}
	e.printSSHCert(path, ans)
	return exitOK
}

func (e *env) printSSHCert(path string, ans sshCertAnswer) {
	fmt.Fprintf(e.stdout, "SSH certificate for %s (serial %s) saved to %s, valid until %s.\n",
		strings.Join(ans.Principals, ","), ans.Serial, path, ans.ValidBefore.Local().Format("2006-01-02 15:04:05 MST"))
}

// issueSSHCert asks the gateway to certify the public key in keyFile ("": ~/.ssh/id_ed25519.pub)
// and writes the certificate where OpenSSH looks for it: KEY-cert.pub beside KEY.pub.
func (e *env) issueSSHCert(ctx context.Context, c *client, keyFile string, ttl time.Duration) (string, sshCertAnswer, error) {
	var ans sshCertAnswer
	if keyFile == "" {
		home := e.getenv("HOME")
		if home == "" {
			return "", ans, errors.New("no public key: name one with --ssh-key FILE.pub")
		}
		keyFile = filepath.Join(home, ".ssh", "id_ed25519.pub")
	}
	if strings.HasPrefix(keyFile, "~/") {
		keyFile = filepath.Join(e.getenv("HOME"), keyFile[2:])
	}
	pub, err := os.ReadFile(keyFile)
	if err != nil {
		return "", ans, fmt.Errorf("read the public key: %w", err)
	}
	if strings.Contains(string(pub), "PRIVATE KEY") {
		return "", ans, fmt.Errorf("%s is a private key: name the public key (%s.pub)", keyFile, keyFile)
	}
	req := map[string]string{"public_key": strings.TrimSpace(string(pub))}
	if ttl > 0 {
		req["ttl"] = ttl.String()
	}
	if err := c.post(ctx, "/api/v1/ssh/certificate", req, &ans); err != nil {
		return "", ans, err
	}
	certPath := strings.TrimSuffix(keyFile, ".pub") + "-cert.pub"
	if err := os.WriteFile(certPath, []byte(ans.Certificate+"\n"), 0o644); err != nil {
		return "", ans, fmt.Errorf("write the certificate: %w", err)
	}
	return certPath, ans, nil
}
