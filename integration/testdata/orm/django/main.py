"""Django program of the pgcloak ORM matrix (integration/orm_test.go).

Runs the matrix scenario with Django's ORM against ORM_DB_* and prints one
JSON line per step. ORM_PHASE is main (every CRUD step, ending with
`manage.py migrate` adding a protected column) or migrated (the new column
written and read)."""

import datetime
import decimal
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django
from django.conf import settings

settings.configure(
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["ORM_DB_NAME"],
            "USER": os.environ["ORM_DB_USER"],
            "HOST": os.environ["ORM_DB_HOST"],
            "PORT": os.environ["ORM_DB_PORT"],
            "OPTIONS": {"sslmode": "disable"},
        }
    },
    INSTALLED_APPS=["ormapp"],
    USE_TZ=False,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    # ORM_SQL_LOG=1 (PGCLOAK_ORM_SQL=1 in the test): every statement on stderr.
    DEBUG=os.environ.get("ORM_SQL_LOG") == "1",
    LOGGING={"version": 1, "handlers": {"err": {"class": "logging.StreamHandler"}},
             "loggers": {"django.db.backends": {"handlers": ["err"], "level": "DEBUG"}}}
    if os.environ.get("ORM_SQL_LOG") == "1" else {"version": 1},
)
django.setup()

from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from ormapp.models import Customer, Order

D = decimal.Decimal
ALICE = dict(email="alice@example.com", full_name="Alice Liddell", phone="+44 20 7946 0001",
             birth_date=datetime.date(1990, 4, 1), credit_limit=D("1200.50"), tier="gold")
BOB = dict(email="bob@example.com", full_name="Bob Müller", phone="+49 30 1234567",
           birth_date=datetime.date(1985, 12, 24), credit_limit=D("300.00"), tier="basic")
CAROL = dict(email="carol@example.com", full_name="Carol O'Brien", phone=None,
             birth_date=datetime.date(2001, 2, 28), credit_limit=None, tier="gold")
DAVE = dict(email="dave@example.com", full_name="Dave 山田", phone="+81 3 1234 5678",
            birth_date=None, credit_limit=D("0.00"), tier="basic")
ERIN = dict(full_name="Erin Example", phone=None, birth_date=datetime.date(1999, 9, 9),
            credit_limit=D("50.00"), tier="basic")
FRANK = dict(email="frank@example.com", full_name="Frank Rolledback", phone="+1 555 0100",
             birth_date=datetime.date(1970, 1, 1), credit_limit=D("10.00"))
GINA = dict(email="gina@example.com", full_name="Gina Saved", phone="+1 555 0101",
            birth_date=datetime.date(1980, 5, 5), credit_limit=D("20.00"))
HANK = dict(email="hank@example.com", full_name="Hank Savepoint")


class Skip(Exception):
    pass


class Rollback(Exception):
    pass


