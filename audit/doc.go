// Package audit writes and verifies pgcloak's tamper-evident log of the
// statements that decrypted, masked or were denied protected values.
//
// # Format
//
// The log is a file of JSON lines, one record per line, never a value:
//
//	{"seq":1,"time":"2026-11-28T10:15:00.123456Z","event":"open","instance":"db1:4242","kek":"pgcloak-audit",
//	 "key_id":"3f9a0c2e5b7d1a64","wrapped_key":"dmF1bHQ6djE6…","after":"start","prev":"","mac":"…"}
//	{"seq":2,"time":"…","event":"read","session":"6566a1b3.1f2c","backend_pid":7980,"role":"support",
//	 "application_name":"desk","client":"10.0.0.7:50412","database":"app","fingerprint":"a0b1c2d3e4f50617",
//	 "command":"SELECT","rows":3,"columns":[{"column":"public.customers.email","outcome":"masked",
//	 "mask":"email","values":3,"key_versions":[1]}],"prev":"<mac of seq 1>","mac":"…"}
//	{"seq":3,"time":"…","event":"denied",…,"columns":[{"column":"public.customers.email","outcome":"denied",
//	 "access":"read","values":0}],"sqlstate":"42501","prev":"…","mac":"…"}
//	{"seq":4,"time":"…","event":"close","prev":"…","mac":"…"}
//
// Events: open (first record of every file and of every run: the HMAC key,
// wrapped by the KMS key kek, and what came before: start of a chain, a
// clean close, a rotation, or "unclean" when the last run did not close the
// log), read (a statement, or one Execute of a portal, that delivered
// protected values: per column the outcome plaintext, masked, ciphertext,
// the number of values and the key versions; incomplete when the session
// ended during the result), denied (a statement refused by an access rule:
// per column which access was denied), lost (records dropped with
// on_failure: continue, and how many), rotate (last record of a file that
// was rotated) and close (last record when pgcloak stops).
//
// The fingerprint is pg_query's fingerprint of the statement text: the same
// for every statement that differs only in its literal values and spacing.
//
// # Chain and MAC
//
// Every record carries seq (one more than the record before), prev (the mac
// of the record before; "" at the start of a chain) and mac: hex
// HMAC-SHA-256 of the line's bytes up to (not including) `,"mac":"`, under
// a key pgcloak draws at start and keeps only in memory; the open record
// carries it wrapped by the KMS (Vault Transit, or the local key file in
// development). A removed, reordered, edited or forged line breaks seq, prev
// or mac; a truncated tail lacks the close record (and a restart after a
// truncation says "after":"unclean"). Verify needs the KMS to unwrap the key:
// whoever may only read the log cannot forge it.
//
// # Writing
//
// Sessions hand records to one writer goroutine through a bounded buffer;
// they never wait for the disk. A session reserves room (Admit) before the
// first protected value of a result is sent, so a record can always follow.
// When records cannot be written (a full buffer, an I/O error), on_failure
// decides: block (the default) refuses to admit, so decryption stops until
// the log can be written again; continue admits, decrypts and counts the
// records it drops, which the next record that can be written reports as a
// lost record.
package audit
