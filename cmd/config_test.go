package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgcloak/pgcloak/config"
)

// TestConfigExample runs `pgcloak config example > pgcloak.yaml` and loads the
// file with the loader that serve uses, in a directory holding nothing else.
func TestConfigExample(t *testing.T) {
	var out bytes.Buffer
	c := configCommand()
	c.SetArgs([]string{"example"})
	c.SetOut(&out)
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	if out.String() != config.Example() {
		t.Fatalf("config example printed something else than config.Example():\n%s", out.String())
	}
	path := filepath.Join(t.TempDir(), "pgcloak.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &globals{configPath: path}
	if _, err := g.loadConfig(); err != nil {
		t.Fatalf("the printed example does not load: %v", err)
	}
}
