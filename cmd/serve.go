package cmd

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

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

			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			srv, err := proxy.NewServer(cfg, proxy.Options{Logger: log, Registry: reg})
			if err != nil {
				return err
			}
			ln, err := srv.Listen()
			if err != nil {
				return err
			}
			var ready atomic.Bool
			if cfg.MetricsListen != "" {
				mln, err := net.Listen("tcp", cfg.MetricsListen)
				if err != nil {
					ln.Close()
					return err
				}
				hs := &http.Server{Handler: opsHandler(reg, &ready), ReadHeaderTimeout: 5 * time.Second}
				go hs.Serve(mln)
				defer hs.Close()
			}

			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				ready.Store(false)
				log.Info("shutting down: waiting for sessions to end", zap.Duration("grace", shutdownGrace))
				sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			ready.Store(true)
			err = srv.Serve(ln)
			srv.Close()
			return err
		},
	}
}

// opsHandler serves /metrics, /healthz (the process is alive) and /readyz
// (the proxy accepts sessions).
func opsHandler(reg *prometheus.Registry, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
