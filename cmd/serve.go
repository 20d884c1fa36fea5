package cmd

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/engine"
)

func serveCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			g.level.SetLevel(logLevel(cfg, g.flagLevel))
			return serve(cfg, log, &reloader{path: g.configPath, log: log, level: g.level, flagLevel: g.flagLevel})
		},
	}
}

// serve runs pgcloak with cfg until SIGTERM or SIGINT; r (its path, logger
// and level set) re-reads the configuration on SIGHUP and RELOAD.
func serve(cfg *config.Config, log *zap.Logger, r *reloader) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.cfg, r.metrics = cfg, newOpsMetrics(reg)
	stopHUP := r.onSIGHUP()
	defer stopHUP()
	opts := proxy.Options{Logger: log, Registry: reg}
	protect := len(cfg.Tables) > 0
	var prot *engine.Protector
	if protect {
		// Until the keys and the catalog are loaded, relaying would let
		// plaintext through: sessions to the protected database are
		// refused.
		var err error
		if prot, err = engine.NewProtector(cfg.AdminDSN, log); err != nil {
			return err
		}
		prot.UseMetrics(engine.NewMetrics(reg))
		opts.Hooks = prot
		r.prot = newProtection(cfg, log, prot, r.metrics)
		registerProtectionMetrics(r.metrics, r.prot)
	}
	console := r.console(prot)
	console.Metrics = reg
	opts.Console = console
	srv, err := proxy.NewServer(cfg, opts)
	if err != nil {
		return err
	}
	console.Server, r.srv = srv, srv

	ln, err := srv.Listen()
	if err != nil {
		return err
	}
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return err
		}
		hs := &http.Server{Handler: opsHandler(reg, srv), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(mln)
		defer hs.Close()
	}

	// SIGTERM (or ^C) drains: see proxy.Server.Shutdown. A second one
	// closes every session at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	fatal := make(chan error, 1)
	closeKeys := func() {}
	if protect {
		done := make(chan func(), 1)
		go func() { done <- r.prot.serve(ctx, fatal) }()
		defer func() {
			if c := <-done; c != nil {
				closeKeys = c
			}
			closeKeys() // zero the data keys after the last session
		}()
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		select {
		case <-sigs:
		case err := <-fatal:
			log.Error("cannot serve", zap.Error(err))
			fatal <- err
		}
		srv.SetNotReady("shutting down")
		timeout := srv.Config().ShutdownTimeout // as reloaded
		log.Info("shutting down: closing idle sessions, waiting for busy ones (a second SIGTERM closes them at once)",
			zap.Duration("shutdown_timeout", timeout))
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		go func() {
			select {
			case <-sigs:
				log.Warn("second signal: closing every session now")
				srv.Close()
			case <-sctx.Done():
			}
		}()
		_ = srv.Shutdown(sctx)
	}()
	err = srv.Serve(ln)
	if err == nil {
		<-drained // Serve returns when the drain closes the listener
	}
	srv.Close()
	stop()
	select {
	case ferr := <-fatal:
		return ferr
	default:
	}
	return err
}

// opsHandler serves /metrics, /healthz (the process is alive) and /readyz
// (sessions are served; otherwise 503 with the reason).
func opsHandler(reg *prometheus.Registry, srv *proxy.Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := srv.Ready(); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
