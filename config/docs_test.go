package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// yamlBlock finds the ```yaml blocks of a Markdown file.
var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestDocsYAML loads every YAML block of README.md and docs/*.md with the
// config loader, as a reader who copies one into pgcloak.yaml would: a
// snippet in the documentation that does not load is a bug. A block that
// shows only some sections (no upstream:) is loaded with a minimal
// upstream added; files it names need not exist.
func TestDocsYAML(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"../README.md"}, files...)
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllSubmatchIndex(data, -1) {
			block := string(data[m[2]:m[3]])
			line := 1 + strings.Count(string(data[:m[2]]), "\n")
			if !strings.Contains(block, "upstream:") {
				block = "upstream: \"host=127.0.0.1\"\n" + block
			}
			if _, err := Parse(filepath.Base(f), []byte(block)); err != nil {
				// Files the snippet names (certificates, secret files)
				// exist on the reader's machine, not here.
				var left []string
				for _, l := range strings.Split(err.Error(), "\n") {
					if !strings.Contains(l, "no such file or directory") {
						left = append(left, l)
					}
				}
				if len(left) > 0 {
					t.Errorf("%s:%d: YAML block %d does not load:\n%s", f, line, i+1, strings.Join(left, "\n"))
				}
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no YAML blocks found: has the documentation moved?")
	}
	t.Logf("%d YAML blocks load", n)
}