def cell(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return str(v)


def emit(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def step(name, fn):
    try:
        rows = fn()
        emit({"step": name, "ok": True, "rows": [[cell(v) for v in r] for r in rows]})
    except Skip as s:
        emit({"step": name, "skip": str(s)})
    except Exception as e:  # the step's outcome, compared by the test
        pg = e.__cause__ if getattr(e.__cause__, "pgcode", None) else e
        if getattr(pg, "pgcode", None):
            emit({"step": name, "ok": False, "sqlstate": pg.pgcode,
                  "error": pg.diag.message_primary, "detail": pg.diag.message_detail or ""})
        else:
            emit({"step": name, "ok": False, "error": type(e).__name__ + ": " + str(e)})


def row(c):
    return [c.id, c.email, c.full_name, c.phone, c.birth_date, c.credit_limit, c.tier]


def rows(qs):
    return [row(c) for c in qs]


def by_email(e):
    return Customer.objects.get(email=e)


def main_phase():
    step("create", lambda: [row(Customer.objects.get(pk=Customer.objects.create(**ALICE).pk))])
    step("bulk_create", lambda: [[c.id, c.email] for c in
                                 Customer.objects.bulk_create([Customer(**BOB), Customer(**CAROL), Customer(**DAVE)])])

    def create_orders():
        a, b, c = by_email("alice@example.com"), by_email("bob@example.com"), by_email("carol@example.com")
        Order.objects.create(customer=a, product="widget", quantity=2, note="gift wrap, leave at door")
        Order.objects.create(customer=b, product="gadget", quantity=1)
        Order.objects.create(customer=c, product="widget", quantity=5, note="call before delivery")
        return [[o.id, o.customer_id, o.product, o.quantity, o.note] for o in Order.objects.order_by("id")]
    step("create_orders", create_orders)
    step("get_by_email", lambda: [row(by_email("bob@example.com"))])
    step("in_list", lambda: rows(Customer.objects.filter(
        email__in=["alice@example.com", "carol@example.com", "nobody@example.com"]).order_by("id")))

    def update():
        a = by_email("alice@example.com")
        a.full_name, a.phone = "Alice Liddell-Smith", "+44 20 7946 0999"
        a.save()
        return [row(Customer.objects.get(pk=a.pk))]
    step("update", update)
    step("bulk_update", lambda: [[Customer.objects.filter(tier="gold").update(credit_limit=D("2500.00"))]] +
         rows(Customer.objects.filter(tier="gold").order_by("id")))


    def get_or_create():
        c, created = Customer.objects.get_or_create(email="bob@example.com", defaults=dict(full_name="not used"))
        return [row(c) + [created]]
    step("get_or_create", get_or_create)

    def get_or_create_new():
        c, created = Customer.objects.get_or_create(email="erin@example.com", defaults=ERIN)
        return [row(Customer.objects.get(pk=c.pk)) + [created]]
    step("get_or_create_new", get_or_create_new)
    step("count", lambda: [[Customer.objects.count()], [Customer.objects.filter(tier="gold").count()]])
    step("pagination", lambda: rows(Customer.objects.order_by("id")[1:3]))
    step("is_null", lambda: rows(Customer.objects.filter(phone__isnull=True).order_by("id")))
    step("eager_join", lambda: [[o.id, o.product, o.note, o.customer.email, o.customer.full_name]
                                for o in Order.objects.select_related("customer").order_by("id")])
    step("related_filter", lambda: rows(Customer.objects.filter(orders__product="widget").order_by("id")))
    step("exists", lambda: [[Customer.objects.filter(email="carol@example.com").exists()],
                            [Customer.objects.filter(email="zed@example.com").exists()]])
    step("unique_violation", lambda: [row(Customer.objects.create(email="bob@example.com", full_name="Bob Again"))])

    def raw_sql():
        out = [[c.id, c.email, c.full_name, c.birth_date, c.credit_limit] for c in Customer.objects.raw(
            "SELECT id, email, full_name, birth_date, credit_limit FROM customers WHERE email = %s", ["bob@example.com"])]
        with connection.cursor() as cur:
            cur.execute("SELECT full_name, phone FROM customers WHERE email IN (%s, %s) ORDER BY id",
                        ["alice@example.com", "carol@example.com"])
            out += [list(r) for r in cur.fetchall()]
        return out
    step("raw_sql", raw_sql)

    def rollback():
        try:
            with transaction.atomic():
                Customer.objects.create(**FRANK)
                raise Rollback()
        except Rollback:
            pass
        return [[Customer.objects.filter(email="frank@example.com").exists()], [Customer.objects.count()]]
    step("rollback", rollback)

    def savepoint():
        with transaction.atomic():
            Customer.objects.create(**GINA)
            try:
                with transaction.atomic():  # a savepoint
                    Customer.objects.create(**HANK)
                    raise Rollback()
            except Rollback:
                pass
        return [[Customer.objects.filter(email="gina@example.com").exists()],
                [Customer.objects.filter(email="hank@example.com").exists()]]
    step("savepoint", savepoint)

    def optimistic_lock():
        raise Skip("Django has no optimistic locking (no version field in the ORM)")
    step("optimistic_lock", optimistic_lock)
    step("delete", lambda: [[Customer.objects.filter(email="dave@example.com").delete()[0]],
                            [Customer.objects.filter(email="dave@example.com").exists()]])
    step("order_by_randomized", lambda: rows(Customer.objects.order_by("full_name")))
    step("like_randomized", lambda: rows(Customer.objects.filter(full_name__startswith="A").order_by("id")))
    step("full_dump", lambda: [["customer"] + row(c) for c in Customer.objects.order_by("id")] +
         [["order", o.id, o.customer_id, o.product, o.quantity, o.note] for o in Order.objects.order_by("id")])

    # Model.objects.bulk_update (after full_dump: pgcloak refuses it, and the
    # rows it changes are not read again): one UPDATE … SET col = CASE WHEN id = … THEN … END.
    def bulk_update_objects():
        objs = list(Customer.objects.filter(tier="basic").order_by("id"))
        for o in objs:
            o.phone = "+1 555 %04d" % o.id
        n = Customer.objects.bulk_update(objs, ["phone"])
        return [[n]] + rows(Customer.objects.filter(tier="basic").order_by("id"))
    step("bulk_update_objects", bulk_update_objects)

    def migrate():
        # The tables were made before the application ran: record the
        # initial migration as applied, then run the one that adds the column.
        call_command("migrate", "ormapp", "0001", fake=True, verbosity=0)
        call_command("migrate", "ormapp", "0002", verbosity=0)
        return [["migrated"]]
    step("migrate", migrate)


def migrated_phase():
    def write():
        a = by_email("alice@example.com")
        a.nickname = "Ally"
        a.save(update_fields=["nickname"])
        ivy = Customer.objects.create(email="ivy@example.com", full_name="Ivy Migrated", nickname="Ivy 🌿")
        return [[a.id], [ivy.id]]
    step("migrated_write", write)
    step("migrated_read", lambda: [[c.id, c.email, c.nickname] for c in Customer.objects.order_by("id")] +
         [[c.id] for c in Customer.objects.filter(nickname__isnull=False).order_by("id")])


emit({"step": "version", "rows": [["Django " + django.get_version()]]})
if os.environ["ORM_PHASE"] == "main":
    main_phase()
else:
    migrated_phase()
