// Package catalog is the one place that resolves a column rule of the
// configuration to a column of the database: Rules (rules.go) turns the
// config into Rule values (names, logical type, mode, keyring, and the
// identity ciphertext is bound to, shared by a search_group); a Loader
// (load.go) reads the live catalog into a Snapshot (snapshot.go): which
// relation OID and attribute each rule is placed on, the state of each
// backstop (backstop.go), views over protected tables and their attributed
// outputs, inheritance children and partitions, and the Problems where the
// rules and the database disagree. serve (proxy/engine), migrate, check,
// protect and the tests all use it.
package catalog
