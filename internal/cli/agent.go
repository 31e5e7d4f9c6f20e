package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/airlock-gw/airlock/internal/agent"
	"github.com/airlock-gw/airlock/internal/version"
)

func init() {
	register("agent", "run a network-resident agent: dial out to the gateway, serve private targets", runAgent)
}

func runAgent(args []string) int {
	fs := flag.NewFlagSet("airlock agent", flag.ContinueOnError)
	cfgPath := fs.String("config", os.Getenv("AIRLOCK_AGENT_CONFIG"), "agent.yaml `file`: the targets this agent serves (env AIRLOCK_AGENT_CONFIG)")
	token := fs.String("token", "", "join `token` from `airlock agents create NAME` (env AIRLOCK_AGENT_TOKEN)")
	gw := fs.String("gateway", os.Getenv("AIRLOCK_AGENT_GATEWAY"), "gateway agent address `host:port`, overriding the token's and agent.yaml's (env AIRLOCK_AGENT_GATEWAY)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: airlock agent --token TOKEN --config agent.yaml\n\nDials out to the gateway's listen.agents over TLS (pinned by the token) and serves the\ntargets of agent.yaml, whose credentials stay here. See docs/agent.md.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	cfg, err := agent.LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "airlock agent:", err)
		return 1
	}
	tok, err := cfg.ResolveToken(*token)
	if err != nil {
		fmt.Fprintln(os.Stderr, "airlock agent:", err)
		return 1
	}
	targets, err := cfg.ResolveTargets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "airlock agent:", err)
		return 1
	}
	log := newLogger(cfg.Log).With("agent", tok.Name)
	a := &agent.Agent{Token: tok, Gateway: cfg.Gateway, Targets: targets, Version: version.String(), Log: log, Grace: cfg.ShutdownGrace}
	if *gw != "" {
		a.Gateway = *gw
	}
	if cfg.Debug != "" {
		dln, err := net.Listen("tcp", cfg.Debug)
		if err != nil {
			fmt.Fprintln(os.Stderr, "airlock agent: debug:", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		log.Warn("serving pprof profiles", "addr", dln.Addr().String())
		go http.Serve(dln, mux)
	}
	log.Info("starting airlock agent", "version", version.String(), "gateway", tok.Addr, "targets", len(targets))
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	force := make(chan struct{})
	go func() {
		s := <-sig
		log.Info("signal received: draining (send it again to stop at once)", "signal", s.String())
		cancel()
		s = <-sig
		log.Warn("second signal: stopping now", "signal", s.String())
		close(force)
	}()
	err = a.Run(ctx, force)
	var refused *agent.RefusedError
	if errors.As(err, &refused) {
		log.Error("stopping: the gateway refused this agent", "code", refused.Code, "err", refused.Message)
		return 1
	}
	if err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
