// tests/integration/mariadb_nonblocking_test.cpp: the MariaDB driver's non-blocking path
// (start_connect, start_statement over Connector/C's non-blocking API) against a real server,
// driven with poll(2) by tests/support/drive_op.hpp.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/drive_op.hpp"
#include "support/fake_driver.hpp"
#include "support/mariadb_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using test::drive;
using test::DriveResult;
using testing::bytes_of;
using testing::error_of;
using testing::MariaDbTest;
using testing::SilentListener;

class MariaDbNonBlockingTest : public MariaDbTest {
 protected:
  static std::shared_ptr<Driver> driver() { return find_driver("mariadb"); }

  // Connects through start_connect, driven to the end.
  std::unique_ptr<Connection> nb_connect(const std::string& dsn, DriveResult* r = nullptr,
                                         std::chrono::milliseconds timeout = 10s) {
    auto op = driver()->start_connect(Dsn::parse(dsn), timeout);
    EXPECT_NE(op, nullptr);
    const DriveResult got = drive(*op);
    EXPECT_FALSE(got.abandoned);
    if (r != nullptr) *r = got;
    return op->take();
  }

  // Runs one statement through start_statement; the op's result.
  struct Outcome {
    DriveResult drive;
    std::uint64_t affected = 0;
    ResultSet rows;
  };
  static Outcome run(Connection& conn, std::string_view sql, std::vector<Value> params = {},
                     bool want_rows = true) {
    auto op = conn.start_statement(sql, params, want_rows);
    EXPECT_NE(op, nullptr);
    Outcome o;
    o.drive = drive(*op);
    EXPECT_FALSE(o.drive.abandoned) << sql;
    o.affected = op->affected();
    if (want_rows) o.rows = op->take_rows();
    return o;
  }

  static std::int64_t prepares(Connection& conn) {
    const auto rows = conn.query("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'");
    return std::stoll(rows[0][1].as<std::string>());
  }

  static std::int64_t connection_id(Connection& conn) {
    return conn.query("SELECT CONNECTION_ID()")[0][0].as<std::int64_t>();
  }

  void kill(std::int64_t id) {
    auto killer = connect();
    killer->execute("KILL " + std::to_string(id));
    EXPECT_TRUE(testing::eventually(
        [&] {
          return killer
                     ->query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?",
                             id)[0][0]
                     .as<std::int64_t>() == 0;
        },
        5s));
  }
};

// --- Connecting ------------------------------------------------------------------------------

TEST_F(MariaDbNonBlockingTest, ConnectOpGivesAWorkingConnection) {
  DriveResult r;
  auto conn = nb_connect(maria().dsn, &r);
  ASSERT_NE(conn, nullptr);
  EXPECT_GT(r.waits, 0);  // the handshake waited on the socket: it did not block
  EXPECT_EQ(conn->driver_name(), "mariadb");
  // Blocking calls on the same connection, the same options as connect() (charset).
  EXPECT_EQ(conn->query("SELECT 1")[0][0].as<int>(), 1);
  EXPECT_EQ(conn->query("SELECT @@character_set_client")[0][0].as<std::string>(), "utf8mb4");
  conn->ping(2s);
  // And the non-blocking path on it.
  const auto o = run(*conn, "SELECT ? + 1", {Value(41)});
  EXPECT_EQ(o.rows[0][0], Value(42));
  EXPECT_FALSE(conn->broken());
}

TEST_F(MariaDbNonBlockingTest, ConnectOpHonoursCharset) {
  auto conn = nb_connect(
      maria().dsn_for(maria().user, maria().password, maria().database, "charset=latin1"));
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(conn->query("SELECT @@character_set_client")[0][0].as<std::string>(), "latin1");
}

TEST_F(MariaDbNonBlockingTest, WrongPasswordIsAuthFailed) {
  auto op = driver()->start_connect(
      Dsn::parse(maria().dsn_for(maria().user, "wrong-password", maria().database)), 10s);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "28000");
  EXPECT_EQ(e.native_code(), 1045);
  EXPECT_FALSE(e.retryable());
  EXPECT_EQ(std::string(e.what()).find("wrong-password"), std::string::npos) << e.what();
}

