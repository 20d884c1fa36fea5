// JDBC client of the pgcloak client matrix (integration/matrix_jdbc_test.go):
//
//     java -cp /usr/share/java/postgresql.jar Matrix.java JDBC_URL PLAN
//
// Runs the plan (see writeMatrixPlan) with PreparedStatement setters and
// prints what the ResultSet getters return as JSON:
// {"errors": [...], "rows": [[id, note, cell...]]}, each cell the Java type
// and value.
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.UUID;

public class Matrix {
    static final HexFormat HEX = HexFormat.of();

    static String text(String field) {
        return field.equals("\\N") ? null : new String(HEX.parseHex(field), StandardCharsets.UTF_8);
    }

    // bind sets parameter i to test value s with the setter an application uses.
    static void bind(PreparedStatement ps, int i, String kind, String s) throws SQLException {
        if (s == null) {
            ps.setNull(i, switch (kind) {
                case "int2" -> Types.SMALLINT;
                case "int4" -> Types.INTEGER;
                case "int8" -> Types.BIGINT;
                case "numeric" -> Types.NUMERIC;
                case "float8" -> Types.DOUBLE;
                case "bool" -> Types.BOOLEAN;
                case "date" -> Types.DATE;
                case "timestamp" -> Types.TIMESTAMP;
                case "timestamptz" -> Types.TIMESTAMP_WITH_TIMEZONE;
                case "bytea" -> Types.BINARY;
                case "uuid", "jsonb" -> Types.OTHER;
                default -> Types.VARCHAR;
            });
            return;
        }
        switch (kind) {
            case "int2" -> ps.setShort(i, Short.parseShort(s));
            case "int4" -> ps.setInt(i, Integer.parseInt(s));
            case "int8" -> ps.setLong(i, Long.parseLong(s));
            case "numeric" -> ps.setBigDecimal(i, new BigDecimal(s));
            case "float8" -> ps.setDouble(i, Double.parseDouble(s));
            case "bool" -> ps.setBoolean(i, Boolean.parseBoolean(s));
            case "date" -> ps.setDate(i, java.sql.Date.valueOf(s));
            case "timestamp" -> ps.setTimestamp(i, Timestamp.valueOf(s));
            case "timestamptz" -> ps.setObject(i, OffsetDateTime.parse(s.replace(' ', 'T')));
            case "uuid" -> ps.setObject(i, UUID.fromString(s));
            case "jsonb" -> ps.setObject(i, s, Types.OTHER);
            case "bytea" -> ps.setBytes(i, HEX.parseHex(s.substring(2)));
            default -> ps.setString(i, s); // text, varchar, bpchar
        }
    }

    // get reads column i with the getter an application uses.
    static String get(ResultSet rs, int i, String kind) throws SQLException {
        Object v = switch (kind) {
            case "int2" -> rs.getShort(i);
            case "int4" -> rs.getInt(i);
            case "int8" -> rs.getLong(i);
            case "numeric" -> rs.getBigDecimal(i);
            case "float8" -> rs.getDouble(i);
            case "bool" -> rs.getBoolean(i);
            case "date" -> rs.getDate(i);
            case "timestamp" -> rs.getTimestamp(i);
            case "timestamptz" -> rs.getObject(i, OffsetDateTime.class);
            case "uuid" -> rs.getObject(i);
            case "bytea" -> rs.getBytes(i);
            default -> rs.getString(i); // text, varchar, bpchar, jsonb
        };
        if (rs.wasNull()) {
            return null;
        }
        String shown = v instanceof byte[] b ? HEX.formatHex(b) : String.valueOf(v);
        return v.getClass().getSimpleName() + ":" + shown;
    }

    static String json(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') {
                b.append('\\').append(ch);
            } else if (ch < 0x20) {
                b.append(String.format("\\u%04x", (int) ch));
            } else {
                b.append(ch);
            }
        }
        return b.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        List<String[]> plan = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[1]), StandardCharsets.UTF_8)) {
            plan.add(line.split("\t", -1));
        }
        String table = plan.get(0)[1];
        int n = plan.get(1).length - 1;
        String[] names = new String[n], kinds = new String[n];
        for (int i = 0; i < n; i++) {
            String[] c = plan.get(1)[i + 1].split(":");
            names[i] = c[0];
            kinds[i] = c[1];
        }
        String cols = String.join(", ", names);
        String insert = "INSERT INTO " + table + " (id, note, " + cols + ") VALUES (?, ?" + ", ?".repeat(n) + ")";
        String update = "UPDATE " + table + " SET " + String.join(" = ?, ", names) + " = ? WHERE id = ?";
        String select = "SELECT id, note, " + cols + " FROM " + table + " ORDER BY id";

        List<String> errors = new ArrayList<>();
        List<String> rows = new ArrayList<>();
        try (Connection c = DriverManager.getConnection(args[0]);
                PreparedStatement ins = c.prepareStatement(insert);
                PreparedStatement upd = c.prepareStatement(update);
                Statement st = c.createStatement()) {
            for (int s = 2; s < plan.size(); s++) {
                String[] f = plan.get(s);
                try {
                    switch (f[0]) {
                        case "insert" -> {
                            ins.setInt(1, Integer.parseInt(f[1]));
                            ins.setString(2, text(f[2]));
                            for (int i = 0; i < n; i++) {
                                bind(ins, i + 3, kinds[i], text(f[i + 3]));
                            }
                            ins.executeUpdate();
                        }
                        case "update" -> {
                            for (int i = 0; i < n; i++) {
                                bind(upd, i + 1, kinds[i], text(f[i + 2]));
                            }
                            upd.setInt(n + 1, Integer.parseInt(f[1]));
                            upd.executeUpdate();
                        }
                        case "exec" -> st.execute(text(f[1]));
                    }
                } catch (SQLException | RuntimeException e) {
                    String what = f[0].equals("exec") ? text(f[1]) : f[0] + " id " + f[1];
                    errors.add("step " + (s - 2) + ", " + what.substring(0, Math.min(300, what.length())) + ": " + e);
                }
            }
            try (PreparedStatement sel = c.prepareStatement(select); ResultSet rs = sel.executeQuery()) {
                while (rs.next()) {
                    List<String> cells = new ArrayList<>();
                    cells.add(json(String.valueOf(rs.getInt(1))));
                    cells.add(json(get(rs, 2, "text")));
                    for (int i = 0; i < n; i++) {
                        cells.add(json(get(rs, i + 3, kinds[i])));
                    }
                    rows.add("[" + String.join(",", cells) + "]");
                }
            } catch (SQLException | RuntimeException e) {
                errors.add(select + ": " + e);
            }
        }
        List<String> errs = new ArrayList<>();
        for (String e : errors) {
            errs.add(json(e));
        }
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        out.print("{\"errors\":[" + String.join(",", errs) + "],\"rows\":[" + String.join(",", rows) + "]}");
        out.flush();
    }
}
