package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy"
	"github.com/pgcloak/pgcloak/proxy/admin"
	"github.com/pgcloak/pgcloak/proxy/engine"
)

// reloadTimeout bounds a reload: reading the keys (KMS) and the catalog
// for new rules.
const reloadTimeout = 30 * time.Second

// reloader re-reads the configuration file on SIGHUP and on the console's
// RELOAD, and applies it as a whole or not at all:
//
//   - relay (proxy.Server.PrepareReload): upstream hosts, TLS and routing;
//     the client-leg certificate, key and CA; limits; admin_users and
//     admin_auth_database. New connections use them; running sessions keep
//     their connections.
//   - protection (protection.reload): tables, keys, kms, key_refresh,
//     catalog_refresh, shadow, allow_missing_backstop. New sessions use the
//     new rules; running sessions keep theirs until they end (see
//     proxy/engine/reload.go).
//   - log_level, at once.
//
// listen, metrics_listen, admin_dsn, shred_window, retention and
// retention_schedule take effect only at a restart: a change is logged and
// the running value kept (the schedules run with the values serve started
// with); audit: cannot change (the reload is refused). Turning protection on or off
// (tables: from none to some, or back) needs a restart and is refused.
type reloader struct {
	path      string
	log       *zap.Logger
	level     zap.AtomicLevel
	flagLevel zapcore.Level // --log-level, for a file without log_level
	srv       *proxy.Server
	prot      *protection // nil without tables
	metrics   *opsMetrics

	mu  sync.Mutex // one reload at a time
	cfg *config.Config
}

// Reload re-reads and applies the configuration file. On error nothing
// changed; the error (every problem of the file, or why it cannot be
// applied) is logged and returned.
func (r *reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.reload()
	if err != nil {
		r.metrics.reloads.WithLabelValues("error").Inc()
		r.log.Error("configuration not reloaded: the running configuration stays", zap.String("file", r.path), zap.Error(err))
		return err
	}
	r.metrics.reloads.WithLabelValues("ok").Inc()
	r.metrics.lastReload.SetToCurrentTime()
	r.log.Info("configuration reloaded", zap.String("file", r.path))
	return nil
}

func (r *reloader) reload() error {
	if r.path == "" {
		return errors.New("serve was started without a configuration file")
	}
	cfg, err := config.Load(r.path)
	if err != nil {
		return err
	}
	old := r.cfg
	if (len(cfg.Tables) > 0) != (r.prot != nil) {
		return errors.New("tables: turning protection on or off needs a restart (pgcloak serve loads the keys and the catalog at start)")
	}
	restartOnly := func(key, was, now string) {
		if was != now {
			r.log.Warn(key+" changed in the configuration file: it takes effect only at a restart; the running value stays", zap.String("key", key))
		}
	}
	restartOnly("listen", old.Listen, cfg.Listen)
	restartOnly("metrics_listen", old.MetricsListen, cfg.MetricsListen)
	restartOnly("admin_dsn", old.AdminDSN, cfg.AdminDSN)
	restartOnly("shred_window", old.ShredWindow.String(), cfg.ShredWindow.String())
	restartOnly("retention_schedule", old.RetentionSchedule.String(), cfg.RetentionSchedule.String())
	restartOnly("retention", fmt.Sprint(old.Retention), fmt.Sprint(cfg.Retention))
	cfg.Listen, cfg.MetricsListen, cfg.AdminDSN = old.Listen, old.MetricsListen, old.AdminDSN

	commit, err := r.srv.PrepareReload(cfg)
	if err != nil {
		return err
	}
	if r.prot != nil {
		ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
		defer cancel()
		if err := r.prot.reload(ctx, cfg); err != nil {
			return err
		}
	}
	commit()
	r.level.SetLevel(logLevel(cfg, r.flagLevel))
	r.cfg = cfg
	return nil
}

// logLevel is cfg's log_level, or the flag's when the file has none.
func logLevel(cfg *config.Config, flag zapcore.Level) zapcore.Level {
	if l, err := zapcore.ParseLevel(cfg.LogLevel); err == nil && cfg.LogLevel != "" {
		return l
	}
	return flag
}

// onSIGHUP reloads on every SIGHUP until stop is called. SIGHUP no longer
// ends the process (systemctl reload sends it).
func (r *reloader) onSIGHUP() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				r.log.Info("SIGHUP: reloading the configuration", zap.String("file", r.path))
				_ = r.Reload()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// console is the admin console of a serve process.
func (r *reloader) console(prot *engine.Protector) *admin.Console {
	c := &admin.Console{Reload: r.Reload, Version: Version, Log: r.log}
	if prot == nil {
		return c
	}
	c.Rules = func() []admin.RuleInfo {
		var out []admin.RuleInfo
		for _, st := range prot.RuleStatus() {
			ri := admin.RuleInfo{
				Table: st.Rule.TableString(), Column: st.Rule.Name, Type: st.Rule.Type.String(), Mode: st.Rule.Mode.String(),
				Key: st.Rule.Key, State: config.StateEncrypted, Catalog: "ok",
			}
			if st.Rule.Migrating {
				ri.State = config.StateMigrating
			}
			switch b := st.Backstop; {
			case !st.Placed:
				ri.Backstop = ""
			case b.OK() && b.Valid:
				ri.Backstop = "ok"
			case b.OK():
				ri.Backstop = "not valid"
			case b.Exists:
				ri.Backstop = "differs"
			default:
				ri.Backstop = "missing"
			}
			if len(st.Problems) > 0 {
				ri.Catalog = fmt.Sprint(st.Problems)
			}
			out = append(out, ri)
		}
		return out
	}
	c.Keys = func() []admin.KeyInfo {
		r.mu.Lock()
		cfg := r.cfg
		r.mu.Unlock()
		r.prot.mu.Lock()
		ks := r.prot.keys
		r.prot.mu.Unlock()
		if ks == nil || ks.loader == nil {
			return nil
		}
		var out []admin.KeyInfo
		for _, name := range ks.loader.Names() {
			kr, err := ks.loader.Keyring(name)
			if err != nil {
				continue
			}
			ki := admin.KeyInfo{Name: name, KEK: cfg.Keys[name].TransitKey, Versions: kr.Versions(), Refreshed: ks.loader.LastRefresh()}
			if ki.KEK == "" {
				ki.KEK = "local"
			}
			ki.Active, _ = kr.Active()
			out = append(out, ki)
		}
		return out
	}
	return c
}
