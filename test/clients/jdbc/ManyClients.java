// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) against one instance:
// two connections whose server-side prepared statements share JDBC's names (S_1, ...),
// settings that stay with their connection, batches, a cursor read in chunks, a
// timeout that cancels, an error inside a transaction, LISTEN/NOTIFY and metadata.
// Run as `java -cp /usr/share/java/postgresql.jar ManyClients.java` with PGHOST,
// PGPORT, PGUSER, PGPASSWORD, PGDATABASE set; prints one line per check.

import java.sql.*;
import java.util.Properties;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

public class ManyClients {
    static Connection connect(String name) throws SQLException {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT") + "/" + System.getenv("PGDATABASE");
        Properties p = new Properties();
        p.setProperty("user", System.getenv("PGUSER"));
        p.setProperty("password", System.getenv("PGPASSWORD"));
        p.setProperty("ApplicationName", name);
        p.setProperty("prepareThreshold", "2");
        return DriverManager.getConnection(url, p);
    }

    static String one(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getString(1);
        }
    }

    public static void main(String[] args) throws Exception {
        try (Connection a = connect("alpha"); Connection b = connect("beta")) {
            // Same statement names on both connections, used in turns past the
            // threshold, so both hold a server-side S_n with different text.
            try (PreparedStatement pa = a.prepareStatement("SELECT ?::int + 1");
                 PreparedStatement pb = b.prepareStatement("SELECT ?::text || '!'")) {
                StringBuilder out = new StringBuilder();
                for (int i = 0; i < 6; i++) {
                    pa.setInt(1, i);
                    pb.setString(1, "b" + i);
                    try (ResultSet ra = pa.executeQuery(); ResultSet rb = pb.executeQuery()) {
                        ra.next();
                        rb.next();
                        out.append(ra.getInt(1)).append(rb.getString(1)).append(' ');
                    }
                }
                System.out.println("prepared in turns: " + out.toString().trim());
            }

            try (Statement s = a.createStatement()) {
                s.execute("SET TIME ZONE 'Asia/Tokyo'");
            }
            System.out.println("TimeZone a " + one(a, "SHOW TimeZone") + " b " + one(b, "SHOW TimeZone"));
            System.out.println("application_name a " + one(a, "SHOW application_name") + " b " + one(b, "SHOW application_name"));

            try (Statement s = a.createStatement()) {
                s.execute("CREATE TABLE jdbc_items (id int PRIMARY KEY, name text, price numeric(10,2), at timestamptz)");
            }
            a.setAutoCommit(false);
            try (PreparedStatement ins = a.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?, ?, ?)")) {
                for (int i = 1; i <= 250; i++) {
                    ins.setInt(1, i);
                    ins.setString(2, "item " + i);
                    ins.setBigDecimal(3, new java.math.BigDecimal(i + ".25"));
                    ins.setTimestamp(4, Timestamp.valueOf("2026-12-01 10:00:00"));
                    ins.addBatch();
                }
                int total = 0;
                for (int n : ins.executeBatch()) total += n;
                System.out.println("batch inserted " + total);
            }
            a.commit();
            System.out.println("b sees " + one(b, "SELECT count(*) FROM jdbc_items"));

            // A cursor read in chunks: Execute with a row limit, PortalSuspended, more.
            try (Statement s = a.createStatement()) {
                s.setFetchSize(40);
                int rows = 0;
                java.math.BigDecimal sum = java.math.BigDecimal.ZERO;
                try (ResultSet r = s.executeQuery("SELECT id, price FROM jdbc_items ORDER BY id")) {
                    while (r.next()) {
                        rows++;
                        sum = sum.add(r.getBigDecimal(2));
                    }
                }
                a.commit();
                System.out.println("fetched in chunks " + rows + " sum " + sum);
            }

            // An error inside a transaction: 25P02 until the rollback, then all is well.
            try (Statement s = a.createStatement()) {
                try {
                    s.execute("SELECT 1/0");
                } catch (SQLException e) {
                    System.out.println("error " + e.getSQLState());
                }
                try {
                    s.execute("SELECT 1");
                } catch (SQLException e) {
                    System.out.println("then " + e.getSQLState());
                }
                a.rollback();
                System.out.println("after rollback " + one(a, "SELECT 2"));
                a.commit();
            }
            a.setAutoCommit(true);

            // setQueryTimeout: the driver sends a CancelRequest when it runs out.
            try (Statement s = b.createStatement()) {
                s.setQueryTimeout(1);
                long t = System.nanoTime();
                try {
                    s.execute("SELECT pg_sleep(20)");
                    System.out.println("timeout: not canceled");
                } catch (SQLException e) {
                    long ms = (System.nanoTime() - t) / 1_000_000;
                    System.out.println("timeout " + e.getSQLState() + (ms < 10_000 ? " in time" : " late: " + ms + " ms"));
                }
            }
            System.out.println("b goes on " + one(b, "SELECT 3"));

            // LISTEN on a, NOTIFY from b.
            try (Statement s = a.createStatement()) {
                s.execute("LISTEN jdbc_events");
            }
            try (Statement s = b.createStatement()) {
                s.execute("NOTIFY jdbc_events, 'from beta'");
            }
            PGNotification[] got = a.unwrap(PGConnection.class).getNotifications(5_000);
            System.out.println("notified " + (got == null || got.length == 0 ? "nothing" : got[0].getName() + " " + got[0].getParameter()));

            // What ORMs and tools ask first.
            DatabaseMetaData md = b.getMetaData();
            try (ResultSet r = md.getTables(null, "public", "jdbc_%", new String[] {"TABLE"})) {
                StringBuilder names = new StringBuilder();
                while (r.next()) names.append(r.getString("TABLE_NAME")).append(' ');
                System.out.println("tables " + names.toString().trim());
            }
            try (ResultSet r = md.getColumns(null, "public", "jdbc_items", "%")) {
                int n = 0;
                while (r.next()) n++;
                System.out.println("columns " + n);
            }
            System.out.println("server " + md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
        }
    }
}
