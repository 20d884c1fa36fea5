// Package cmd holds pgcloak's command-line interface.
package cmd

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgcloak/pgcloak/config"
)

// Version is set at build time with -ldflags "-X github.com/pgcloak/pgcloak/cmd.Version=…".
var Version = "dev"

// globals are the flags every command shares.
type globals struct {
	configPath string
	logLevel   string
	// level is the logger's level (serve changes it on reload); flagLevel
	// is --log-level's.
	level     zap.AtomicLevel
	flagLevel zapcore.Level
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	g := &globals{}
	root := &cobra.Command{
		Use:           "pgcloak",
		Short:         "PostgreSQL proxy for transparent column encryption",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", os.Getenv("PGCLOAK_CONFIG"), "configuration file (env PGCLOAK_CONFIG)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(serveCommand(g), demoCommand(g), keysCommand(g), checkCommand(g), protectCommand(g), migrateCommand(g), auditCommand(g), forgetCommand(g), retentionCommand(g), configCommand(), versionCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pgcloak:", err)
		var ce *config.Error
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	return 0
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) {
			fmt.Fprintln(c.OutOrStdout(), "pgcloak", Version)
		},
	}
}

// loadConfig reads the file named by --config or PGCLOAK_CONFIG.
func (g *globals) loadConfig() (*config.Config, error) {
	if g.configPath == "" {
		return nil, errors.New("no configuration: pass --config FILE or set PGCLOAK_CONFIG")
	}
	return config.Load(g.configPath)
}

// logger builds the zap logger: JSON lines by default, human-readable console
// output when stderr is a terminal.
func (g *globals) logger() (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(g.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var cfg zap.Config
	if isTerminal(os.Stderr) {
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	} else {
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "time"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	}
	g.flagLevel, g.level = level, zap.NewAtomicLevelAt(level)
	cfg.Level = g.level
	return cfg.Build()
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