TEST_F(MariaDbNonBlockingTest, UnknownDatabaseIsConnectFailedWithNativeCode) {
  // The fixture grants reservoir_app every database named reservoir_*: "unknown database"
  // (1049), not "access denied" (1044).
  auto op = driver()->start_connect(
      Dsn::parse(maria().dsn_for(maria().user, maria().password, "reservoir_no_such_db_nb")), 10s);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_EQ(e.native_code(), 1049);
  EXPECT_EQ(e.sqlstate(), "3D000");
  EXPECT_FALSE(e.retryable());
}

TEST_F(MariaDbNonBlockingTest, UnknownParameterIsInvalidArgument) {
  const Error e = error_of([&] {
    driver()->start_connect(
        Dsn::parse(maria().dsn_for(maria().user, maria().password, maria().database, "x=1")), 1s);
  });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
}

TEST_F(MariaDbNonBlockingTest, ConnectTimeoutAgainstASilentServer) {
  SilentListener silent;
  const std::string dsn = "mariadb://u:pw@127.0.0.1:" + std::to_string(silent.port()) + "/db";
  auto start = std::chrono::steady_clock::now();
  auto op = driver()->start_connect(Dsn::parse(dsn), 700ms);
  DriveResult r;
  Error e = error_of([&] { r = drive(*op, 10s); });
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_TRUE(e.retryable());
  EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos) << e.what();
  EXPECT_GE(took, 650ms);
  EXPECT_LT(took, 2500ms);

  // The DSN's connect_timeout (seconds) bounds a connect without a caller timeout.
  start = std::chrono::steady_clock::now();
  op = driver()->start_connect(Dsn::parse(dsn + "?connect_timeout=2"), 0ms);
  e = error_of([&] { drive(*op, 10s); });
  took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_GE(took, 1900ms);
  EXPECT_LT(took, 4s);
}

TEST_F(MariaDbNonBlockingTest, AbandonedConnectReturnsAtOnce) {
  SilentListener silent;
  const std::string dsn = "mariadb://u:pw@127.0.0.1:" + std::to_string(silent.port()) + "/db";
  auto op = driver()->start_connect(Dsn::parse(dsn), 10s);
  const auto start = std::chrono::steady_clock::now();
  const DriveResult r = drive(*op, 50ms);
  EXPECT_TRUE(r.abandoned);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(op->take(), nullptr);
}

// --- Statements ------------------------------------------------------------------------------

