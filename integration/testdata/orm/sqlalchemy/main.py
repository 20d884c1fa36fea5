"""SQLAlchemy program of the pgcloak ORM matrix (integration/orm_test.go).

Runs the matrix scenario with the SQLAlchemy ORM (1.4, 2.0-style sessions,
psycopg2) against ORM_DB_* and prints one JSON line per step. ORM_PHASE is
main (every CRUD step, ending with an Alembic operation adding a protected
column) or migrated (the new column written and read)."""

import datetime
import decimal
import json
import os
import sys

import alembic
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (Column, Date, ForeignKey, Integer, LargeBinary, Numeric, String, Text,
                        delete, exists, func, select, text, update)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, declarative_base, joinedload, relationship

MIGRATED = os.environ["ORM_PHASE"] == "migrated"
Base = declarative_base()


# The model declares the logical types pgcloak's config gives the protected
# columns: PostgreSQL holds them as bytea, the application sees these types.
class Customer(Base):
    __tablename__ = "customers"
    id = Column(Integer, primary_key=True)
    email = Column(Text, nullable=False, unique=True)
    full_name = Column(Text, nullable=False)
    phone = Column(String(32))
    birth_date = Column(Date)
    credit_limit = Column(Numeric(12, 2))
    tier = Column(Text, nullable=False, default="basic")
    version = Column(Integer, nullable=False)
    orders = relationship("Order", back_populates="customer")
    __mapper_args__ = {"version_id_col": version}
    if MIGRATED:
        nickname = Column(Text)


class Order(Base):
    __tablename__ = "orders"
    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False)
    product = Column(Text, nullable=False)
    quantity = Column(Integer, nullable=False)
    note = Column(Text)
    customer = relationship("Customer", back_populates="orders")


# ORM_SQL_LOG=1 (PGCLOAK_ORM_SQL=1 in the test): every statement on stderr.
if os.environ.get("ORM_SQL_LOG") == "1":
    import logging
    logging.basicConfig(stream=sys.stderr)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)

engine = sa.create_engine(
    "postgresql+psycopg2://%s@%s:%s/%s?sslmode=disable" % (
        os.environ["ORM_DB_USER"], os.environ["ORM_DB_HOST"], os.environ["ORM_DB_PORT"], os.environ["ORM_DB_NAME"]),
    future=True)

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
    """Runs fn with a fresh session and prints its outcome."""
    try:
        with Session(engine) as s:
            rows = fn(s)
        emit({"step": name, "ok": True, "rows": [[cell(v) for v in r] for r in rows]})
    except Skip as e:
        emit({"step": name, "skip": str(e)})
    except DBAPIError as e:
        pg = e.orig
        emit({"step": name, "ok": False, "sqlstate": pg.pgcode,
              "error": pg.diag.message_primary, "detail": pg.diag.message_detail or ""})
    except Exception as e:  # the step's outcome, compared by the test
        emit({"step": name, "ok": False, "error": type(e).__name__ + ": " + str(e)})


def row(c):
    return [c.id, c.email, c.full_name, c.phone, c.birth_date, c.credit_limit, c.tier]


def customers(s, stmt):
    return [row(c) for c in s.execute(stmt).scalars()]


def by_email(s, e):
    return s.execute(select(Customer).filter_by(email=e)).scalar_one()


def has(s, e):
    return s.scalar(select(exists().where(Customer.email == e)))


def get_or_create(s, email, defaults):
    """The usual recipe: SELECT, else INSERT in a savepoint, and SELECT
    again if another session inserted it first."""
    obj = s.execute(select(Customer).filter_by(email=email)).scalar_one_or_none()
    if obj is not None:
        return obj, False
    try:
        with s.begin_nested():
            obj = Customer(email=email, **defaults)
            s.add(obj)
        return obj, True
    except IntegrityError:
        return by_email(s, email), False


