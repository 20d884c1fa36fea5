package subject

import (
	"testing"

	"github.com/pgcloak/pgcloak/crypto"
)

func testKey(t *testing.T) *crypto.SubjectKey {
	t.Helper()
	k, err := crypto.NewSubjectKey(crypto.NewSubjectKeyID(), crypto.NewDEK())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCache(t *testing.T) {
	c := newCache(2)
	a, b, d := testKey(t), testKey(t), testKey(t)
	ra, rb, rd := subjectRef{"s", HashOf("s", "1")}, subjectRef{"s", HashOf("s", "2")}, subjectRef{"s", HashOf("s", "3")}
	c.put(a.ID(), a, ra, c.currentEpoch())
	c.put(b.ID(), b, rb, c.currentEpoch())
	if c.bySubjectRef(ra) != a { // a is now the most recent
		t.Fatal("a by subject")
	}
	c.put(d.ID(), d, rd, c.currentEpoch()) // evicts b, the least recent
	if _, _, ok := c.byKeyID(b.ID()); ok || c.bySubjectRef(rb) != nil || c.len() != 2 {
		t.Fatalf("b not evicted (len %d)", c.len())
	}
	// A forget leaves a tombstone, found by id only.
	c.forget(a.ID())
	if key, forgotten, ok := c.byKeyID(a.ID()); !ok || !forgotten || key != nil {
		t.Fatal("no tombstone")
	}
	if c.bySubjectRef(ra) != nil {
		t.Fatal("forgotten key still found by subject")
	}
	// A key read before the forget arrived is not cached after it.
	epoch := c.currentEpoch()
	c.forget(crypto.NewSubjectKeyID())
	if c.put(b.ID(), b, rb, epoch) {
		t.Fatal("stale read cached")
	}
	// A new key for a forgotten subject replaces nothing but itself.
	e := testKey(t)
	if !c.put(e.ID(), e, ra, c.currentEpoch()) || c.bySubjectRef(ra) != e {
		t.Fatal("new key of a forgotten subject")
	}
}

func TestHashAndScope(t *testing.T) {
	// The SQL function pgcloak.subject_hash computes the same (checked
	// against PostgreSQL by the integration tests).
	if HashOf("public.customers", "42") == HashOf("public.customers", "042") || HashOf("a.b", "1") == HashOf("a.b1", "") {
		t.Fatal("hash collision by construction")
	}
	for _, tc := range [][3]string{{"public", "customers", "public.customers"}, {"App", "Order Lines", `"App"."Order Lines"`}, {"a.b", "c", `"a.b".c`}} {
		if got := ScopeName(tc[0], tc[1]); got != tc[2] {
			t.Errorf("ScopeName(%q, %q) = %s", tc[0], tc[1], got)
		}
	}
}
