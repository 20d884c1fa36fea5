// Search runs the deterministic search forms of pgcloak's integration tests
// with PgJDBC PreparedStatements and prints one line per result, so the Go
// test can compare the output through pgcloak with plaintext twin tables
// read directly. Usage: java -cp postgresql.jar Search.java JDBC_URL PEOPLE CONTACTS
import java.sql.*;
import java.util.*;

public class Search {
    public static void main(String[] args) throws Exception {
        String people = args[1], contacts = args[2];
        try (Connection c = DriverManager.getConnection(args[0])) {
            String[] emails = {"ada@example.org", "grace@example.com", "taro@example.jp"};
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + people + " VALUES (?, ?, ?, ?)")) {
                for (int i = 0; i < emails.length; i++) {
                    ps.setInt(1, i + 1); ps.setString(2, emails[i]); ps.setString(3, "+81-" + i); ps.setString(4, "X");
                    ps.executeUpdate();
                }
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + contacts + " VALUES (?, ?, ?)")) {
                ps.setInt(1, 10); ps.setString(2, "grace@example.com"); ps.setString(3, "n1"); ps.executeUpdate();
            }
            // Run each lookup several times: PgJDBC switches to a named
            // server-side statement from the fifth execution.
            for (int round = 0; round < 6; round++) {
                print(c, round == 0, "eq", "SELECT id FROM " + people + " WHERE email = ?", "taro@example.jp");
                print(c, round == 0, "in", "SELECT id FROM " + people + " WHERE email IN (?, ?) ORDER BY id", "ada@example.org", "grace@example.com");
                print(c, round == 0, "ne", "SELECT id FROM " + people + " WHERE email <> ? ORDER BY id", "ada@example.org");
                print(c, round == 0, "join", "SELECT p.id, c.note FROM " + people + " p JOIN " + contacts + " c ON p.email = c.email");
                print(c, round == 0, "group", "SELECT email, count(*) FROM " + people + " WHERE email = ? GROUP BY email", "grace@example.com");
            }
            try (PreparedStatement ps = c.prepareStatement("UPDATE " + people + " SET country = ? WHERE email = ?")) {
                ps.setString(1, "Z"); ps.setString(2, "ada@example.org");
                System.out.println("update " + ps.executeUpdate());
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + people + " VALUES (?, ?, ?, ?)")) {
                ps.setInt(1, 9); ps.setString(2, "grace@example.com"); ps.setString(3, null); ps.setString(4, "X");
                ps.executeUpdate();
                System.out.println("duplicate accepted");
            } catch (SQLException e) {
                System.out.println("duplicate " + e.getSQLState());
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + people + " VALUES (?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET phone = EXCLUDED.phone")) {
                ps.setInt(1, 9); ps.setString(2, "grace@example.com"); ps.setString(3, "+1-555"); ps.setString(4, "X");
                System.out.println("upsert " + ps.executeUpdate());
            }
            print(c, true, "final", "SELECT id, email, phone, country FROM " + people + " ORDER BY id");
        }
    }

    static void print(Connection c, boolean show, String name, String sql, String... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) ps.setString(i + 1, params[i]);
            StringBuilder b = new StringBuilder(name);
            try (ResultSet rs = ps.executeQuery()) {
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    b.append(" |");
                    for (int i = 1; i <= n; i++) b.append(' ').append(rs.getString(i));
                }
            }
            if (show) System.out.println(b);
        }
    }
}
