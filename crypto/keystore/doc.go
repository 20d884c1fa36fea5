// Package keystore keeps pgcloak's wrapped data keys in the protected
// database, so that any number of pgcloak instances share them, and loads
// them into crypto.Keyrings for serve.
//
// # The table
//
//	CREATE TABLE pgcloak.keys (
//	    keyring    text        NOT NULL,  -- the config's keys: entry, e.g. "pii"
//	    version    integer     NOT NULL CHECK (version >= 1),
//	    wrapped    bytea       NOT NULL,  -- the DEK wrapped by the KEK ("vault:v1:…" for Transit)
//	    kek        text        NOT NULL,  -- the KEK: a Transit key name, or "local"
//	    created_at timestamptz NOT NULL DEFAULT now(),
//	    PRIMARY KEY (keyring, version));
//
// One row is one version of one keyring: a 256-bit data key (DEK) from
// crypto/rand, wrapped by the KMS. No row ever holds a key in the clear. The
// writers (Init, InitKeyring, Rotate, Rewrap) take a transaction-level
// advisory lock, so concurrent `pgcloak keys` commands serialise. Rotate
// sends NOTIFY pgcloak_keys with the keyring's name when it commits.
//
// # Loading and the refresh bound
//
//	serve start ─▶ Load: SELECT every row of the configured keyrings
//	                     KMS.Unwrap each ─▶ Keyring.Add ─▶ DEK zeroed
//	             (error naming the KMS address → serve is not ready)
//	every key_refresh, on NOTIFY pgcloak_keys, or on Reload:
//	               SELECT again; unwrap only versions not loaded yet
//
// A version created by `pgcloak keys rotate` is the encrypting version of
// every running instance within key_refresh (default 30s) plus the time of
// one refresh (one query, one KMS call per new version), and usually within
// a second thanks to LISTEN/NOTIFY. Until an instance has loaded it, that
// instance keeps encrypting under the previous version, which stays valid;
// a value it reads under the new version makes the proxy call Reload (at most
// once per ReloadInterval) and retry.
//
// # Failure
//
// Unwrapped keys live only in memory. When the KMS becomes unreachable,
// every loaded version keeps working: Encrypt and Decrypt never call the
// KMS. A new version that cannot be unwrapped is not added (a keyring gains
// all its new versions or none), is logged at warn, and is retried with
// backoff from 1s to key_refresh. Close zeroes every data key.
package keystore