TEST_F(MariaDbNonBlockingTest, TypedResults) {
  auto conn = connect();  // a blocking connect: start_statement works on it too
  const auto o = run(*conn,
                     "SELECT CAST(9223372036854775807 AS SIGNED), CAST(-9223372036854775807 - 1 "
                     "AS SIGNED), CAST(18446744073709551615 AS UNSIGNED), 'héllo wörld ✓ 🎉', "
                     "NULL, CAST(2.5 AS DOUBLE), CAST(X'00FF10' AS BINARY(3)), 7");
  ASSERT_EQ(o.rows.size(), 1u);
  const Row& row = o.rows[0];
  EXPECT_EQ(row[0], Value(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(row[1], Value(std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(row[2].as<std::string>(), "18446744073709551615");
  EXPECT_EQ(row[3].as<std::string>(), "héllo wörld ✓ 🎉");
  EXPECT_TRUE(row[4].is_null());
  EXPECT_DOUBLE_EQ(row[5].as<double>(), 2.5);
  const Bytes blob{std::byte{0x00}, std::byte{0xff}, std::byte{0x10}};
  EXPECT_EQ(row[6].as<Bytes>(), blob);
  EXPECT_EQ(row[7], Value(7));
  // A quick statement may find every answer already there (the server can answer before the
  // client reads); one that takes the server a while must have waited on the socket.
  const auto slow = run(*conn, "SELECT SLEEP(0.05), 'done'");
  EXPECT_GT(slow.drive.waits, 0);
  EXPECT_EQ(slow.rows[0][1].as<std::string>(), "done");
}

TEST_F(MariaDbNonBlockingTest, ParametersAndAffectedRows) {
  auto conn = nb_connect(maria().dsn);
  const std::string t = unique_name();
  run(*conn, "CREATE TEMPORARY TABLE " + t +
                 " (id INT PRIMARY KEY, name VARCHAR(50), price DOUBLE, data BLOB, note TEXT)");
  const Bytes blob = bytes_of(std::string("a\0b", 3));
  for (int i = 1; i <= 3; ++i) {
    const auto o = run(
        *conn, "INSERT INTO " + t + " VALUES (?, ?, ?, ?, ?)",
        {Value(i), Value("ñame" + std::to_string(i)), Value(i * 1.5), Value(blob), Value()}, false);
    EXPECT_EQ(o.affected, 1u);
  }
  const auto upd =
      run(*conn, "UPDATE " + t + " SET price = price * 2 WHERE id >= ?", {Value(2)}, false);
  EXPECT_EQ(upd.affected, 2u);
  const auto sel =
      run(*conn, "SELECT id, name, price, data, note FROM " + t + " WHERE id = ?", {Value(3)});
  ASSERT_EQ(sel.rows.size(), 1u);
  EXPECT_EQ(sel.rows.columns()[1], "name");
  EXPECT_EQ(sel.rows[0][1].as<std::string>(), "ñame3");
  EXPECT_DOUBLE_EQ(sel.rows[0][2].as<double>(), 9.0);
  EXPECT_EQ(sel.rows[0][3].as<Bytes>(), blob);
  EXPECT_TRUE(sel.rows[0][4].is_null());
  // The blocking path sees the same data (same session).
  EXPECT_EQ(conn->query("SELECT COUNT(*) FROM " + t)[0][0], Value(3));
}

TEST_F(MariaDbNonBlockingTest, TransactionStateIsTracked) {
  auto conn = connect();
  const std::string t = unique_name();
  conn->execute("CREATE TEMPORARY TABLE " + t + " (x INT)");
  run(*conn, "START TRANSACTION", {}, false);
  EXPECT_TRUE(conn->in_transaction());
  run(*conn, "INSERT INTO " + t + " VALUES (1)", {}, false);
  conn->rollback();
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(run(*conn, "SELECT COUNT(*) FROM " + t).rows[0][0], Value(0));
}

TEST_F(MariaDbNonBlockingTest, SqlErrorIsQueryFailedAndConnectionStaysUsable) {
  auto conn = connect();
  auto op = conn->start_statement("SELEC 1", {}, true);
  Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "42000");
  EXPECT_EQ(e.native_code(), 1064);
  EXPECT_FALSE(conn->broken());

  op = conn->start_statement("SELECT * FROM no_such_table_nb", {}, true);
  e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed);
  EXPECT_EQ(e.sqlstate(), "42S02");
  EXPECT_EQ(e.native_code(), 1146);

  // An error at execution time (a duplicate key) from a cached statement.
  const std::string t = unique_name();
  conn->execute("CREATE TEMPORARY TABLE " + t + " (id INT PRIMARY KEY)");
  run(*conn, "INSERT INTO " + t + " VALUES (?)", {Value(1)}, false);
  op = conn->start_statement("INSERT INTO " + t + " VALUES (?)", std::vector<Value>{Value(1)},
                             false);
  e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed);
  EXPECT_EQ(e.sqlstate(), "23000");
  EXPECT_EQ(e.native_code(), 1062);
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(run(*conn, "SELECT 5").rows[0][0], Value(5));
  EXPECT_EQ(conn->query("SELECT 6")[0][0], Value(6));
}

TEST_F(MariaDbNonBlockingTest, WrongParameterCountIsInvalidArgument) {
  auto conn = connect();
  auto op = conn->start_statement("SELECT ?, ?", std::vector<Value>{Value(1)}, true);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(run(*conn, "SELECT 1").rows[0][0], Value(1));
}

TEST_F(MariaDbNonBlockingTest, SecondRunUsesTheStatementCache) {
  auto conn = connect();
  const std::string sql = "SELECT ? * 2 AS " + unique_name("c");
  const std::int64_t before = prepares(*conn);
  EXPECT_EQ(run(*conn, sql, {Value(2)}).rows[0][0], Value(4));
  const std::int64_t after_first = prepares(*conn);
  EXPECT_EQ(after_first, before + 1);  // the statement (the SHOW was cached by the first call)
  EXPECT_EQ(run(*conn, sql, {Value(3)}).rows[0][0], Value(6));
  EXPECT_EQ(conn->query(sql, 4)[0][0], Value(8));  // the blocking path shares the cache
  EXPECT_EQ(prepares(*conn), after_first);         // nothing prepared again (the SHOW cached)
}

TEST_F(MariaDbNonBlockingTest, WithoutCacheEveryRunPrepares) {
  auto conn = connect(
      maria().dsn_for(maria().user, maria().password, maria().database, "stmt_cache_size=0"));
  const std::int64_t before = prepares(*conn);
  run(*conn, "SELECT 1");
  run(*conn, "SELECT 1");
  EXPECT_EQ(prepares(*conn), before + 3);  // twice SELECT 1, once the first SHOW
}

TEST_F(MariaDbNonBlockingTest, SchemaChangeUnderACachedStatementAsInTheBlockingPath) {
  auto conn = connect();
  conn->execute("CREATE TEMPORARY TABLE shape(a INT)");
  conn->execute("INSERT INTO shape VALUES (1)");
  EXPECT_EQ(run(*conn, "SELECT * FROM shape").rows[0].size(), 1u);  // now cached
  conn->execute("ALTER TABLE shape ADD COLUMN b VARCHAR(5) DEFAULT 'x'");
  // A read-only statement outside a transaction runs again, freshly prepared.
  const auto o = run(*conn, "SELECT * FROM shape");
  ASSERT_EQ(o.rows[0].size(), 2u);
  EXPECT_EQ(o.rows[0][1], Value("x"));

  conn->execute("CREATE TEMPORARY TABLE ret(id INT AUTO_INCREMENT PRIMARY KEY, a INT)");
  const std::string insert = "INSERT INTO ret(a) VALUES (?) RETURNING *";
  EXPECT_EQ(run(*conn, insert, {Value(1)}).rows[0].size(), 2u);
  conn->execute("ALTER TABLE ret ADD COLUMN b INT DEFAULT 0");
  // A writing one is not sent twice: the caller hears of it.
  auto op = conn->start_statement(insert, std::vector<Value>{Value(2)}, true);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
  EXPECT_EQ(e.native_code(), 2057);
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(conn->query("SELECT COUNT(*) FROM ret")[0][0], Value(2));
  EXPECT_EQ(run(*conn, insert, {Value(3)}).rows[0].size(), 3u);
}

TEST_F(MariaDbNonBlockingTest, UnpreparableStatementRunsAsText) {
  auto conn = connect();
  // HELP is refused by the prepared protocol (ER_UNSUPPORTED_PS): it runs through the text
  // protocol, as in the blocking path.
  const auto o = run(*conn, "HELP 'no_such_help_topic_nb'");
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(run(*conn, "SELECT 2").rows[0][0], Value(2));
  EXPECT_EQ(o.rows.columns(), conn->query("HELP 'no_such_help_topic_nb'").columns());
}

TEST_F(MariaDbNonBlockingTest, ProcedureResultsAreDrained) {
  auto conn = connect();
  const std::string p = unique_name("p");
  conn->execute("CREATE PROCEDURE " + p + "() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END");
  const auto o = run(*conn, "CALL " + p + "()");
  ASSERT_EQ(o.rows.size(), 1u);
  EXPECT_EQ(o.rows[0][0], Value(1));
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(run(*conn, "SELECT 9").rows[0][0], Value(9));
  conn->execute("DROP PROCEDURE " + p);
}

TEST_F(MariaDbNonBlockingTest, LargeResultNeedsManyReads) {
  auto conn = connect();
  conn->execute("SET SESSION max_recursive_iterations = 1000000");
  const auto o = run(*conn,
                     "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < "
                     "100000) SELECT n, CONCAT('row-', n) FROM seq");
  ASSERT_EQ(o.rows.size(), 100000u);
  EXPECT_EQ(o.rows[0][0], Value(1));
  EXPECT_EQ(o.rows[99999][0], Value(100000));
  EXPECT_EQ(o.rows[99999][1].as<std::string>(), "row-100000");
  // The server sends faster than the rows are decoded, so after the first wait the socket
  // rarely runs dry; that it waited at all shows the reads do not block.
  EXPECT_GT(o.drive.waits, 0);
}

TEST_F(MariaDbNonBlockingTest, OneMegabyteParameter) {
  auto conn = connect();
  std::string big(1024 * 1024, 'x');
  for (std::size_t i = 0; i < big.size(); i += 997) big[i] = static_cast<char>('a' + i % 26);
  const auto o =
      run(*conn, "SELECT LENGTH(?), MD5(?) = MD5(?)", {Value(big), Value(big), Value(big)});
  // No wait count asserted: loopback buffers can take the 3 MB at once and the server can answer
  // before the first look (seen under load); the large-result and SLEEP tests show the waits.
  EXPECT_EQ(o.rows[0][0], Value(static_cast<std::int64_t>(big.size())));
  EXPECT_EQ(o.rows[0][1], Value(1));
  const auto echo = run(*conn, "SELECT ?", {Value(bytes_of(big))});
  EXPECT_EQ(echo.rows[0][0].as<Bytes>(), bytes_of(big));
}

TEST_F(MariaDbNonBlockingTest, KilledConnectionIsConnectionLostAndBroken) {
  auto conn = nb_connect(maria().dsn);
  EXPECT_EQ(run(*conn, "SELECT ?", {Value(1)}).rows[0][0], Value(1));  // cached
  kill(connection_id(*conn));
  auto op = conn->start_statement("SELECT ?", std::vector<Value>{Value(1)}, true);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
  EXPECT_TRUE(conn->broken());
  op = conn->start_statement("SELECT 1", {}, true);
  EXPECT_EQ(error_of([&] { drive(*op); }).code(), ErrorCode::connection_lost);
  EXPECT_EQ(error_of([&] { conn->query("SELECT 1"); }).code(), ErrorCode::connection_lost);
}

TEST_F(MariaDbNonBlockingTest, AbandonMidQueryNeverHangs) {
  auto conn = connect();
  const auto start = std::chrono::steady_clock::now();
  auto op = conn->start_statement("SELECT SLEEP(10)", {}, true);
  const DriveResult r = drive(*op, 50ms);
  EXPECT_TRUE(r.abandoned);
  EXPECT_GT(r.waits, 0);
  op->abandon();  // harmless twice
  op.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  // Broken (the pool discards it) or usable; here: broken, and failing fast.
  EXPECT_TRUE(conn->broken());
  EXPECT_EQ(error_of([&] { conn->query("SELECT 1"); }).code(), ErrorCode::connection_lost);
  conn.reset();  // closing it does not wait for the sleep either
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(MariaDbNonBlockingTest, AbandonBeforeStartLeavesConnectionUsable) {
  auto conn = connect();
  auto op = conn->start_statement("SELECT 1", {}, true);
  op->abandon();
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(conn->query("SELECT 3")[0][0], Value(3));
}

TEST_F(MariaDbNonBlockingTest, AbandonAfterDoneIsHarmless) {
  auto conn = connect();
  auto op = conn->start_statement("SELECT 4", {}, true);
  drive(*op);
  op->abandon();
  EXPECT_EQ(op->take_rows()[0][0], Value(4));
  EXPECT_FALSE(conn->broken());
}

TEST_F(MariaDbNonBlockingTest, PoolDiscardsConnectionAfterAbandon) {
  PoolOptions o;
  o.dsn = maria().dsn;
  o.min = 0;
  o.max = 1;
  auto pool = Pool::create(o);
  std::int64_t first_id = 0;
  {
    Lease c = pool->acquire();
    first_id = c->query("SELECT CONNECTION_ID()")[0][0].as<std::int64_t>();
    auto op = c->start_statement("SELECT SLEEP(10)", {}, true);
    EXPECT_TRUE(drive(*op, 30ms).abandoned);
  }
  {
    Lease c = pool->acquire();
    EXPECT_NE(c->query("SELECT CONNECTION_ID()")[0][0].as<std::int64_t>(), first_id);
  }
  pool->close();
}

}  // namespace
}  // namespace reservoir
