package cmd

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/config"
)

// configCommand groups the commands about the configuration file.
func configCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Configuration file helpers",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(&cobra.Command{
		Use:   "example",
		Short: "Print a commented configuration with every key; it loads as printed",
		Long: "Print a commented configuration that names every key with its default and meaning.\n" +
			"It loads as printed (pgcloak config example > pgcloak.yaml); keys that need a file\n" +
			"(tls, the Vault token, AppRole and Kubernetes fields) are commented out.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := io.WriteString(c.OutOrStdout(), config.Example())
			return err
		},
	})
	return c
}
