// Command pgcloak is a PostgreSQL wire-protocol proxy that encrypts the
// columns a DBA names before they reach PostgreSQL and decrypts them on the
// way back. See README.md.
package main

import (
	"os"

	"github.com/pgcloak/pgcloak/cmd"
)

func main() { os.Exit(cmd.Execute()) }
