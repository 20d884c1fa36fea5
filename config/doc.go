// Package config loads and validates pgcloak's YAML configuration file.
//
// The YAML shape is a contract: later releases add keys, none are renamed.
// [Load] and [Parse] report every mistake in one go, one per line, sorted by
// line, each as FILE:LINE: KEY: problem; how to fix it:
//
//	pgcloak.yaml:3: upstream: sets user, but user, database and password come from each client; remove user=… (or user@ in a URL)
//	pgcloak.yaml:9: limits.max_client_conections: unknown key; did you mean "max_client_connections"? known keys: max_client_connections, max_pending_logins, login_timeout, max_message_bytes, message_buffer_budget, cancel_rate
//	pgcloak.yaml:10: limits.login_timeout: must be more than 0 and at most 1h, got 2h0m0s; the default is 10s
//
// The error is an [*Error]; its Problems field holds the same lines as data.
//
// # Reference
//
// A key that is left out, or written with an empty value, takes its default.
// Unknown keys are errors, so a typo never silently falls back to a default.
//
//   - listen (default 127.0.0.1:6432): host:port that applications connect to
//     instead of PostgreSQL. ":6432" listens on every interface.
//   - upstream (required): the PostgreSQL server, as a libpq keyword/value
//     string ("host=10.0.0.5 port=5432 sslmode=verify-full sslrootcert=/etc/pgcloak/pg-ca.crt")
//     or a URL ("postgres://10.0.0.5:5432/?sslmode=require"). Any libpq
//     connection setting is accepted except user, password and dbname: those
//     come from each client's own startup message and authentication, which
//     pgcloak passes through. sslmode is one of disable, allow, prefer,
//     require, verify-ca, verify-full. File paths inside upstream (sslrootcert,
//     sslcert, sslkey) are read as libpq reads them, from the working
//     directory; sslrootcert=system trusts the operating system's CAs. serve
//     logs a warning at start for every host other than this machine (a
//     loopback address or a unix socket) that upstream or admin_dsn reaches
//     with less than verify-full.
//   - metrics_listen (default: off): host:port serving Prometheus /metrics and
//     the /healthz and /readyz probes.
//   - tls (default: off, clients connect in plaintext): TLS on the client leg.
//     When present, pgcloak answers SSLRequest with 'S'.
//   - tls.cert_file (required with tls): PEM server certificate, leaf first,
//     then any intermediates.
//   - tls.key_file (required with tls): the certificate's unencrypted PEM
//     private key.
//   - tls.client_ca_file (default: none): PEM CA certificate(s) that sign
//     client certificates, for client_mode verify-ca and verify-full.
//   - tls.client_mode (default prefer, or verify-ca when client_ca_file is
//     set): what clients must do, as PgBouncer's client_tls_sslmode. disable:
//     SSLRequest is answered 'N'; allow, prefer: TLS when the client asks;
//     require: plaintext clients are refused (28000); verify-ca: TLS with a
//     client certificate signed by client_ca_file; verify-full: verify-ca,
//     and the certificate's common name is the user logging in.
//   - limits.max_client_connections (default 1000, at least 1): authenticated
//     sessions served at once; more get 53300.
//   - limits.max_pending_logins (default 100, at least 1): connections not yet
//     authenticated (TLS handshake, startup, authentication), which do not
//     count toward max_client_connections; over it a connection is answered
//     53300 at once.
//   - limits.login_timeout (default 10s, more than 0 and at most 1h): time from
//     accepting a connection to its first ReadyForQuery, TLS and
//     authentication included.
//   - limits.max_message_bytes (default 1GB, from 64kB to 1GB): largest
//     protocol message accepted from either side. PostgreSQL itself limits a
//     single field to 1GB.
//   - limits.message_buffer_budget (default 256MB, from 1MB to 1TB): memory,
//     all sessions together, for the messages pgcloak reads whole to look
//     into them (an encrypting session's Query, Parse and Bind, rows and COPY
//     data of protected tables, beyond 32 KiB). A client message over it is
//     dropped and answered 53200 (54000 when larger than the budget itself);
//     the session goes on.
//   - limits.cancel_rate (default 20, at least 1): CancelRequests per second
//     from one client address (an IPv6 /64), in bursts of as many; more are
//     dropped unanswered.
//   - shutdown_timeout (default 30s, from 0s to 1h): on SIGTERM, how long busy
//     sessions (a statement running or a transaction open) may finish; idle
//     ones are closed at once with 57P01, the rest with 57P01 then.
//   - admin_dsn (required with keys or tables): pgcloak's own connection to
//     the protected database, a full libpq string or URL with user and dbname
//     ("host=10.0.0.5 port=5432 user=pgcloak dbname=app"); the password may
//     come from PGPASSWORD or ~/.pgpass. It holds the pgcloak.keys table.
//   - kms (required with keys or tables): exactly one of kms.vault or
//     kms.local.
//   - kms.vault.address (default: VAULT_ADDR, which must then be set): Vault's
//     http:// or https:// URL.
//   - kms.vault.transit_mount (default transit): the Transit engine's path.
//   - kms.vault.namespace (default: VAULT_NAMESPACE): Vault Enterprise
//     namespace.
//   - kms.vault.ca_cert (default: VAULT_CACERT): PEM CA file that verifies
//     Vault's certificate.
//   - kms.vault.auth.method (default token): token (VAULT_TOKEN, or
//     token_file, re-read at each login), approle (role_id, secret_id_file,
//     mount default approle) or kubernetes (role, jwt_file default
//     /var/run/secrets/kubernetes.io/serviceaccount/token, mount default
//     kubernetes). A field of another method is an error.
//   - kms.local.key_file: development only: a 256-bit master key file (64
//     hex digits) beside the data; `pgcloak keys init` creates it.
//   - keys (required with tables): keyring name → {transit_key: NAME}, the
//     Vault Transit key that wraps the keyring's data keys (required with
//     kms.vault). Names are 1 to 63 letters, digits, '_', '-' or '.'.
//   - key_refresh (default 30s, from 100ms to 1h): how often running
//     instances look for new key versions. After `pgcloak keys rotate`, every
//     instance encrypts with the new version within key_refresh plus one
//     refresh (usually within a second, through LISTEN/NOTIFY).
//   - tables.SCHEMA.TABLE.COLUMN.key must name an entry of keys.
//   - catalog_refresh (default 5s, from 100ms to 1h): how often running
//     instances re-read the catalog, so that a table, column, backstop or
//     view changed around pgcloak is noticed. DDL relayed by pgcloak
//     triggers a refresh at once.
//   - allow_missing_backstop (default false): serve sessions although a
//     protected column (state: encrypted) lacks its CHECK backstop. For
//     roll-outs only; pgcloak logs it loudly. Without it, such a column
//     keeps serve not ready until `pgcloak protect --apply` adds it.
//   - access (default: none): who may see what of the protected columns, by
//     the PostgreSQL role the session logged in as. Without it every role
//     reads, writes and searches every protected column in plaintext (as
//     before access rules existed; serve warns). With it:
//   - access.default (default deny): the rule of roles and columns no other
//     rule covers.
//   - access.roles.ROLE: the rule of ROLE for every protected column.
//   - access.tables."SCHEMA.TABLE".ROLE and access.tables."SCHEMA.TABLE.COLUMN".ROLE:
//     the rule of ROLE for one table's protected columns, or for one column;
//     ROLE public means every role not named there. The most specific rule
//     that applies wins: column (the role, then public), table (the role,
//     then public), access.roles, access.default.
//   - A rule is one word, plaintext, ciphertext, deny or a mask format
//     (email, first:N, last:N, last4, fixed:TEXT, token, "null"; see
//     proxy/mask for what each shows and the types it applies to), or a
//     mapping: read (plaintext, masked, ciphertext, deny), mask (with read:
//     masked), write (default false), search (default true with plaintext,
//     else false), application_name (a list: the rule applies only to
//     sessions started with one of them) and client_cert (a list of CNs or
//     subjects of TLS client certificates; needs tls.client_ca_file). A mask
//     must apply to the type of every column its rule covers.
//   - audit (default: off): the tamper-evident log of decryptions and denials
//     (see the audit package for the format).
//   - audit.file (required with audit): the log; rotated files are
//     FILE.<time>.<seq>.
//   - audit.stdout (default false): also write every record to stdout.
//   - audit.transit_key (required with kms.vault): the Transit key that wraps
//     the log's HMAC key; pgcloak keys init creates it.
//   - audit.buffer (default 16384, from 16 to 4194304): records held while
//     the file is written.
//   - audit.on_failure (default block): block stops decrypting while records
//     cannot be written (sessions that would decrypt end with 58030, new ones
//     get 57P03); continue keeps decrypting and counts the records lost.
//   - audit.rotate_size (default 256MB, at least 64kB): start a new file at
//     this size.
//   - subjects.SCHEMA.TABLE (subjects.go): the table's protected values are
//     encrypted under per-subject keys. column (required): the plain column
//     holding a row's subject; key (required): the keyring that wraps the
//     subject keys, which no column of a table without subjects may use and
//     whose Transit key no other keyring may share (its old versions are
//     destroyed every shred_window); foreign_key: the constraint through
//     which column refers to another subjects table, whose subjects these
//     are; forgotten_reads: null (default) or error. The table's columns
//     must name the same key, be randomized and state: encrypted.
//   - shred_window (default 30d, from 1s to 10 years): a forgotten subject
//     can be read from no backup after this long.
//   - subject_cache (default 20000): subject keys one instance keeps.
//   - retention.SCHEMA.TABLE: {column, keep, action}: keep is a number and
//     a unit (h, d, w, mon, y); action forget (needs subjects.TABLE) or
//     delete. retention_schedule (default 0: off, else 1min to 30d): how
//     often serve applies them.
//   - log_level (default: the --log-level flag's, info): debug, info, warn
//     or error.
//   - admin_users (default: none, the console is off): roles that may
//     connect to the admin console, the virtual database "pgcloak".
//     PostgreSQL checks their credentials: pgcloak relays the login to
//     admin_auth_database.
//   - admin_auth_database (default postgres): the upstream database that
//     console logins are checked against.
//   - upstream's target_session_attrs (any, read-write, read-only, primary,
//     standby, prefer-standby; default any) and load_balance_hosts (disable,
//     random; default disable) pick the host of each new session as libpq
//     does. A value other than any needs admin_dsn: pgcloak asks each host
//     its role with admin_dsn's user, password and TLS settings.
//
// Serve re-reads the file on SIGHUP and on the console's RELOAD. A file
// with any mistake is refused as a whole and the running configuration
// stays. listen, metrics_listen and admin_dsn take effect only at a
// restart; turning protection on or off (tables: from none to some, or
// back) needs a restart too.
//
// Relative tls, kms and audit file paths start at the config file's
// directory; after Load they are stored resolved.
//
// Sizes are a number of bytes or a number with a unit: kB, MB, GB, TB (as in
// postgresql.conf, 1kB = 1024 bytes; units are case-insensitive), or KiB,
// MiB, GiB, TiB, which mean the same. "1GB", "1 GB", "1GiB" and "1073741824"
// are equal.
//
// Durations use Go syntax ("10s", "1m30s", "500ms") or PostgreSQL's ("10 s",
// "2min", "1d"; units us, ms, s, min, h, d). A bare number is refused because
// its unit would be a guess.
//
// [Example] returns a commented file with every key.
//
// # Adding a section
//
// The decoder (decode.go) walks the YAML tree against the Config struct by its
// yaml tags, so unknown keys and wrong types are found for any new field:
// structs, pointers to structs (optional sections), maps with string keys
// (free-form names such as schema.table), lists and scalars. A new section is
// a new field plus a check function in validate.go that reports with the
// field's dotted key; the line is found for it.
package config
