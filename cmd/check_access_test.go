package cmd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/config"
)

// TestCheckAccess: pgcloak check --access prints what every role of the
// example config may do with each column, --role one role's, as serve
// decides it; neither needs the database.
func TestCheckAccess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pgcloak.yaml")
	if err := os.WriteFile(path, []byte(config.Example()), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := RunCheck([]string{"--config", path, "--access"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"app               public.customers.email       plaintext                text  yes    yes     access.roles.app",
		"support           public.customers.email       masked email             text  no     yes     access.tables.public.customers.email.support",
		"support           public.customers.birth_date  masked fixed:1900-01-01  date  no     no      access.tables.public.customers.birth_date.support",
		"analytics         public.customers.birth_date  masked token             text  no     no      access.roles.analytics",
		"(any other role)  public.customers.email       deny                     -     no     no      access.default",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("check --access lacks\n%s\nin\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := RunCheck([]string{"--config", path, "--role", "dba", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got struct{ Access []AccessRow }
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Access) != 3 || got.Access[0].Role != "dba" || got.Access[0].Read != "deny" || got.Access[0].Rule != "access.default" {
		t.Errorf("check --role dba --json: %+v", got.Access)
	}
}
