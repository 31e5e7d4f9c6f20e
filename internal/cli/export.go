package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-gw/airlock/internal/asciicast"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/verify"
)

func init() {
	register("export", "write a recording as JSON Lines (verifiable offline) or asciicast v2", func(args []string) int {
		return runExport(osEnv(), args)
	})
}

const exportUsage = `export SESSION_ID [--format jsonl|asciicast] [-o FILE]

jsonl (default): every event with its chain and signatures; airlock verify --file checks it
offline. With -o FILE the gateway's public keys are also written to FILE.pub (PEM), for
airlock verify --public-key. asciicast: the session as terminal text with its timing (asciicast
v2, for asciinema play); it is for watching, not for verification.`

func runExport(e *env, args []string) int {
	fs := e.newFlagSet("export", exportUsage)
	format := fs.String("format", "jsonl", "jsonl or asciicast")
	out := fs.String("o", "", "write to FILE instead of stdout")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) != 1 || (*format != "jsonl" && *format != "asciicast") {
		fmt.Fprintf(e.stderr, "Usage: airlock %s\n", exportUsage)
		return exitUsage
	}
	c, err := e.newClient()
	if err != nil {
		return e.fail(err)
	}
	res, err := c.request(context.Background(), http.MethodGet, "/api/v1/sessions/"+url.PathEscape(pos[0])+"/export", nil, nil)
	if err != nil {
		return e.fail(err)
	}
	defer res.Body.Close()

	w, finish, err := openOutput(e, *out)
	if err != nil {
		return e.fail(err)
	}
	var h verify.Header
	switch *format {
	case "jsonl":
		// Check the stream as it is copied: the copy is what was sent, and a stream that
		// ended early is reported here rather than by a later verify.
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			var err error
			h, err = verify.ReadExport(pr, nil, func(*event.Event) error { return nil })
			io.Copy(io.Discard, pr)
			done <- err
		}()
		_, err = io.Copy(io.MultiWriter(w, pw), res.Body)
		pw.CloseWithError(err)
		if rerr := <-done; err == nil {
			err = rerr
		}
	case "asciicast":
		err = writeAsciicast(w, res.Body, &h)
	}
	if err = finish(err); err != nil {
		if *out == "" {
			err = fmt.Errorf("%w (what was written to stdout is incomplete)", err)
		}
		return e.fail(fmt.Errorf("export %s: %w", pos[0], err))
	}
	if *out != "" && *format == "jsonl" {
		var pem []byte
		for _, k := range h.SigningKeys {
			keys, kerr := signing.ParsePublicKeys([]byte(k.PublicKey))
			if kerr != nil {
				return e.fail(fmt.Errorf("export %s: key %s: %w", pos[0], k.ID, kerr))
			}
			pem = append(pem, signing.MarshalPublicPEM(signing.PublicKey{Key: keys[0].Key, CreatedAt: k.CreatedAt})...)
		}
		if err := os.WriteFile(*out+".pub", pem, 0o644); err != nil {
			return e.fail(err)
		}
		fmt.Fprintf(e.stderr, "wrote %s and its signing keys %s.pub\n", *out, *out)
	}
	return exitOK
}

// openOutput returns where to write: stdout, or a temporary file next to path. finish(err)
// renames it to path when err is nil, and otherwise removes it, so that a failed export leaves
// no file (and none that looks complete); it returns err, or the error of the rename.
func openOutput(e *env, path string) (io.Writer, func(error) error, error) {
	if path == "" {
		return e.stdout, func(err error) error { return err }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, nil, err
	}
	return f, func(err error) error {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
		}
		return err
	}, nil
}

// writeAsciicast converts a JSON Lines export read from r to asciicast v2 (internal/asciicast:
// a terminal session as its terminal showed it, others as a psql-like transcript). It checks
// only that every line parses and that the stream ends cleanly, not the chain or the
// signatures: asciicast is for watching; verify the jsonl export for evidence.
func writeAsciicast(w io.Writer, r io.Reader, hdr *verify.Header) error {
	var c *asciicast.Writer
	_, err := verify.ReadExport(r, func(h *verify.Header) error {
		*hdr = *h
		var s struct {
			ID        string    `json:"id"`
			User      string    `json:"user"`
			Target    string    `json:"target"`
			Type      string    `json:"type"`
			StartedAt time.Time `json:"started_at"`
		}
		json.Unmarshal(h.Session, &s)
		c = asciicast.New(w, asciicast.Session{ID: s.ID, User: s.User, Target: s.Target, Type: s.Type, StartedAt: s.StartedAt})
		c.Markers = true
		return c.Err()
	}, func(e *event.Event) error {
		return c.Event(e)
	})
	if err == nil && c != nil {
		err = c.Finish()
	}
	return err
}
