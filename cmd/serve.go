package cmd

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/crypto"
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
			return serve(cfg, log)
		},
	}
}

func serve(cfg *config.Config, log *zap.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
		opts.Hooks = prot
	}
	srv, err := proxy.NewServer(cfg, opts)
	if err != nil {
		return err
	}
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
		go func() { done <- ServeProtection(ctx, cfg, log, prot, fatal) }()
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
		log.Info("shutting down: closing idle sessions, waiting for busy ones (a second SIGTERM closes them at once)",
			zap.Duration("shutdown_timeout", cfg.ShutdownTimeout))
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
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

// ServeProtection is what serve does to protect columns: it loads the keys
// (retrying while Vault cannot be reached), resolves the rules and keeps
// srv's protection in step with the catalog until ctx ends. It returns the
// function that zeroes the keys, or nil when ctx ended first or a rule
// cannot be resolved (then the error is sent on fatal). Tests start pgcloak
// through it too.
//
// It loads the keys, retrying with backoff while Vault cannot be reached
// (the protector says why it is not ready meanwhile), then reads the catalog
// and keeps it in step (engine.Protector.WatchCatalog). Rules that do not
// match the database (a missing backstop, a column that is not bytea …) keep
// sessions to the protected database out, with the reason and the fix in
// /readyz and the log, until they are fixed.
func ServeProtection(ctx context.Context, cfg *config.Config, log *zap.Logger, srv *engine.Protector, fatal chan<- error) func() {
	if cfg.AllowMissingBackstop {
		log.Warn("allow_missing_backstop is set: protected columns without their CHECK backstop are served, " +
			"so a write that goes around pgcloak could store plaintext in them; use it only during a roll-out")
	}
	delay := time.Second
	var keys crypto.Keyrings
	var closeKeys func()
	for {
		l, c, err := OpenKeyrings(ctx, cfg, log)
		if err == nil {
			keys, closeKeys = l, c
			break
		}
		srv.SetNotReady("keys: " + err.Error())
		log.Error("not ready; retrying", zap.Error(err), zap.Duration("in", delay))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
	rules, err := engine.NewRules(cfg, keys)
	if err != nil {
		closeKeys()
		fatal <- err
		return nil
	}
	src := engine.CatalogSource{
		Rules: rules,
		Every: cfg.CatalogRefresh,
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			conn, err := pgx.Connect(ctx, cfg.AdminDSN)
			if err != nil {
				return nil, fmt.Errorf("admin_dsn: %w", err)
			}
			return conn, nil
		},
	}
	go func() {
		delay := time.Second
		for {
			err := srv.WatchCatalog(ctx, src, func() {
				if ok, why := srv.Ready(); ok {
					log.Info("ready: keys and protected columns loaded", zap.Int("tables", len(cfg.Tables)))
				} else {
					log.Error("not ready: "+why, zap.String("fix", "pgcloak check --config FILE lists each problem with its fix"))
				}
			})
			if err == nil || ctx.Err() != nil {
				return
			}
			srv.SetNotReady(err.Error())
			log.Error("not ready; retrying", zap.Error(err), zap.Duration("in", delay))
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 30*time.Second)
		}
	}()
	return closeKeys
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
