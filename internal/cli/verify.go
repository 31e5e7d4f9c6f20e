package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/verify"
)

func init() {
	register("verify", "check a recording's hash chain and signatures (exit 0 only when intact)", func(args []string) int {
		return runVerify(osEnv(), args)
	})
}

const verifyUsage = `verify SESSION_ID [--json]
       airlock verify --file EXPORT --public-key FILE [--public-key FILE ...] [--json]

The first form asks the gateway to verify a recording. The second needs no gateway: EXPORT is
what airlock export --format jsonl wrote, and each FILE holds trusted public keys: PEM "PUBLIC
KEY" blocks (as airlock export writes next to the export), the JSON of GET
/api/v1/signing-keys, or the base64 of a raw 32-byte Ed25519 key. The keys inside the export
itself are never trusted. Exit status: 0 intact, 1 not intact or failed, 2 usage.`

// stringsFlag collects a repeated flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func runVerify(e *env, args []string) int {
	fs := e.newFlagSet("verify", verifyUsage)
	file := fs.String("file", "", "verify this JSON Lines export offline instead of asking the gateway")
	var keyFiles stringsFlag
	fs.Var(&keyFiles, "public-key", "trusted public key file for --file (repeatable)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	var (
		res     verify.Result
		session string
	)
	switch {
	case *file != "" && len(pos) == 0:
		if len(keyFiles) == 0 {
			fmt.Fprintf(e.stderr, "airlock verify: --file needs --public-key (the keys inside an export are not trusted)\n")
			return exitUsage
		}
		if session, res, err = verifyFile(*file, keyFiles); err != nil {
			return e.fail(err)
		}
	case *file == "" && len(pos) == 1:
		session = pos[0]
		c, err := e.newClient()
		if err != nil {
			return e.fail(err)
		}
		if err := c.getJSON(context.Background(), "/api/v1/sessions/"+url.PathEscape(session)+"/verify", nil, &res, nil); err != nil {
			return e.fail(err)
		}
	default:
		fmt.Fprintf(e.stderr, "Usage: airlock %s\n", verifyUsage)
		return exitUsage
	}
	if *asJSON {
		b, _ := json.Marshal(res)
		printJSON(e.stdout, b)
	} else {
		printResult(e.stdout, session, res)
	}
	if !res.Intact {
		return exitFailure
	}
	return exitOK
}

// verifyFile checks an export with the keys in keyFiles.
func verifyFile(path string, keyFiles []string) (string, verify.Result, error) {
	keys := map[string]ed25519.PublicKey{}
	for _, kf := range keyFiles {
		b, err := os.ReadFile(kf)
		if err != nil {
			return "", verify.Result{}, fmt.Errorf("public key: %w", err)
		}
		parsed, err := signing.ParsePublicKeys(b)
		if err != nil {
			return "", verify.Result{}, fmt.Errorf("%s: %w", kf, err)
		}
		for _, k := range parsed {
			keys[k.ID] = k.Key
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", verify.Result{}, err
	}
	defer f.Close()
	return verifyExport(f, keys)
}

func verifyExport(r io.Reader, keys map[string]ed25519.PublicKey) (string, verify.Result, error) {
	v := &verify.Verifier{Keys: keys}
	headerOK := false
	h, err := verify.ReadExport(r, func(h *verify.Header) error {
		v.Session, headerOK = h.SessionID(), true // every event must be this session's
		return nil
	}, func(e *event.Event) error {
		v.Add(e)
		return nil
	})
	if err != nil {
		if !headerOK {
			return "", verify.Result{}, fmt.Errorf("not an airlock export: %w", err)
		}
		v.ReadError(err)
	}
	if err == nil {
		v.CheckHeader(&h)
	}
	return h.SessionID(), v.Finish(), nil
}

func printResult(w io.Writer, session string, r verify.Result) {
	if r.Intact {
		fmt.Fprintf(w, "session %s: intact: %d events, %d checkpoints, signed through event %d\n", session, r.Events, r.Checkpoints, r.Signed)
		return
	}
	fmt.Fprintf(w, "session %s: NOT INTACT: %d finding(s) in %d events, %d checkpoints\n", session, len(r.Findings), r.Events, r.Checkpoints)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "  %-13s event %-6d %s\n", f.Kind, f.Seq, f.Message)
	}
}
