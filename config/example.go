package config

// Example returns a commented configuration that names every key the loader
// knows. Parse accepts it exactly as written, with no other file present:
// the keys that need a file (tls.*, the token, AppRole and Kubernetes fields of
// kms.vault.auth, kms.local) are shown commented out. `pgcloak config example`
// prints it; the test beside it fails when a key of Config is missing here.
func Example() string { return example }

const example = `# pgcloak configuration. Relative file paths start at this file's directory.
# Every key is shown; a key left out, or left empty, takes the default named here.

# Address that applications connect to instead of PostgreSQL (default 127.0.0.1:6432).
listen: 127.0.0.1:6432

# The PostgreSQL server, in libpq keyword/value or postgres:// URL form (required).
# User, database and password come from each client, so they are not set here.
# verify-full checks PostgreSQL's certificate and host name; sslrootcert names the CA
# that signs it: a PEM file such as /etc/pgcloak/pg-ca.crt (it must exist when pgcloak
# starts), or "system" for the operating system's trusted CAs. pgcloak logs a warning at
# start for a host reached with less than verify-full, unless it is this machine (a
# loopback address or a unix socket): prefer falls back to plaintext, and require and
# verify-ca do not check whom pgcloak talks to.
# Several hosts (host=pg1,pg2 port=5432,5432) are tried in order, or at random with
# load_balance_hosts=random; target_session_attrs (any, read-write, read-only, primary,
# standby, prefer-standby) picks the host by role, as in libpq (needs admin_dsn, whose role
# pgcloak uses to ask each host). A reload applies a new upstream to new sessions.
upstream: "host=db.example.internal port=5432 sslmode=verify-full sslrootcert=system"

# Prometheus /metrics, /healthz and /readyz (optional; off when absent).
metrics_listen: 127.0.0.1:9187

# TLS toward clients (optional; without it clients connect in plaintext). The
# files must exist when pgcloak reads this file, so the section is commented out.
# tls:
#   cert_file: server.crt       # PEM certificate, leaf first, then intermediates
#   key_file: server.key        # its unencrypted PEM private key
#   client_mode: require        # what clients must do, as PgBouncer's client_tls_sslmode:
#                               #   disable | allow | prefer (TLS if the client asks) | require (TLS only) |
#                               #   verify-ca (and a client certificate signed by client_ca_file) |
#                               #   verify-full (verify-ca, and the certificate's CN is the user name);
#                               # default: prefer, or verify-ca when client_ca_file is set
#   client_ca_file: ca.crt      # with verify-ca or verify-full: the CA that signs client certificates

limits:
  max_client_connections: 1000  # authenticated sessions served at once (at least 1); more get 53300
  max_pending_logins: 100       # connections still in TLS or authentication, which do not count above (at least 1)
  login_timeout: 10s            # accept to ReadyForQuery, authentication included (at most 1h)
  max_message_bytes: 1GB        # largest protocol message from either side (64kB to 1GB)
  message_buffer_budget: 256MB  # memory for messages held whole to be looked into (an encrypting session's
                                # Query, Parse, Bind beyond 32kB), all sessions together (1MB to 1TB); over it: 53200
  cancel_rate: 20               # CancelRequests per second from one client address; more are dropped (at least 1)

# On SIGTERM pgcloak stops accepting, closes idle sessions (57P01) and lets busy ones (in a
# statement or a transaction) finish for this long before closing them (0s to 1h). A second
# SIGTERM closes every session at once.
shutdown_timeout: 30s

# pgcloak's own connection to the protected database (required with keys or tables). It
# holds the wrapped data keys (table pgcloak.keys, made by pgcloak keys init). A full libpq
# string with user and dbname; the password may come from PGPASSWORD or ~/.pgpass.
admin_dsn: "host=db.example.internal port=5432 user=pgcloak dbname=app sslmode=verify-full sslrootcert=system"

# Where the key-encryption keys (KEKs) live: exactly one of vault or local.
kms:
  vault:
    address: http://127.0.0.1:8200   # default: VAULT_ADDR
    transit_mount: transit           # path of the Transit secrets engine
    namespace: ""                    # Vault Enterprise namespace; default: VAULT_NAMESPACE
    ca_cert: ""                      # PEM CA file for an https address; default: VAULT_CACERT
    auth:
      method: token                  # token | approle | kubernetes
      # Each method takes only its own fields (files must exist when this file is read):
      # token:      the token comes from VAULT_TOKEN, or from
      #   token_file: /run/secrets/vault-token
      # approle:
      #   role_id: 5e4b…
      #   secret_id_file: /run/secrets/secret-id
      #   mount: approle              # default: the method's name
      # kubernetes:
      #   role: pgcloak
      #   jwt_file: /var/run/secrets/kubernetes.io/serviceaccount/token   # the default
      #   mount: kubernetes
  # Development only (the master key sits beside the data), instead of vault:
  # local:
  #   key_file: dev-master.key       # pgcloak keys init creates it

# Keyrings. Each protected column names one (tables.*.*.key); the Transit key wraps its data keys.
keys:
  pii: {transit_key: pgcloak-pii}
  # Wraps the per-subject keys of subjects: below. It gets a new version every shred_window
  # and its old ones are destroyed, so it encrypts no column of a table without subjects,
  # and its Transit key serves no other keyring.
  subject-keys: {transit_key: pgcloak-subject-keys}

# How often running instances look for new key versions (100ms to 1h). After pgcloak keys
# rotate, every instance encrypts with the new version within this time plus one refresh
# (usually within a second, through LISTEN/NOTIFY).
key_refresh: 30s

# Protected columns: schema.table → column → rule. Each column is bytea in PostgreSQL;
# the application sees type. Without tables pgcloak relays without encrypting.
tables:
  public.customers:
    email:
      type: text                     # the logical type: text, varchar(n), int4, numeric(p,s), date, uuid, jsonb, …
      key: pii                       # a keyring of keys:
      mode: deterministic            # randomized (default: no comparisons) | deterministic (equality, joins, unique)
      search_group: email            # deterministic columns of one group compare equal with each other
      state: encrypted               # encrypted (default) | migrating (reads also accept plaintext; pgcloak migrate)
    birth_date: {type: date, key: pii}
  public.orders:
    address: {type: text, key: subject-keys}   # a table with subjects: the subjects' keyring

# Tables whose rows belong to a person (a subject): their protected values are encrypted under
# that subject's own key, made on first write, so that pgcloak forget erases all of them at once.
subjects:
  public.orders:
    column: customer_id              # the plain column holding the subject (not a protected one)
    key: subject-keys                # the keyring that wraps the subject keys
    # foreign_key: orders_customer_id_fkey   # when column refers to another subject table (e.g.
    #                                        # public.customers): one key per customer for both
    forgotten_reads: null            # what reads of a forgotten subject return: null (default) | error

# How long a forgotten subject stays readable from backups taken before the forget (1s to 10
# years): the subject keyrings get a new version this often and the old one is destroyed, in
# pgcloak.keys and in Vault Transit. Backups older than the window cannot be read for subjects.
shred_window: 30d

# Subject keys one instance keeps in memory (about 1 kB each); a subject not in memory costs
# one database read.
subject_cache: 20000

# How long rows are kept: forget (the subject, once none of its rows is newer; needs subjects:)
# or delete (the rows). pgcloak retention run applies them (try --dry-run).
retention:
  public.orders: {column: created_at, keep: 3y, action: forget}   # keep: h, d, w, mon or y

# How often serve applies retention: itself (1min to 30d); 0 (the default) leaves it to
# pgcloak retention run, e.g. from cron.
retention_schedule: 0s

# How often running instances re-read the catalog (100ms to 1h), so that a table, column,
# CHECK backstop or view changed around pgcloak is noticed. DDL relayed by pgcloak
# triggers a refresh at once.
catalog_refresh: 5s

# Roll-outs only: serve protected columns that lack their CHECK backstop (pgcloak protect
# adds it). A write that goes around pgcloak could then store plaintext. Default false.
allow_missing_backstop: false

# Roll-outs only: log the statements pgcloak would refuse instead of refusing them.
# It lets plaintext through to the protected columns. Default false.
shadow: false

# Who may see what of the protected columns, by the PostgreSQL role the session logged in as
# (the startup user, once PostgreSQL authenticated it; SET ROLE and SET SESSION AUTHORIZATION
# change nothing here). Without this section every role reads and writes every protected
# column in plaintext, as before access rules existed (serve warns). A rule is one word
# (plaintext, ciphertext, deny, or a mask: email, first:N, last:N, last4, fixed:TEXT, token,
# "null") or a mapping:
#   read: masked                     # plaintext | masked | ciphertext (stored bytes, bytea) | deny (SQLSTATE 42501)
#   mask: email                      # the format of read: masked
#   write: false                     # true: may store into the column (INSERT, UPDATE, COPY FROM)
#   search: false                    # compare it with values (=, IN, joins); default true with plaintext
#   application_name: [support-desk] # only for sessions started with one of these application_name
#   client_cert: [support-desk]      # only for TLS client certificates with this CN (or whole subject)
# The most specific rule that applies wins: access.tables."schema.table.column" (the role, then
# public = every role), then access.tables."schema.table" (the role, then public), then
# access.roles, then access.default. pgcloak check --role ROLE prints what a role gets.
access:
  default: deny                      # roles and columns no rule covers (default deny)
  roles:
    app: {read: plaintext, write: true}
    analytics: token                 # a keyed hash per value: equal values, equal tokens (joins, counts)
  tables:
    public.customers:
      support: "null"                # every protected column of the table shows as NULL to support …
    public.customers.email:
      support: {read: masked, mask: email, search: true}   # … but the e-mail as t***@example.jp, searchable
    public.customers.birth_date:
      support: {read: masked, mask: "fixed:1900-01-01"}

# A tamper-evident record of every statement that decrypted, masked or was denied protected
# values: one JSON line each (who, which columns, how many values, never a value), hash-chained
# and signed with an HMAC key that the KMS wraps. pgcloak audit verify --config FILE LOG... checks
# it. Optional; off when absent.
audit:
  file: audit.log                    # rotated files are audit.log.<time>.<seq>
  stdout: false                      # also write every record to standard output
  transit_key: pgcloak-audit         # Transit key wrapping the HMAC key (kms.vault; pgcloak keys init creates it)
  buffer: 16384                      # records held while the file is written (16 to 4194304)
  on_failure: block                  # block: while records cannot be written, decrypting sessions end (58030) and
                                     # new ones are refused (57P03); continue: keep decrypting, count what is lost
  rotate_size: 256MB                 # start a new file at this size (at least 64kB)

# Log level of serve: debug, info, warn or error (default: the --log-level flag's, info).
log_level: info

# Roles that may connect to the admin console: psql "host=… port=6432 dbname=pgcloak user=…"
# (SHOW CLIENTS, RELOAD, PAUSE, RESUME, KILL …). PostgreSQL checks their password: pgcloak
# relays the login to admin_auth_database upstream. Empty (the default): the console is off.
admin_users: []
admin_auth_database: postgres
`
