package cli

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/signing"
	"github.com/airlock-gw/airlock/internal/verify"
)

func init() {
	register("signing-keys", "list the keys that sign recordings, or rotate the gateway's (offline)", func(args []string) int {
		return runSigningKeys(osEnv(), args)
	})
}

const signingKeysUsage = `signing-keys list [--json]
       airlock signing-keys rotate [--config FILE]

list asks the gateway (GET /api/v1/signing-keys, no login needed) for every public key that ever
signed a checkpoint. rotate runs on the gateway's host, gateway stopped or not: it writes a new
key pair into data_dir/signing (data_dir from --config, default $AIRLOCK_CONFIG or the embedded
default) and makes it current; the gateway signs with it from its next start, which records
the new signing_key_id in its gateway.start audit entry. Older public keys stay listed, so
recordings signed with them still verify. With recording.signing_key_file set, rotate refuses:
configure another key file instead.`

func runSigningKeys(e *env, args []string) int {
	return dispatch(e, "signing-keys", signingKeysUsage, args, map[string]func(*env, []string) int{
		"list":   runSigningKeysList,
		"ls":     runSigningKeysList,
		"rotate": runSigningKeysRotate,
	})
}

func runSigningKeysList(e *env, args []string) int {
	var ans struct {
		Keys []verify.KeyJSON `json:"keys"`
	}
	if done, code := listing(e, "signing-keys list", "/api/v1/signing-keys", args, &ans); done {
		return code
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tALGORITHM\tCREATED\tCURRENT\tPUBLIC KEY")
	for _, k := range ans.Keys {
		cur := ""
		if k.Current {
			cur = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.CreatedAt.UTC().Format(time.RFC3339), cur, k.PublicKey)
	}
	return exitCode(e, tw.Flush())
}

func runSigningKeysRotate(e *env, args []string) int {
	fs := e.newFlagSet("signing-keys rotate", "signing-keys rotate [--config FILE]")
	cfgPath := fs.String("config", e.getenv("AIRLOCK_CONFIG"), "the gateway's YAML config `file` (default $AIRLOCK_CONFIG, else the embedded default)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "airlock signing-keys rotate: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return e.fail(err)
	}
	if cfg.Recording.SigningKeyFile != "" {
		return e.fail(fmt.Errorf("recording.signing_key_file is set (%s): the gateway signs with that key; to rotate, configure a new key file and restart", cfg.Recording.SigningKeyFile))
	}
	dir := filepath.Join(cfg.DataDir, "signing")
	id, err := signing.Rotate(dir, e.now())
	if err != nil {
		return e.fail(err)
	}
	fmt.Fprintf(e.stdout, "%s\n", id)
	fmt.Fprintf(e.stderr, "New signing key %s in %s; the gateway signs with it from its next start (restart it). "+
		"Keep the older .pub files: recordings signed with them verify against them.\n", id, dir)
	return exitOK
}
