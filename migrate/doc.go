// Package migrate moves the values of protected columns between plaintext
// and pgcloak ciphertext in place, online: it is what `pgcloak migrate
// plan|encrypt|rotate|decrypt` and `pgcloak check` run. docs/lifecycle.md
// is the DBA's procedure; this is how it works.
//
// # Where it runs
//
// Through admin_dsn, straight to PostgreSQL, never through pgcloak. The
// applications keep working through pgcloak meanwhile, with the columns in
// state: migrating: pgcloak then reads a value without the pgcloak header
// as plaintext (the UTF-8 bytes of its canonical text form) and always
// encrypts what it writes.
//
// # Plan
//
// [Plan] turns a text-typed (or date, numeric, …) column into bytea in
// place with ALTER TABLE … TYPE bytea USING convert_to(col::text, 'UTF8'),
// under session settings that make ::text the canonical form of proxy/values
// (DateStyle ISO, TimeZone UTC, extra_float_digits 1; boolean and char(n)
// need their own expressions). The table is rewritten under an ACCESS
// EXCLUSIVE lock: the one step of the procedure that is not online.
//
// # Batches
//
// [Run] goes through the table in primary key order, one transaction per
// batch:
//
//	migrate                          PostgreSQL                        pgcloak (applications)
//	BEGIN
//	SELECT pk::text, cols … WHERE pk > $last
//	  ORDER BY pk LIMIT n FOR UPDATE ──▶ rows locked ◀──────────────── UPDATE of a locked row waits
//	transform each value (Go)
//	UPDATE … SET col = CASE WHEN col IS NOT DISTINCT FROM $old
//	  THEN $new ELSE col END          (one statement: unnest of arrays)
//	UPDATE pgcloak.migrations SET last_key = …
//	COMMIT ───────────────────────────▶ locks released ──────────────▶ the waiting UPDATE applies on
//	                                                                    top of the new value
//
// The transform is per operation: encrypt canonicalizes the plaintext
// (values.Type.Canonical, so '007' and '7' become the same plaintext) and
// encrypts it with the keyring's active key, and leaves a value that has the
// pgcloak header alone once it has decrypted it (a plaintext that merely
// looks like ciphertext stops the run instead of being skipped); rotate
// re-encrypts values under an older key version or another mode; decrypt
// writes the canonical plaintext back. NULL stays NULL. A value that is not
// valid for the logical type, or ciphertext that does not decrypt, stops the
// run before its batch writes anything, with a *ValueError naming the row.
//
// No lost update: the rows of a batch are locked from the read to the
// commit, and each value is replaced only if it still holds what was read
// (compare-and-set), so a concurrent write through pgcloak either comes
// before the read (and is ciphertext, left alone) or after the commit (and
// replaces the new value, as it would have replaced the old one). Result.Lost
// counts the compare-and-set misses; with the row locks there are none.
// Batches that meet a deadlock, a serialization failure or a lock timeout
// are retried.
//
// # Resuming
//
// pgcloak.migrations has one row per (table, columns, operation): the
// primary key of the last committed batch (as text, under fixed session
// settings) and counters, updated in the batch's own transaction. A run
// that was interrupted or killed resumes after last_key; a finished one is
// followed by a fresh pass. Because the transforms skip values already in
// the wanted form, a fresh pass is also safe: it only costs the reading.
// One migrate command works on a table at a time ([Lock], a session-level
// advisory lock that ends with the session, also after kill -9).
//
// # Backstop
//
// After encrypt, [AddBackstops] adds CHECK (crypto.CheckExpr(col)) as
// pgcloak_<col>_encrypted: NOT VALID first (an instant under ACCESS
// EXCLUSIVE, with a short lock_timeout, retried), then VALIDATE CONSTRAINT
// (a full read under a lock that lets reads and writes go on). From then on a
// write around pgcloak cannot store plaintext. decrypt drops it first;
// [Restore] ends a decryption by decrypting what was written through
// pgcloak meanwhile and restoring the logical types, in one transaction
// under ACCESS EXCLUSIVE.
package migrate
