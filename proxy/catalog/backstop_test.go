package catalog

import (
	"strings"
	"testing"
)

func TestBackstopName(t *testing.T) {
	if got := BackstopName("email"); got != "pgcloak_email_encrypted" {
		t.Fatalf("email: %s", got)
	}
	long1 := strings.Repeat("a", 60) + "_one"
	long2 := strings.Repeat("a", 60) + "_two"
	n1, n2 := BackstopName(long1), BackstopName(long2)
	if len(n1) > 63 || len(n2) > 63 || n1 == n2 || !strings.HasPrefix(n1, "pgcloak_aaa") || !strings.HasSuffix(n1, "_encrypted") {
		t.Fatalf("long names: %s (%d), %s (%d)", n1, len(n1), n2, len(n2))
	}
	// A multi-byte character is never cut in half.
	n := BackstopName(strings.Repeat("é", 40))
	if len(n) > 63 || !strings.HasSuffix(n, "_encrypted") || strings.ContainsRune(n, '\uFFFD') || !utf8Valid(n) {
		t.Fatalf("multi-byte name: %q", n)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "?") == s }
