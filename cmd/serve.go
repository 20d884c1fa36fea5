package cmd

import (
	"context"
	"errors"
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
	"github.com/pgcloak/pgcloak/proxy"
)

// shutdownGrace is how long serve waits for sessions to end after SIGTERM
// before closing them.
const shutdownGrace = 30 * time.Second

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
	if protect {
		// Until the keys and the catalog are loaded, relaying would let
		// plaintext through: sessions are refused.
		opts.NotReady = "loading keys and protected columns"
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fatal := make(chan error, 1)
	closeKeys := func() {}
	if protect {
		done := make(chan func(), 1)
		go func() { done <- loadUntilReady(ctx, cfg, log, srv, fatal) }()
		defer func() {
			if c := <-done; c != nil {
				closeKeys = c
			}
			closeKeys() // zero the data keys after the last session
		}()
	}
	go func() {
		select {
		case <-ctx.Done():
		case err := <-fatal:
			log.Error("cannot serve", zap.Error(err))
			fatal <- err
		}
		srv.SetNotReady("shutting down")
		log.Info("shutting down: waiting for sessions to end", zap.Duration("grace", shutdownGrace))
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err = srv.Serve(ln)
	srv.Close()
	stop()
	select {
	case ferr := <-fatal:
		return ferr
	default:
	}
	return err
}

// loadUntilReady loads the keys and checks the protected columns against the
// catalog, retrying with backoff while Vault or the database cannot be
// reached; the server says why it is not ready meanwhile. A rule that does
// not match the catalog is a configuration mistake: it is sent on fatal.
// It returns the function that zeroes the keys (nil if never loaded).
func loadUntilReady(ctx context.Context, cfg *config.Config, log *zap.Logger, srv *proxy.Server, fatal chan<- error) func() {
	delay := time.Second
	for {
		prot, closeKeys, err := loadProtection(ctx, cfg, log)
		if err == nil {
			srv.SetReady(prot)
			log.Info("ready: keys and protected columns loaded", zap.Int("tables", len(cfg.Tables)))
			return closeKeys
		}
		var ce *proxy.CatalogError
		if errors.As(err, &ce) {
			fatal <- err
			return nil
		}
		srv.SetNotReady(err.Error())
		log.Error("not ready; retrying", zap.Error(err), zap.Duration("in", delay))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// loadProtection opens the keyrings and resolves the rules of tables:.
func loadProtection(ctx context.Context, cfg *config.Config, log *zap.Logger) (*proxy.Protection, func(), error) {
	keys, closeKeys, err := OpenKeyrings(ctx, cfg, log)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, cfg.AdminDSN)
	if err != nil {
		closeKeys()
		return nil, nil, fmt.Errorf("admin_dsn: %w", err)
	}
	defer conn.Close(context.Background())
	prot, err := proxy.LoadProtection(cctx, conn, cfg, keys)
	if err != nil {
		closeKeys()
		return nil, nil, err
	}
	return prot, closeKeys, nil
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
