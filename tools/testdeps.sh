#!/usr/bin/env bash
# testdeps.sh installs what `make test` needs beyond Go, on Debian/Ubuntu:
# PostgreSQL 15 with its server headers (PostgreSQL's regression suite builds
# its C module against them), gcc, pgbouncer, the clients of the driver
# matrix (psql, psycopg2, PgJDBC with a JDK, Node.js) and the ORMs of the ORM
# matrix (Django, SQLAlchemy with Alembic, ActiveRecord, Hibernate from
# Debian; Sequelize, TypeORM and node-postgres with npm ci from the committed
# package-lock.json files). GORM comes from the Go module proxy when its
# program is built.
#
# `make test` runs it first. What is already there is not touched, so a
# second run only checks (about a second). As root, or with passwordless
# sudo, it installs what is missing with apt-get; otherwise it stops at once
# and prints the one command that installs everything.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=()
need() { pkgs+=("$@"); }

[ -x /usr/lib/postgresql/15/bin/postgres ] || need postgresql
command -v psql >/dev/null || need postgresql-client
[ -f /usr/include/postgresql/15/server/postgres.h ] || need postgresql-server-dev-15
command -v gcc >/dev/null || need gcc
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need pgbouncer
# packaging/deb_test.go: dpkg -i the package and systemd-analyze verify its unit.
command -v systemd-analyze >/dev/null || need systemd
# Driver matrix (integration/matrix_*): psycopg2 for Debian's python3,
# PgJDBC with a JDK (java runs Matrix.java from source), Node.js.
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import psycopg2' 2>/dev/null || need python3 python3-psycopg2
[ -f /usr/share/java/postgresql.jar ] || need libpostgresql-jdbc-java
command -v javac >/dev/null || need openjdk-17-jdk-headless
command -v node >/dev/null || need nodejs
command -v npm >/dev/null || need npm
# ORM matrix (integration/orm_test.go).
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import django' 2>/dev/null || need python3-django
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import sqlalchemy, alembic' 2>/dev/null || need python3-sqlalchemy python3-alembic
command -v ruby >/dev/null && ruby -ractive_record -rpg -e '' 2>/dev/null || need ruby ruby-activerecord ruby-pg
[ -f /usr/share/java/hibernate3.jar ] || need libhibernate3-java
# Hibernate's proxies; only recommended by libhibernate3-java.
[ -f /usr/share/java/javassist.jar ] || need libjavassist-java

if [ ${#pkgs[@]} -gt 0 ]; then
	cmd=(apt-get install -y -qq "${pkgs[@]}")
	if [ "$(id -u)" -eq 0 ]; then
		sudo=()
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		sudo=(sudo)
	else
		echo "testdeps: make test needs Debian packages that are not installed: ${pkgs[*]}" >&2
		echo "testdeps: install them with (then run make test again):" >&2
		echo "  sudo apt-get update && sudo apt-get install -y ${pkgs[*]}" >&2
		exit 1
	fi
	if ! command -v apt-get >/dev/null; then
		echo "testdeps: no apt-get here; install the equivalents of these Debian packages: ${pkgs[*]}" >&2
		exit 1
	fi
	echo "testdeps: installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" "${cmd[@]}" >/dev/null
fi

# Node packages, from each package-lock.json, when node_modules is missing or
# older than the lock file.
for dir in integration/testdata/clients/node integration/testdata/orm/sequelize integration/testdata/orm/typeorm; do
	if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
		echo "testdeps: npm ci in $dir"
		(cd "$dir" && npm ci --silent --no-audit --no-fund)
	fi
done
