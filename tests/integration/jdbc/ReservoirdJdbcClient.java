// tests/integration/jdbc/ReservoirdJdbcClient.java: a pgJDBC client of reservoird, for
// tests/integration/pg_reservoird_test.cpp. One file, no build step (Java 11+ source launcher):
//
//   java -cp /usr/share/java/postgresql.jar ReservoirdJdbcClient.java \
//       MODE PORT DATABASE USER PASSWORD [URL_PARAMETERS]
//
// URL_PARAMETERS are appended to jdbc:postgresql://127.0.0.1:PORT/DATABASE? (e.g.
// "prepareThreshold=0"). Modes:
//
//   session      the full check, on a session-mode database: pgJDBC's named server-side
//                statement must exist on the server (pg_prepared_statements) after 10 executions
//   transaction  the full check, on a transaction-mode database, with URL_PARAMETERS that make
//                pgJDBC use unnamed statements only (prepareThreshold=0): no named statement may
//                appear on any server connection
//   shared       two connections taking turns on a pool of ONE server connection in transaction
//                mode: A runs its PreparedStatement 6 times, then B its own 6 times, then A once
//                more. Prints what each execution gave and exits 0; the caller judges
//   concurrent   clients at once (a 7th argument "threads=N,iterations=M"; 4 and 50 by
//                default), each with SQL of its own, in autocommit and in transactions: prints a
//                summary of right answers, wrong answers and errors by SQLState; exits 0 only
//                when every answer was right
//
// The full check: connect (SCRAM in the tests); a PreparedStatement with int, text and NULL
// parameters executed 10 times (more than pgJDBC's prepareThreshold, 5); a committed and a
// rolled-back transaction (the rolled-back row must be absent, also for another connection);
// division by zero gives SQLState 22012 and the connection stays usable (in autocommit and in a
// transaction); batches (PreparedStatement and Statement addBatch/executeBatch, one with a
// duplicate key); setQueryTimeout cancels (57014); a wrong password gives 28P01. Prints
// "jdbc ok" at the end; any failed check exits 1 saying what.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;

public class ReservoirdJdbcClient {
  static String port, database, user, password, parameters;

  static void check(boolean condition, String what) {
    if (!condition) throw new AssertionError(what);
  }

  static String url() {
    String u = "jdbc:postgresql://127.0.0.1:" + port + "/" + database + "?connectTimeout=5"
        + "&socketTimeout=60";
    return parameters.isEmpty() ? u : u + "&" + parameters;
  }

