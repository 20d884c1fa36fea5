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
`
