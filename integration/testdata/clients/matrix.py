#!/usr/bin/python3
"""psycopg2 client of the pgcloak client matrix (integration/matrix_psycopg2_test.go).

    /usr/bin/python3 matrix.py DSN PLAN [cursor]

Runs the plan (see writeMatrixPlan) with psycopg2's %s parameters and prints
what it reads back as JSON: {"errors": [...], "rows": [[id, note, cell...]]},
each cell the Python type and repr of the value. With "cursor" the rows are
read through a server-side (named) cursor, a few at a time.
"""
import datetime
import decimal
import json
import sys
import uuid

import psycopg2
import psycopg2.extras

psycopg2.extras.register_uuid()


def text(field):
    return None if field == "\\N" else bytes.fromhex(field).decode("utf-8")


def param(kind, s):
    """A test value as the Python value an application passes."""
    if s is None:
        return None
    if kind in ("int2", "int4", "int8"):
        return int(s)
    if kind == "numeric":
        return decimal.Decimal(s)
    if kind == "float8":
        return float(s)
    if kind == "bool":
        return s == "true"
    if kind == "date":
        return datetime.date.fromisoformat(s)
    if kind in ("timestamp", "timestamptz"):
        return datetime.datetime.fromisoformat(s)
    if kind == "uuid":
        return uuid.UUID(s)
    if kind == "jsonb":
        return psycopg2.extras.Json(json.loads(s))
    if kind == "bytea":
        return bytes.fromhex(s[2:])
    return s  # text, varchar, bpchar


def show(v):
    if v is None:
        return None
    if isinstance(v, memoryview):
        return "bytes:" + v.hex()
    return type(v).__name__ + ":" + repr(v)


def main():
    dsn, plan_file = sys.argv[1], sys.argv[2]
    use_cursor = sys.argv[3:] == ["cursor"]
    with open(plan_file, encoding="utf-8") as f:
        plan = [line.rstrip("\n").split("\t") for line in f]
    table = plan[0][1]
    cols = [c.split(":") for c in plan[1][1:]]
    names = ", ".join(name for name, _ in cols)
    insert = "INSERT INTO %s (id, note, %s) VALUES (%s)" % (table, names, ", ".join(["%s"] * (len(cols) + 2)))
    update = "UPDATE %s SET %s WHERE id = %%s" % (table, ", ".join(name + " = %s" for name, _ in cols))

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    errors = []
    cur = conn.cursor()
    for n, f in enumerate(plan[2:], start=2):
        try:
            if f[0] == "insert":
                cur.execute(insert, [int(f[1]), text(f[2])] + [param(k, text(v)) for (_, k), v in zip(cols, f[3:])])
            elif f[0] == "update":
                cur.execute(update, [param(k, text(v)) for (_, k), v in zip(cols, f[2:])] + [int(f[1])])
            elif f[0] == "exec":
                cur.execute(text(f[1]))
        except psycopg2.Error as e:
            what = text(f[1])[:300] if f[0] == "exec" else f[0] + " id " + f[1]
            errors.append("step %d, %s: %s" % (n - 2, what, str(e).strip()))

    select = "SELECT id, note, %s FROM %s ORDER BY id" % (names, table)
    rows = []
    try:
        if use_cursor:
            conn.autocommit = False
            cur = conn.cursor(name="matrix")
            cur.itersize = 3
            cur.execute(select)
            rows = list(cur)
            conn.commit()
        else:
            cur.execute(select)
            rows = cur.fetchall()
    except psycopg2.Error as e:
        errors.append("%s: %s" % (select, str(e).strip()))
    out = {"errors": errors, "rows": [[str(r[0])] + [show(v) for v in r[1:]] for r in rows]}
    sys.stdout.write(json.dumps(out))
    conn.close()


main()