def main_phase():
    def create(s):
        s.add(Customer(**ALICE))
        s.commit()
        return [row(by_email(s, "alice@example.com"))]
    step("create", create)

    def bulk_create(s):
        objs = [Customer(**BOB), Customer(**CAROL), Customer(**DAVE)]
        s.add_all(objs)
        s.flush()
        out = [[c.id, c.email] for c in objs]
        s.commit()
        return out
    step("bulk_create", bulk_create)

    def create_orders(s):
        a, b, c = by_email(s, "alice@example.com"), by_email(s, "bob@example.com"), by_email(s, "carol@example.com")
        s.add_all([Order(customer=a, product="widget", quantity=2, note="gift wrap, leave at door"),
                   Order(customer=b, product="gadget", quantity=1),
                   Order(customer=c, product="widget", quantity=5, note="call before delivery")])
        s.commit()
        return [[o.id, o.customer_id, o.product, o.quantity, o.note] for o in s.execute(select(Order).order_by(Order.id)).scalars()]
    step("create_orders", create_orders)
    step("get_by_email", lambda s: [row(by_email(s, "bob@example.com"))])
    step("in_list", lambda s: customers(s, select(Customer).where(
        Customer.email.in_(["alice@example.com", "carol@example.com", "nobody@example.com"])).order_by(Customer.id)))

    def update_one(s):
        a = by_email(s, "alice@example.com")
        a.full_name, a.phone = "Alice Liddell-Smith", "+44 20 7946 0999"
        s.commit()
        return [row(by_email(s, "alice@example.com"))]
    step("update", update_one)

    def bulk_update(s):
        n = s.execute(update(Customer).where(Customer.tier == "gold").values(credit_limit=D("2500.00"))).rowcount
        s.commit()
        return [[n]] + customers(s, select(Customer).where(Customer.tier == "gold").order_by(Customer.id))
    step("bulk_update", bulk_update)

    def goc(s):
        c, created = get_or_create(s, "bob@example.com", dict(full_name="not used"))
        s.commit()
        return [row(c) + [created]]
    step("get_or_create", goc)

    def goc_new(s):
        c, created = get_or_create(s, "erin@example.com", ERIN)
        s.commit()
        return [row(by_email(s, "erin@example.com")) + [created]]
    step("get_or_create_new", goc_new)
    step("count", lambda s: [[s.scalar(select(func.count()).select_from(Customer))],
                             [s.scalar(select(func.count()).select_from(Customer).where(Customer.tier == "gold"))]])
    step("pagination", lambda s: customers(s, select(Customer).order_by(Customer.id).limit(2).offset(1)))
    step("is_null", lambda s: customers(s, select(Customer).where(Customer.phone.is_(None)).order_by(Customer.id)))
    step("eager_join", lambda s: [[o.id, o.product, o.note, o.customer.email, o.customer.full_name] for o in
                                  s.execute(select(Order).options(joinedload(Order.customer)).order_by(Order.id)).scalars()])
    step("related_filter", lambda s: customers(s, select(Customer).join(Customer.orders)
                                               .where(Order.product == "widget").order_by(Customer.id)))
    step("exists", lambda s: [[has(s, "carol@example.com")], [has(s, "zed@example.com")]])

    def unique_violation(s):
        s.add(Customer(email="bob@example.com", full_name="Bob Again"))
        s.commit()
        return [["inserted"]]
    step("unique_violation", unique_violation)
    step("raw_sql", lambda s: [list(r) for r in s.execute(
        text("SELECT id, email, full_name, birth_date, credit_limit FROM customers WHERE email = :e"),
        {"e": "bob@example.com"})] + [list(r) for r in s.execute(
            text("SELECT full_name, phone FROM customers WHERE email IN (:a, :b) ORDER BY id"),
            {"a": "alice@example.com", "b": "carol@example.com"})])

    def rollback(s):
        s.add(Customer(**FRANK))
        s.flush()
        s.rollback()
        return [[has(s, "frank@example.com")], [s.scalar(select(func.count()).select_from(Customer))]]
    step("rollback", rollback)

    def savepoint(s):
        s.add(Customer(**GINA))
        s.flush()
        sp = s.begin_nested()
        s.add(Customer(**HANK))
        s.flush()
        sp.rollback()
        s.commit()
        return [[has(s, "gina@example.com")], [has(s, "hank@example.com")]]
    step("savepoint", savepoint)

    def optimistic_lock(s):
        # version_id_col: UPDATE … WHERE id = … AND version = …
        with Session(engine) as s2:
            a1, a2 = by_email(s, "alice@example.com"), by_email(s2, "alice@example.com")
            a1.full_name = "Alice A"
            s.commit()
            a2.full_name = "Alice B"
            try:
                s2.commit()
                second = "saved"
            except sa.orm.exc.StaleDataError as e:
                second = type(e).__name__
        return [["saved"], [second], row(by_email(s, "alice@example.com"))]
    step("optimistic_lock", optimistic_lock)

    def delete_one(s):
        s.delete(by_email(s, "dave@example.com"))
        s.commit()
        return [[has(s, "dave@example.com")]]
    step("delete", delete_one)
    step("order_by_randomized", lambda s: customers(s, select(Customer).order_by(Customer.full_name)))
    step("like_randomized", lambda s: customers(s, select(Customer).where(Customer.full_name.like("A%")).order_by(Customer.id)))
    step("full_dump", lambda s: [["customer"] + row(c) for c in s.execute(select(Customer).order_by(Customer.id)).scalars()] +
         [["order", o.id, o.customer_id, o.product, o.quantity, o.note] for o in s.execute(select(Order).order_by(Order.id)).scalars()])

    def migrate(s):
        # What an Alembic revision's upgrade() does: the column is bytea
        # behind pgcloak (LargeBinary), text in the plaintext twin.
        protected = os.environ.get("ORM_PROTECTED") == "1"
        with engine.begin() as conn:
            op = Operations(MigrationContext.configure(conn))
            op.add_column("customers", Column("nickname", LargeBinary() if protected else Text(), nullable=True))
        return [["migrated"]]
    step("migrate", migrate)


def migrated_phase():
    def write(s):
        a = by_email(s, "alice@example.com")
        a.nickname = "Ally"
        ivy = Customer(email="ivy@example.com", full_name="Ivy Migrated", nickname="Ivy 🌿")
        s.add(ivy)
        s.commit()
        return [[a.id], [ivy.id]]
    step("migrated_write", write)
    step("migrated_read", lambda s: [[c.id, c.email, c.nickname] for c in s.execute(select(Customer).order_by(Customer.id)).scalars()] +
         [[c.id] for c in s.execute(select(Customer).where(Customer.nickname.isnot(None)).order_by(Customer.id)).scalars()])


emit({"step": "version", "rows": [["SQLAlchemy %s (Alembic %s)" % (sa.__version__, alembic.__version__)]]})
if MIGRATED:
    migrated_phase()
else:
    main_phase()
