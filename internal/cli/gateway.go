package cli

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/gateway"
	"github.com/airlock-gw/airlock/internal/version"
)

func init() {
	register("gateway", "run the gateway (API, protocol listeners, recorder)", runGateway)
}

func runGateway(args []string) int {
	fs := flag.NewFlagSet("airlock gateway", flag.ContinueOnError)
	cfgPath := fs.String("config", os.Getenv("AIRLOCK_CONFIG"), "YAML config `file` (default: none, the embedded default; env AIRLOCK_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: airlock gateway [--config FILE]\n\nWith no config the gateway runs on its embedded default: data in ./airlock-data,\nAPI on 127.0.0.1:8009, PostgreSQL listener on 127.0.0.1:15432. See docs/configuration.md.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "airlock gateway:", err)
		return 1
	}
	log := newLogger(cfg.Log)
	log.Info("starting airlock gateway", "version", version.String(), "config", cfg.Path(), "data_dir", cfg.DataDir)
	g, err := gateway.New(cfg, log, os.Stdout)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if err := g.Start(); err != nil {
		log.Error("cannot start", "err", err)
		g.Shutdown(nil)
		return 1
	}
	s := <-sig
	log.Info("signal received: shutting down (send it again to stop at once)", "signal", s.String())
	force := make(chan struct{})
	go func() {
		s := <-sig
		log.Warn("second signal: stopping now", "signal", s.String())
		close(force)
	}()
	if err := g.Shutdown(force); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

// newLogger returns the structured logger: JSON unless stderr is a terminal or log.format says
// otherwise.
func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "" {
		format = "json"
		if term.IsTerminal(int(os.Stderr.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