  static Connection connect(String pw) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", user);
    p.setProperty("password", pw);
    return DriverManager.getConnection(url(), p);
  }

  static String one(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
      check(r.next(), "no row from " + sql);
      return r.getString(1);
    }
  }

  // The named prepared statements of the server session the query runs on.
  static int namedStatements(Connection c) throws SQLException {
    return Integer.parseInt(one(c, "SELECT count(*) FROM pg_prepared_statements"));
  }

  interface SqlAction {
    void run() throws SQLException;
  }

  // The SQLState of the SQLException the action throws; fails when it throws none.
  static String expectError(String what, SqlAction action) {
    try {
      action.run();
    } catch (SQLException e) {
      return e.getSQLState();
    }
    throw new AssertionError(what + ": no error");
  }

  static void fullCheck(boolean session) throws Exception {
    final String table = "rsv_jdbc_" + ProcessHandle.current().pid();
    try (Connection c = connect(password)) {
      check(one(c, "SELECT current_database()") != null, "current_database");
      check(!c.getMetaData().getDatabaseProductVersion().isEmpty(), "server version");
      check(one(c, "SELECT current_user").equals(user), "current_user");
      check(c.isValid(5), "isValid");

      // Parameters: int, text, NULL; 10 executions, past prepareThreshold (5).
      try (PreparedStatement ps = c.prepareStatement(
               "SELECT ?::int * 6, upper(?::text), ?::int IS NULL, coalesce(?::text, 'null')")) {
        for (int i = 0; i < 10; ++i) {
          ps.setInt(1, i);
          ps.setString(2, "text " + i);
          ps.setNull(3, Types.INTEGER);
          ps.setNull(4, Types.VARCHAR);
          try (ResultSet r = ps.executeQuery()) {
            check(r.next(), "prepared: no row");
            check(r.getInt(1) == i * 6, "prepared: int " + r.getInt(1) + " for " + i);
            check(r.getString(2).equals("TEXT " + i), "prepared: text " + r.getString(2));
            check(r.getBoolean(3), "prepared: NULL parameter was not NULL");
            check(r.getString(4).equals("null"), "prepared: NULL text " + r.getString(4));
            check(!r.next(), "prepared: two rows");
          }
        }
        boolean named = ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare();
        if (session) {
          check(named, "session: pgJDBC did not switch to a server-prepared statement");
          // The same server session: the named statement (S_1, ...) is really there.
          check(namedStatements(c) >= 1, "session: no named statement in pg_prepared_statements");
        } else {
          check(!named, "transaction: pgJDBC would use a named statement (prepareThreshold?)");
          check(namedStatements(c) == 0, "transaction: a named statement on the server");
        }
      }

      try (Statement s = c.createStatement()) {
        s.execute("DROP TABLE IF EXISTS " + table);
        s.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, note text)");
      }
      final String insert = "INSERT INTO " + table + " (id, note) VALUES (?, ?)";
      final String count = "SELECT count(*) FROM " + table + " WHERE id = ";

      // A transaction that commits and one that rolls back.
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement(insert)) {
        ps.setInt(1, 1);
        ps.setString(2, "committed");
        check(ps.executeUpdate() == 1, "insert 1");
        c.commit();
        ps.setInt(1, 2);
        ps.setString(2, "rolled back");
        check(ps.executeUpdate() == 1, "insert 2");
        check(one(c, count + "2").equals("1"), "row 2 not visible inside its transaction");
        c.rollback();
      }
      c.setAutoCommit(true);
      check(one(c, count + "1").equals("1"), "committed row 1 missing");
      check(one(c, count + "2").equals("0"), "rolled-back row 2 is there");
      try (Connection other = connect(password)) {
        check(one(other, count + "1").equals("1"), "another connection: row 1 missing");
        check(one(other, count + "2").equals("0"), "another connection: row 2 is there");
      }

      // A server error leaves the connection usable: autocommit, then in a transaction.
      try (PreparedStatement ps = c.prepareStatement("SELECT 1 / ?")) {
        ps.setInt(1, 0);
        String state = expectError("1 / 0", () -> ps.executeQuery().close());
        check("22012".equals(state), "division by zero: SQLState " + state);
        ps.setInt(1, 1);
        try (ResultSet r = ps.executeQuery()) {
          check(r.next() && r.getInt(1) == 1, "after the error: 1 / 1");
        }
      }
      check(one(c, "SELECT 'still ' || 'ok'").equals("still ok"), "after the error");
      String plain = expectError("plain 1 / 0", () -> one(c, "SELECT 1 / 0"));
      check("22012".equals(plain), "plain division by zero: SQLState " + plain);
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement(insert)) {
        ps.setInt(1, 3);
        ps.setString(2, "in a failed transaction");
        ps.executeUpdate();
        String state = expectError("1 / 0 in a transaction", () -> one(c, "SELECT 1 / 0"));
        check("22012".equals(state), "in a transaction: SQLState " + state);
        String aborted = expectError("after an error", () -> one(c, "SELECT 1"));
        check("25P02".equals(aborted), "in a failed transaction: SQLState " + aborted);
        c.rollback();
      }
      c.setAutoCommit(true);
      check(one(c, count + "3").equals("0"), "row 3 of the failed transaction is there");
      check(one(c, "SELECT 6 * 7").equals("42"), "after the failed transaction");

      // Batches: a PreparedStatement's in autocommit and in a transaction, a Statement's.
      try (PreparedStatement ps = c.prepareStatement(insert)) {
        for (int id = 100; id < 120; ++id) {
          ps.setInt(1, id);
          ps.setString(2, "batch " + id);
          ps.addBatch();
        }
        int[] n = ps.executeBatch();
        check(n.length == 20, "batch: " + n.length + " counts");
        for (int x : n) check(x == 1 || x == Statement.SUCCESS_NO_INFO, "batch count " + x);
        c.setAutoCommit(false);
        for (int id = 200; id < 210; ++id) {
          ps.setInt(1, id);
          ps.setString(2, null);
          ps.addBatch();
        }
        check(ps.executeBatch().length == 10, "batch in a transaction");
        c.commit();
        c.setAutoCommit(true);
      }
      try (Statement s = c.createStatement()) {
        s.addBatch("INSERT INTO " + table + " VALUES (300, 'a')");
        s.addBatch("INSERT INTO " + table + " VALUES (301, 'b')");
        s.addBatch("UPDATE " + table + " SET note = 'c' WHERE id >= 300");
        int[] n = s.executeBatch();
        check(n.length == 3 && n[0] == 1 && n[1] == 1 && n[2] == 2,
            "statement batch counts " + java.util.Arrays.toString(n));
      }
      check(one(c, "SELECT count(*) FROM " + table + " WHERE id >= 100").equals("32"),
          "batch rows");
      check(one(c, "SELECT count(*) FROM " + table + " WHERE note IS NULL").equals("10"),
          "batch NULLs");
      // A batch with a failing row: BatchUpdateException, connection usable.
      try (PreparedStatement ps = c.prepareStatement(insert)) {
        ps.setInt(1, 400);
        ps.setString(2, "x");
        ps.addBatch();
        ps.setInt(1, 400);  // duplicate key
        ps.setString(2, "y");
        ps.addBatch();
        String state = expectError("duplicate key batch", () -> ps.executeBatch());
        check("23505".equals(state), "duplicate key in a batch: SQLState " + state);
      }
      check(one(c, "SELECT 'usable'").equals("usable"), "after the failed batch");

      // setQueryTimeout: pgJDBC sends a CancelRequest on a connection of its own (57014).
      try (Statement s = c.createStatement()) {
        s.setQueryTimeout(1);
        long start = System.nanoTime();
        String state = expectError("pg_sleep(30) with a 1 s timeout",
            () -> s.executeQuery("SELECT pg_sleep(30)").close());
        long ms = (System.nanoTime() - start) / 1000000;
        check("57014".equals(state), "query timeout: SQLState " + state);
        check(ms < 10000, "query timeout: cancelled after " + ms + " ms");
      }
      check(one(c, "SELECT 'after cancel'").equals("after cancel"), "after the cancel");

      try (Statement s = c.createStatement()) {
        s.execute("DROP TABLE " + table);
      }
    }

    // A wrong password: 28P01 (invalid_password).
    String state = expectError("wrong password", () -> connect("wrong-" + password).close());
    check("28P01".equals(state), "wrong password: SQLState " + state);
    System.out.println("jdbc ok");
  }

  // Two connections on a pool of one server connection, each running its own statement 6 times.
  // Prints "exec A1 ok", "exec B5 42P05 <message>", ... and last "transcript: A1=ok ... A7=..."
  // (ok, wrong or the SQLState of each execution, in order).
  static void shared() throws Exception {
    StringBuilder transcript = new StringBuilder("transcript:");
    try (Connection a = connect(password); Connection b = connect(password);
         PreparedStatement pa = a.prepareStatement("SELECT ?::int + 1000");
         PreparedStatement pb = b.prepareStatement("SELECT ?::int * 10")) {
      for (int i = 1; i <= 6; ++i) transcript.append(report("A", i, pa, i + 1000));
      for (int i = 1; i <= 6; ++i) transcript.append(report("B", i, pb, i * 10));
      transcript.append(report("A", 7, pa, 7 + 1000));
    }
    System.out.println(transcript);
  }

  static String report(String who, int i, PreparedStatement ps, int want) {
    String outcome;
    try {
      ps.setInt(1, i);
      try (ResultSet r = ps.executeQuery()) {
        r.next();
        int got = r.getInt(1);
        outcome = got == want ? "ok" : "wrong";
        System.out.println("exec " + who + i + " " + outcome + (got == want ? "" : " " + got));
      }
    } catch (SQLException e) {
      outcome = e.getSQLState();
      System.out.println("exec " + who + i + " " + outcome + " "
          + e.getMessage().replace('\n', ' '));
    }
    return " " + who + i + "=" + outcome;
  }

  // Clients at once, each with SQL of its own: wrong answers and errors by SQLState.
  static boolean concurrent(int threads, int iterations) throws Exception {
    AtomicInteger right = new AtomicInteger(), wrong = new AtomicInteger();
    Map<String, Integer> errors = new TreeMap<>();
    Map<String, String> firstMessage = new TreeMap<>();
    List<Thread> all = new ArrayList<>();
    for (int t = 0; t < threads; ++t) {
      final int me = t;
      Thread th = new Thread(() -> {
        try (Connection c = connect(password);
             PreparedStatement ps = c.prepareStatement("SELECT ?::int + " + me + ", " + me)) {
          for (int i = 0; i < iterations; ++i) {
            try {
              boolean tx = i % 3 == 2;
              if (tx) c.setAutoCommit(false);
              ps.setInt(1, i);
              try (ResultSet r = ps.executeQuery()) {
                r.next();
                if (r.getInt(1) == i + me && r.getInt(2) == me) right.incrementAndGet();
                else wrong.incrementAndGet();
              }
              if (tx) {
                c.commit();
                c.setAutoCommit(true);
              }
            } catch (SQLException e) {
              synchronized (errors) {
                errors.merge(e.getSQLState(), 1, Integer::sum);
                firstMessage.putIfAbsent(e.getSQLState(), e.getMessage().replace('\n', ' '));
              }
              try {
                if (!c.getAutoCommit()) {
                  c.rollback();
                  c.setAutoCommit(true);
                }
              } catch (SQLException ignored) {
                // counted above; the connection may be gone
              }
            }
          }
        } catch (SQLException e) {
          synchronized (errors) {
            errors.merge("connect " + e.getSQLState(), 1, Integer::sum);
            firstMessage.putIfAbsent("connect " + e.getSQLState(), e.getMessage());
          }
        }
      });
      all.add(th);
      th.start();
    }
    for (Thread th : all) th.join();
    System.out.println("summary right=" + right + " wrong=" + wrong + " errors=" + errors);
    for (Map.Entry<String, String> e : firstMessage.entrySet()) {
      System.out.println("first " + e.getKey() + ": " + e.getValue());
    }
    return wrong.get() == 0 && errors.isEmpty() && right.get() == threads * iterations;
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 5) {
      System.err.println("usage: ReservoirdJdbcClient session|transaction|shared|concurrent "
          + "PORT DATABASE USER PASSWORD [URL_PARAMETERS] [threads=N,iterations=M]");
      System.exit(2);
    }
    port = args[1];
    database = args[2];
    user = args[3];
    password = args[4];
    parameters = args.length > 5 ? args[5] : "";
    try {
      switch (args[0]) {
        case "session":
          fullCheck(true);
          break;
        case "transaction":
          fullCheck(false);
          break;
        case "shared":
          shared();
          break;
        case "concurrent": {
          int threads = 4, iterations = 50;
          if (args.length > 6) {
            for (String kv : args[6].split(",")) {
              String[] p = kv.split("=");
              if (p[0].equals("threads")) threads = Integer.parseInt(p[1]);
              if (p[0].equals("iterations")) iterations = Integer.parseInt(p[1]);
            }
          }
          if (!concurrent(threads, iterations)) System.exit(1);
          System.out.println("jdbc concurrent ok");
          break;
        }
        default:
          System.err.println("unknown mode " + args[0]);
          System.exit(2);
      }
    } catch (AssertionError e) {
      System.out.println("FAILED: " + e.getMessage());
      System.exit(1);
    } catch (SQLException e) {
      System.out.println("FAILED: SQLState " + e.getSQLState() + ": " + e.getMessage());
      e.printStackTrace(System.out);
      System.exit(1);
    }
  }
}
