// Hibernate program of the pgcloak ORM matrix (integration/orm_test.go).
//
// Runs the matrix scenario with Hibernate 3.6 (Debian's libhibernate3-java,
// JPA annotations, PgJDBC) against ORM_DB_* and prints one JSON line per
// step. ORM_PHASE is main (every CRUD step, ending with Hibernate's
// SchemaUpdate adding a protected column) or migrated (the new column
// written and read). Compiled by the test (javac) and run with Debian's jars
// on the class path.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import javax.persistence.Column;
import javax.persistence.Entity;
import javax.persistence.GeneratedValue;
import javax.persistence.GenerationType;
import javax.persistence.Id;
import javax.persistence.JoinColumn;
import javax.persistence.ManyToOne;
import javax.persistence.OneToMany;
import javax.persistence.Table;
import javax.persistence.Temporal;
import javax.persistence.TemporalType;
import javax.persistence.Version;

import org.hibernate.Session;
import org.hibernate.SessionFactory;
import org.hibernate.Transaction;
import org.hibernate.cfg.Configuration;
import org.hibernate.jdbc.Work;
import org.hibernate.tool.hbm2ddl.SchemaUpdate;
import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

// The entity declares the logical types pgcloak's config gives the protected
// columns: PostgreSQL holds them as bytea, the application sees these types.
@Entity(name = "Customer")
@Table(name = "customers")
class Customer {
    @Id @GeneratedValue(strategy = GenerationType.IDENTITY) Integer id;
    @Column(nullable = false, unique = true) String email;
    @Column(name = "full_name", nullable = false) String fullName;
    @Column(length = 32) String phone;
    @Temporal(TemporalType.DATE) @Column(name = "birth_date") java.util.Date birthDate;
    @Column(name = "credit_limit", precision = 12, scale = 2) BigDecimal creditLimit;
    @Column(nullable = false) String tier = "basic";
    @Version int version;
    @OneToMany(mappedBy = "customer") List<PurchaseOrder> orders;

    Customer() {}

    Customer(String email, String fullName, String phone, String birthDate, String creditLimit, String tier) {
        this.email = email;
        this.fullName = fullName;
        this.phone = phone;
        this.birthDate = birthDate == null ? null : java.sql.Date.valueOf(birthDate);
        this.creditLimit = creditLimit == null ? null : new BigDecimal(creditLimit);
        this.tier = tier;
    }

    List<Object> row() { return Arrays.asList(id, email, fullName, phone, birthDate, creditLimit, tier); }
}

@Entity(name = "PurchaseOrder")
@Table(name = "orders")
class PurchaseOrder {
    @Id @GeneratedValue(strategy = GenerationType.IDENTITY) Integer id;
    @ManyToOne(optional = false) @JoinColumn(name = "customer_id") Customer customer;
    @Column(nullable = false) String product;
    int quantity;
    String note;

    PurchaseOrder() {}

    PurchaseOrder(Customer c, String product, int quantity, String note) {
        this.customer = c;
        this.product = product;
        this.quantity = quantity;
        this.note = note;
    }
}

// Customer after the migration.
@Entity(name = "CustomerNick")
@Table(name = "customers")
class CustomerNick {
    @Id @GeneratedValue(strategy = GenerationType.IDENTITY) Integer id;
    String email;
    @Column(name = "full_name") String fullName;
    String nickname;
}

public class Main {
    interface Body {
        List<List<Object>> run(Session s) throws Exception;
    }

    static class Skip extends Exception {
        Skip(String why) { super(why); }
    }

    static SessionFactory sf;

