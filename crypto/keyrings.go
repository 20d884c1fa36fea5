package crypto

import (
	"fmt"
	"slices"
	"strings"
)

// Keyrings gives the proxy the keyring a protected column names (the config's
// tables.*.*.key). crypto/keystore's Loader implements it for serve: it loads
// the wrapped data keys from the pgcloak.keys table and keeps them current.
//
// Keyring must be safe for concurrent use and cheap: sessions may call it per
// statement. The returned *Keyring stays valid, and picks up new versions in
// place, until the provider is closed.
type Keyrings interface {
	Keyring(name string) (*Keyring, error)
}

// StaticKeyrings is a fixed set of keyrings, for tests and tools that load
// their keys themselves.
type StaticKeyrings map[string]*Keyring

// Keyring returns the keyring called name, or an error naming the known ones.
func (s StaticKeyrings) Keyring(name string) (*Keyring, error) {
	if k, ok := s[name]; ok {
		return k, nil
	}
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	return nil, fmt.Errorf("pgcloak crypto: no keyring %q (loaded: %s)", name, strings.Join(names, ", "))
}
