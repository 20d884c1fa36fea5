package config

// Example returns a commented configuration showing every key. Parse accepts it
// as written once server.crt, server.key and ca.crt exist beside it.
func Example() string { return example }

const example = `# pgcloak configuration. Relative file paths start at this file's directory.

# Address that applications connect to instead of PostgreSQL (default 127.0.0.1:6432).
listen: 127.0.0.1:6432

# The PostgreSQL server, in libpq keyword/value or postgres:// URL form (required).
# User, database and password come from each client, so they are not set here.
upstream: "host=127.0.0.1 port=5432 sslmode=prefer"

# Prometheus /metrics, /healthz and /readyz (optional; off when absent).
metrics_listen: 127.0.0.1:9187

# TLS toward clients (optional; without it clients connect in plaintext).
tls:
  cert_file: server.crt
  key_file: server.key
  client_ca_file: ca.crt      # optional: require client certificates signed by this CA

limits:
  max_client_connections: 1000  # client connections served at once
  login_timeout: 10s            # accept to ReadyForQuery, authentication included
  max_message_bytes: 1GB        # largest protocol message from either side (64kB to 1GB)

# pgcloak's own connection to the protected database (required with keys or tables). It
# holds the wrapped data keys (table pgcloak.keys, made by pgcloak keys init). A full libpq
# string with user and dbname; the password may come from PGPASSWORD or ~/.pgpass.
admin_dsn: "host=127.0.0.1 port=5432 user=pgcloak dbname=app"

# Where the key-encryption keys (KEKs) live: exactly one of vault or local.
kms:
  vault:
    address: http://127.0.0.1:8200   # default: VAULT_ADDR
    transit_mount: transit           # path of the Transit secrets engine
    namespace: ""                    # Vault Enterprise namespace; default: VAULT_NAMESPACE
    ca_cert: ""                      # PEM CA file for an https address; default: VAULT_CACERT
    auth:
      method: token                  # token | approle | kubernetes
      # token:      the token comes from VAULT_TOKEN, or from token_file: /run/secrets/vault-token
      # approle:    role_id: …, secret_id_file: /run/secrets/secret-id, mount: approle
      # kubernetes: role: pgcloak, jwt_file: /var/run/secrets/kubernetes.io/serviceaccount/token, mount: kubernetes
  # local: {key_file: dev-master.key}  # development only: the master key sits beside the data

# Keyrings. Each protected column names one (tables.*.*.key); the Transit key wraps its data keys.
keys:
  pii: {transit_key: pgcloak-pii}

# How often running instances look for new key versions (100ms to 1h). After pgcloak keys
# rotate, every instance encrypts with the new version within this time plus one refresh
# (usually within a second, through LISTEN/NOTIFY).
key_refresh: 30s
`