    static Configuration config() {
        String url = "jdbc:postgresql://" + System.getenv("ORM_DB_HOST") + ":" + System.getenv("ORM_DB_PORT") + "/"
            + System.getenv("ORM_DB_NAME") + "?sslmode=disable";
        return new Configuration()
            .setProperty("hibernate.dialect", "org.hibernate.dialect.PostgreSQLDialect")
            .setProperty("hibernate.connection.driver_class", "org.postgresql.Driver")
            .setProperty("hibernate.connection.url", url)
            .setProperty("hibernate.connection.username", System.getenv("ORM_DB_USER"))
            .setProperty("hibernate.connection.pool_size", "2")
            // ORM_SQL_LOG=1 (PGCLOAK_ORM_SQL=1 in the test): every statement,
            // on stdout where the test shows lines that are not steps.
            .setProperty("hibernate.show_sql", String.valueOf("1".equals(System.getenv("ORM_SQL_LOG"))));
    }

    static String json(Object v) {
        if (v == null) return "null";
        if (v instanceof List) {
            StringBuilder b = new StringBuilder("[");
            for (Object o : (List<?>) v) {
                if (b.length() > 1) b.append(',');
                b.append(json(o));
            }
            return b.append(']').toString();
        }
        String s = v.toString();
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
            }
        }
        return b.append('"').toString();
    }

    static Object cell(Object v) {
        if (v == null) return null;
        if (v instanceof java.util.Date) return new SimpleDateFormat("yyyy-MM-dd").format((java.util.Date) v);
        if (v instanceof BigDecimal) return ((BigDecimal) v).toPlainString();
        return v.toString();
    }

    static void emit(String s) {
        System.out.println(s);
        System.out.flush();
    }

    // step runs body in a session and transaction of its own and prints
    // its outcome: rows, or the server's SQLSTATE, message and detail, or
    // the exception.
    static void step(String name, Body body) {
        Session s = sf.openSession();
        Transaction tx = s.beginTransaction();
        try {
            List<List<Object>> rows = body.run(s);
            if (tx.isActive()) tx.commit();
            List<Object> out = new ArrayList<>();
            for (List<Object> r : rows) {
                List<Object> cells = new ArrayList<>();
                for (Object v : r) cells.add(cell(v));
                out.add(cells);
            }
            emit("{\"step\":" + json(name) + ",\"ok\":true,\"rows\":" + json(out) + "}");
        } catch (Skip e) {
            emit("{\"step\":" + json(name) + ",\"skip\":" + json(e.getMessage()) + "}");
        } catch (Exception e) {
            try {
                if (tx.isActive()) tx.rollback();
            } catch (Exception ignored) {
                // the outcome is e
            }
            ServerErrorMessage m = serverError(e);
            if (m != null) {
                emit("{\"step\":" + json(name) + ",\"ok\":false,\"sqlstate\":" + json(m.getSQLState()) + ",\"error\":"
                    + json(m.getMessage()) + ",\"detail\":" + json(m.getDetail() == null ? "" : m.getDetail()) + "}");
            } else {
                emit("{\"step\":" + json(name) + ",\"ok\":false,\"error\":" + json(e.getClass().getSimpleName() + ": " + e.getMessage()) + "}");
            }
        } finally {
            s.close();
        }
    }

    static ServerErrorMessage serverError(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            for (Throwable u = t; u != null; u = (u instanceof SQLException) ? ((SQLException) u).getNextException() : null) {
                if (u instanceof PSQLException && ((PSQLException) u).getServerErrorMessage() != null) {
                    return ((PSQLException) u).getServerErrorMessage();
                }
            }
        }
        return null;
    }

    static List<List<Object>> rows(List<?> cs) {
        List<List<Object>> out = new ArrayList<>();
        for (Object c : cs) out.add(((Customer) c).row());
        return out;
    }

    static List<List<Object>> of(Object... cells) {
        List<List<Object>> out = new ArrayList<>();
        for (Object c : cells) out.add(c instanceof List ? new ArrayList<>((List<?>) c) : new ArrayList<>(Arrays.asList(c)));
        return out;
    }

    static Customer byEmail(Session s, String e) {
        return (Customer) s.createQuery("from Customer where email = :e").setParameter("e", e).uniqueResult();
    }

    static boolean has(Session s, String e) {
        return ((Number) s.createQuery("select count(*) from Customer where email = :e").setParameter("e", e).uniqueResult()).longValue() > 0;
    }

    static Customer getOrCreate(Session s, String email, Customer defaults, boolean[] created) {
        Customer c = byEmail(s, email);
        created[0] = c == null;
        if (c == null) {
            c = defaults;
            c.email = email;
            s.save(c);
        }
        return c;
    }

    static final Customer alice() { return new Customer("alice@example.com", "Alice Liddell", "+44 20 7946 0001", "1990-04-01", "1200.50", "gold"); }

    static void mainPhase() {
        sf = config().addAnnotatedClass(Customer.class).addAnnotatedClass(PurchaseOrder.class).buildSessionFactory();
        step("create", s -> {
            Customer a = alice();
            s.save(a);
            s.getTransaction().commit();
            s.clear();
            return of(byEmail(s, "alice@example.com").row());
        });
        step("bulk_create", s -> {
            List<Customer> cs = Arrays.asList(
                new Customer("bob@example.com", "Bob Müller", "+49 30 1234567", "1985-12-24", "300.00", "basic"),
                new Customer("carol@example.com", "Carol O'Brien", null, "2001-02-28", null, "gold"),
                new Customer("dave@example.com", "Dave 山田", "+81 3 1234 5678", null, "0.00", "basic"));
            List<List<Object>> out = new ArrayList<>();
            for (Customer c : cs) {
                s.save(c);
                out.add(Arrays.asList(c.id, c.email));
            }
            return out;
        });
        step("create_orders", s -> {
            s.save(new PurchaseOrder(byEmail(s, "alice@example.com"), "widget", 2, "gift wrap, leave at door"));
            s.save(new PurchaseOrder(byEmail(s, "bob@example.com"), "gadget", 1, null));
            s.save(new PurchaseOrder(byEmail(s, "carol@example.com"), "widget", 5, "call before delivery"));
            s.flush();
            List<List<Object>> out = new ArrayList<>();
            for (Object o : s.createQuery("from PurchaseOrder order by id").list()) {
                PurchaseOrder p = (PurchaseOrder) o;
                out.add(Arrays.asList(p.id, p.customer.id, p.product, p.quantity, p.note));
            }
            return out;
        });
        step("get_by_email", s -> of(byEmail(s, "bob@example.com").row()));
        step("in_list", s -> rows(s.createQuery("from Customer where email in (:es) order by id")
            .setParameterList("es", Arrays.asList("alice@example.com", "carol@example.com", "nobody@example.com")).list()));
        step("update", s -> {
            Customer a = byEmail(s, "alice@example.com");
            a.fullName = "Alice Liddell-Smith";
            a.phone = "+44 20 7946 0999";
            s.getTransaction().commit();
            s.clear();
            return of(byEmail(s, "alice@example.com").row());
        });
        step("bulk_update", s -> {
            int n = s.createQuery("update Customer set creditLimit = :c where tier = :t")
                .setParameter("c", new BigDecimal("2500.00")).setParameter("t", "gold").executeUpdate();
            List<List<Object>> out = of(n);
            out.addAll(rows(s.createQuery("from Customer where tier = 'gold' order by id").list()));
            return out;
        });
        // Hibernate has no get-or-create: the usual recipe is a query, then save.
        step("get_or_create", s -> {
            boolean[] created = new boolean[1];
            Customer c = getOrCreate(s, "bob@example.com", new Customer(null, "not used", null, null, null, "basic"), created);
            List<Object> r = new ArrayList<>(c.row());
            r.add(created[0]);
            return of(r);
        });
        step("get_or_create_new", s -> {
            boolean[] created = new boolean[1];
            getOrCreate(s, "erin@example.com", new Customer(null, "Erin Example", null, "1999-09-09", "50.00", "basic"), created);
            s.getTransaction().commit();
            s.clear();
            List<Object> r = new ArrayList<>(byEmail(s, "erin@example.com").row());
            r.add(created[0]);
            return of(r);
        });
        step("count", s -> of(s.createQuery("select count(*) from Customer").uniqueResult(),
            s.createQuery("select count(*) from Customer where tier = 'gold'").uniqueResult()));
        step("pagination", s -> rows(s.createQuery("from Customer order by id").setFirstResult(1).setMaxResults(2).list()));
        step("is_null", s -> rows(s.createQuery("from Customer where phone is null order by id").list()));
        step("eager_join", s -> {
            List<List<Object>> out = new ArrayList<>();
            for (Object o : s.createQuery("from PurchaseOrder o join fetch o.customer order by o.id").list()) {
                PurchaseOrder p = (PurchaseOrder) o;
                out.add(Arrays.asList(p.id, p.product, p.note, p.customer.email, p.customer.fullName));
            }
            return out;
        });
        step("related_filter", s -> rows(s.createQuery("select c from Customer c join c.orders o where o.product = :p order by c.id")
            .setParameter("p", "widget").list()));
        step("exists", s -> of(has(s, "carol@example.com"), has(s, "zed@example.com")));
        step("unique_violation", s -> {
            s.save(new Customer("bob@example.com", "Bob Again", null, null, null, "basic"));
            s.flush();
            return of("inserted");
        });
        step("raw_sql", s -> {
            List<List<Object>> out = new ArrayList<>();
            for (Object r : s.createSQLQuery("SELECT id, email, full_name, birth_date, credit_limit FROM customers WHERE email = :e")
                    .setParameter("e", "bob@example.com").list()) {
                out.add(new ArrayList<>(Arrays.asList((Object[]) r)));
            }
            for (Object r : s.createSQLQuery("SELECT full_name, phone FROM customers WHERE email IN (:a, :b) ORDER BY id")
                    .setParameter("a", "alice@example.com").setParameter("b", "carol@example.com").list()) {
                out.add(new ArrayList<>(Arrays.asList((Object[]) r)));
            }
            return out;
        });
        step("rollback", s -> {
            s.save(new Customer("frank@example.com", "Frank Rolledback", "+1 555 0100", "1970-01-01", "10.00", "basic"));
            s.flush();
            s.getTransaction().rollback();
            s.clear();
            return of(has(s, "frank@example.com"), s.createQuery("select count(*) from Customer").uniqueResult());
        });
        // Hibernate 3.6 has no nested transactions: a JDBC savepoint around
        // the flush, as applications do it.
        step("savepoint", s -> {
            s.save(new Customer("gina@example.com", "Gina Saved", "+1 555 0101", "1980-05-05", "20.00", "basic"));
            s.flush();
            Savepoint[] sp = new Savepoint[1];
            s.doWork(new Work() {
                public void execute(Connection c) throws SQLException { sp[0] = c.setSavepoint(); }
            });
            Customer hank = new Customer("hank@example.com", "Hank Savepoint", null, null, null, "basic");
            s.save(hank);
            s.flush();
            s.doWork(new Work() {
                public void execute(Connection c) throws SQLException { c.rollback(sp[0]); }
            });
            s.evict(hank);
            s.getTransaction().commit();
            return of(has(s, "gina@example.com"), has(s, "hank@example.com"));
        });
        step("optimistic_lock", s -> {
            Customer a1 = byEmail(s, "alice@example.com");
            Session s2 = sf.openSession();
            String second;
            try {
                Transaction t2 = s2.beginTransaction();
                Customer a2 = byEmail(s2, "alice@example.com");
                a1.fullName = "Alice A";
                s.getTransaction().commit();
                a2.fullName = "Alice B";
                try {
                    t2.commit();
                    second = "saved";
                } catch (org.hibernate.StaleObjectStateException e) {
                    second = e.getClass().getSimpleName();
                    t2.rollback();
                }
            } finally {
                s2.close();
            }
            s.clear();
            return of("saved", second, byEmail(s, "alice@example.com").row());
        });
        step("delete", s -> {
            s.delete(byEmail(s, "dave@example.com"));
            s.flush();
            return of(has(s, "dave@example.com"));
        });
        step("order_by_randomized", s -> rows(s.createQuery("from Customer order by fullName").list()));
        step("like_randomized", s -> rows(s.createQuery("from Customer where fullName like :p order by id").setParameter("p", "A%").list()));
        step("full_dump", s -> {
            List<List<Object>> out = new ArrayList<>();
            for (Object c : s.createQuery("from Customer order by id").list()) {
                List<Object> r = new ArrayList<>(Arrays.asList((Object) "customer"));
                r.addAll(((Customer) c).row());
                out.add(r);
            }
            for (Object o : s.createQuery("from PurchaseOrder order by id").list()) {
                PurchaseOrder p = (PurchaseOrder) o;
                out.add(Arrays.asList("order", p.id, p.customer.id, p.product, p.quantity, p.note));
            }
            return out;
        });
        step("migrate", s -> {
            // SchemaUpdate (hbm2ddl) with a mapping that has the new column:
            // sql-type bytea behind pgcloak, text in the plaintext twin.
            String type = "1".equals(System.getenv("ORM_PROTECTED")) ? "bytea" : "text";
            Configuration cfg = config().addXML("<?xml version=\"1.0\"?>\n"
                + "<!DOCTYPE hibernate-mapping PUBLIC \"-//Hibernate/Hibernate Mapping DTD 3.0//EN\" "
                + "\"http://www.hibernate.org/dtd/hibernate-mapping-3.0.dtd\">\n"
                + "<hibernate-mapping><class entity-name=\"CustomerMigration\" table=\"customers\">"
                + "<id name=\"id\" type=\"integer\" column=\"id\"><generator class=\"identity\"/></id>"
                + "<property name=\"nickname\" type=\"string\"><column name=\"nickname\" sql-type=\"" + type + "\"/></property>"
                + "</class></hibernate-mapping>");
            SchemaUpdate update = new SchemaUpdate(cfg);
            update.execute(false, true);
            if (!update.getExceptions().isEmpty()) throw (Exception) update.getExceptions().get(0);
            return of("migrated");
        });
    }

    static void migratedPhase() {
        sf = config().addAnnotatedClass(CustomerNick.class).buildSessionFactory();
        step("migrated_write", s -> {
            CustomerNick a = (CustomerNick) s.createQuery("from CustomerNick where email = :e").setParameter("e", "alice@example.com").uniqueResult();
            a.nickname = "Ally";
            CustomerNick ivy = new CustomerNick();
            ivy.email = "ivy@example.com";
            ivy.fullName = "Ivy Migrated";
            ivy.nickname = "Ivy 🌿";
            s.save(ivy);
            return of(a.id, ivy.id);
        });
        step("migrated_read", s -> {
            List<List<Object>> out = new ArrayList<>();
            for (Object o : s.createQuery("from CustomerNick order by id").list()) {
                CustomerNick c = (CustomerNick) o;
                out.add(Arrays.asList(c.id, c.email, c.nickname));
            }
            for (Object o : s.createQuery("from CustomerNick where nickname is not null order by id").list()) {
                out.add(Arrays.asList(((CustomerNick) o).id));
            }
            return out;
        });
    }

    public static void main(String[] args) {
        emit("{\"step\":\"version\",\"rows\":[[" + json("Hibernate " + Session.class.getPackage().getImplementationVersion()
            + " (PgJDBC " + org.postgresql.Driver.getVersion() + ")") + "]]}");
        if ("migrated".equals(System.getenv("ORM_PHASE"))) {
            migratedPhase();
        } else {
            mainPhase();
        }
        sf.close();
    }
}
