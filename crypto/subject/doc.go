// Package subject keeps pgcloak's per-subject keys: the data keys under
// which the protected values of one person's rows (one "subject") are
// encrypted, so that destroying one key (pgcloak forget) erases every value
// of that person, in the tables, the WAL, the replicas and, after the shred
// window, the backups.
//
// # Key hierarchy
//
//	Vault Transit key (KEK of the subject keyring; own Transit key, trimmed every shred_window)
//	  └─ wraps ─ pgcloak.keys: versions of the subject keyring (e.g. "subject-keys" v1, v2 …)
//	        └─ wraps (AES-256-GCM, bound to the key id) ─ pgcloak.subject_keys: one row per subject
//	              └─ encrypts (mode Subject, FORMAT.md) ─ the values of that subject's rows
//
// A table with subjects (config subjects:) names the plain column that holds
// a row's subject, and possibly a foreign key through which it is another
// table's subject (orders.customer_id → customers.id: one key per customer
// for both tables). The key is found by (scope, SHA-256 of the subject's
// canonical text) on writes, and by the random 16-byte id that every value
// carries on reads; the id says nothing about the subject.
//
// # Life of a subject key
//
//	first write ─▶ Table.KeyFor: cache, else SELECT, else INSERT (wrapped by the keyring's active version)
//	read        ─▶ Keys.KeyByID: cache, else one SELECT (the key, or "forgotten")
//	forget      ─▶ SELECT pgcloak.forget('public.customers', '42'): the row is deleted, a
//	               tombstone (key id only) goes to pgcloak.forgotten, NOTIFY pgcloak_subjects
//	every instance drops it at the notification, at the latest within key_refresh
//	shred       ─▶ pgcloak keys shred (or serve, every shred_window): new keyring version,
//	               every live subject key rewrapped, the old versions deleted from
//	               pgcloak.keys and trimmed in Vault Transit: no backup older than
//	               that can unwrap any subject key
//
// No Vault call is made on a session's path: the subject keyring's versions
// are loaded like any keyring's (crypto/keystore), and a subject key is
// unwrapped locally.
package subject
