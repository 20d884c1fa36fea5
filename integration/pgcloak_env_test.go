package integration

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/cmd"
	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/engine"
)

// pgcloakProc is pgcloak started in process the way serve starts it: keys
// from the KMS, the rules, the catalog watch.
type pgcloakProc struct {
	addr string
	srv  *proxy.Server
	prot *engine.Protector // nil without tables
	reg  *prometheus.Registry
	stop func()
}

// startPgcloak starts pgcloak with cfg on cfg.Listen (use 127.0.0.1:0) and
// waits until its protected columns are loaded. It fails the test unless the
// server is then ready, when wantReady is set. stop (also a cleanup) ends it.
func startPgcloak(t testing.TB, cfg *config.Config, log *zap.Logger, wantReady bool) *pgcloakProc {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := proxy.Options{Logger: log, Registry: reg}
	var prot *engine.Protector
	if len(cfg.Tables) > 0 {
		var err error
		if prot, err = engine.NewProtector(cfg.AdminDSN, log); err != nil {
			t.Fatal(err)
		}
		opts.Hooks = prot
	}
	srv, err := proxy.NewServer(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	fatal := make(chan error, 1)
	closeKeys := func() {}
	if prot != nil {
		if c := cmd.ServeProtection(ctx, cfg, log, prot, fatal); c != nil {
			closeKeys = c
		}
	}
	p := &pgcloakProc{addr: ln.Addr().String(), srv: srv, prot: prot, reg: reg}
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		srv.Close()
		<-served
		closeKeys()
	}
	t.Cleanup(p.stop)
	deadline := time.Now().Add(time.Minute)
	for prot != nil && !prot.Protecting() {
		select {
		case err := <-fatal:
			t.Fatalf("pgcloak cannot serve: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_, why := srv.Ready()
			t.Fatalf("pgcloak did not load its protected columns: %s", why)
		}
	}
	if ok, why := srv.Ready(); wantReady && !ok {
		t.Fatalf("pgcloak is not ready: %s", why)
	}
	return p
}
