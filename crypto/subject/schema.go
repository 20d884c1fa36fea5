package subject

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// Channel is the LISTEN/NOTIFY channel on which a forgotten subject key is
// announced; the payload is its id in hex.
const Channel = "pgcloak_subjects"

// schemaSQL creates pgcloak's subject tables and functions in the protected
// database; every statement is idempotent. pgcloak keys init runs it.
//
// subject_hash is SHA-256 over a fixed prefix, the scope and the subject's
// canonical text, so that pgcloak.forget can find a subject's key in plain
// SQL, inside the application's own transaction. It hides nothing from
// someone who can read the protected tables (the subject ids are stored in
// plain there); the values themselves carry only the random key_id.
const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS pgcloak;
CREATE TABLE IF NOT EXISTS pgcloak.subject_keys (
	key_id       bytea       PRIMARY KEY CHECK (octet_length(key_id) = 16),
	scope        text        NOT NULL,
	subject_hash bytea       NOT NULL CHECK (octet_length(subject_hash) = 32),
	keyring      text        NOT NULL,
	wrap_version integer     NOT NULL,
	wrapped      bytea       NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (scope, subject_hash)
);
CREATE INDEX IF NOT EXISTS subject_keys_wrap ON pgcloak.subject_keys (keyring, wrap_version);
COMMENT ON TABLE pgcloak.subject_keys IS 'pgcloak per-subject data keys, wrapped by a version of the keyring named in keyring; deleting a row erases the subject (pgcloak forget)';
CREATE TABLE IF NOT EXISTS pgcloak.forgotten (
	seq          bigserial   PRIMARY KEY,
	key_id       bytea       NOT NULL,
	scope        text        NOT NULL,
	keyring      text        NOT NULL,
	wrap_version integer     NOT NULL,
	reason       text        NOT NULL,
	forgotten_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS forgotten_key ON pgcloak.forgotten (key_id);
COMMENT ON TABLE pgcloak.forgotten IS 'pgcloak subject keys destroyed by pgcloak forget (no subject is named here)';
CREATE TABLE IF NOT EXISTS pgcloak.subject_tables (
	schema_name    text NOT NULL,
	table_name     text NOT NULL,
	scope          text NOT NULL,
	subject_column text NOT NULL,
	subject_type   text NOT NULL,
	PRIMARY KEY (schema_name, table_name)
);
COMMENT ON TABLE pgcloak.subject_tables IS 'tables with subjects, as pgcloak resolved them: pgcloak.forget reads the scope and the subject type here';
CREATE TABLE IF NOT EXISTS pgcloak.shreds (
	id              bigserial   PRIMARY KEY,
	keyring         text        NOT NULL,
	version         integer     NOT NULL,
	destroyed       integer[]   NOT NULL,
	rewrapped       bigint      NOT NULL,
	kek             text        NOT NULL,
	kek_min_version integer,
	started_at      timestamptz NOT NULL,
	finished_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgcloak.shreds IS 'pgcloak shred rotations: keyring got version, every subject key was rewrapped under it, destroyed versions were deleted; kek_min_version: Transit versions below it trimmed (NULL: not yet)';
CREATE OR REPLACE FUNCTION pgcloak.subject_hash(scope text, subject text) RETURNS bytea
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
	AS $f$ SELECT sha256(convert_to('pgcloak subject v1', 'UTF8') || decode('00', 'hex') || convert_to(scope, 'UTF8')
		|| decode('00', 'hex') || convert_to(subject, 'UTF8')) $f$;
CREATE OR REPLACE FUNCTION pgcloak.forget(tbl regclass, subject text, reason text DEFAULT 'forget') RETURNS boolean
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $f$
DECLARE
	t     pgcloak.subject_tables;
	canon text;
	k     record;
BEGIN
	SELECT st.* INTO t FROM pgcloak.subject_tables st
		JOIN pg_class c ON c.relname = st.table_name
		JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = st.schema_name
		WHERE c.oid = tbl;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pgcloak: table % has no subjects', tbl USING ERRCODE = '42P01',
			HINT = 'Name it under subjects: in the pgcloak config, then run pgcloak keys init (or start pgcloak serve).';
	END IF;
	IF subject IS NULL THEN
		RAISE EXCEPTION 'pgcloak: the subject to forget is NULL' USING ERRCODE = '22004';
	END IF;
	EXECUTE format('SELECT (%L::%s)::text', subject, t.subject_type) INTO canon;
	DELETE FROM pgcloak.subject_keys sk WHERE sk.scope = t.scope AND sk.subject_hash = pgcloak.subject_hash(t.scope, canon)
		RETURNING sk.key_id, sk.keyring, sk.wrap_version INTO k;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	INSERT INTO pgcloak.forgotten (key_id, scope, keyring, wrap_version, reason)
		VALUES (k.key_id, t.scope, k.keyring, k.wrap_version, coalesce(reason, 'forget'));
	PERFORM pg_notify('pgcloak_subjects', encode(k.key_id, 'hex'));
	RETURN true;
END
$f$;
REVOKE ALL ON FUNCTION pgcloak.forget(regclass, text, text) FROM PUBLIC;
COMMENT ON FUNCTION pgcloak.forget(regclass, text, text) IS 'pgcloak: destroy the key of one subject, erasing its protected values (GRANT EXECUTE to the roles that may)';`

// querier is what Init needs of a connection or pool.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Init creates the subject tables and functions unless they exist. It runs
// under the keys writers' advisory lock when given a transaction that holds
// it (pgcloak keys init); alone it is still idempotent.
func Init(ctx context.Context, q querier) error {
	if _, err := q.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("create the subject tables: %w", err)
	}
	return nil
}

// ErrNotInitialized means the subject tables do not exist.
var ErrNotInitialized = errors.New("table pgcloak.subject_keys does not exist; run pgcloak keys init")

// notInitialized maps "no such table/schema" to ErrNotInitialized.
func notInitialized(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000" || pe.Code == "42883") {
		return fmt.Errorf("%w (%s)", ErrNotInitialized, pe.Message)
	}
	return err
}
