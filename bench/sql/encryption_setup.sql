-- Tables of the encryption benchmark: each protected table has a plaintext
-- twin with the same rows. Plaintext twins are filled here; the protected
-- tables are filled through pgcloak by the pgcloak-enc target. Run the
-- scripts with -M extended or prepared: pgbench then sends :vars as
-- parameters, which both the plaintext and the protected tables accept.
CREATE TABLE t_plain (id int PRIMARY KEY, full_name text, email text, phone text);
CREATE TABLE t_enc   (id int PRIMARY KEY, full_name bytea, email bytea, phone bytea);
CREATE TABLE big_plain (id int PRIMARY KEY, full_name text, email text, phone text);
CREATE TABLE big_enc   (id int PRIMARY KEY, full_name bytea, email bytea, phone bytea);
CREATE TABLE ins_plain (id bigserial PRIMARY KEY, full_name text, email text, phone text);
CREATE TABLE ins_enc   (id bigserial PRIMARY KEY, full_name bytea, email bytea, phone bytea);
CREATE TABLE det_plain (id int PRIMARY KEY, phone text UNIQUE);
CREATE TABLE det_enc   (id int PRIMARY KEY, phone bytea UNIQUE);
INSERT INTO t_plain SELECT i, 'Customer Name ' || i, 'customer' || i || '@example.com', '+81-3-5555-' || lpad(i::text, 4, '0') FROM generate_series(1, 10000) i;
INSERT INTO big_plain SELECT i, 'Customer Name ' || i, 'customer' || i || '@example.com', '+81-3-5555-' || lpad(i::text, 4, '0') FROM generate_series(1, 100000) i;
INSERT INTO det_plain SELECT i, i::text FROM generate_series(1, 10000) i;
CREATE TABLE copy_plain (id int, full_name text, email text, phone text);
CREATE TABLE copy_enc   (id int, full_name bytea, email bytea, phone bytea);
