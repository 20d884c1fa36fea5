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
`
