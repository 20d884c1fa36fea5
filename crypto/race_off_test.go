//go:build !race

package crypto

// raceEnabled: the race detector changes allocation counts, so TestAllocs skips.
const raceEnabled = false
