// tests/integration/mariadb_driver_test.cpp: the MariaDB driver against a real server (the fixture
// in tests/support/mariadb_fixture.hpp): types both ways, parameters, the prepared-statement
// cache, transactions, reset, ping, error mapping, timeouts and DSN forms.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"
#include "support/mariadb_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using testing::bytes_of;
using testing::error_of;
using testing::MariaDbTest;
using testing::SilentListener;

class MariaDbDriverTest : public MariaDbTest {
 protected:
  std::string dsn_with(std::string_view params) const {
    return maria().dsn_for(maria().user, maria().password, maria().database, params);
  }

  // Statements this session has prepared so far (the query itself included when it was not
  // cached: it is prepared before it runs).
  static std::int64_t prepares(Connection& conn) {
    const auto rows = conn.query("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'");
    return std::stoll(rows[0][1].as<std::string>());
  }

  static std::int64_t connection_id(Connection& conn) {
    return conn.query("SELECT CONNECTION_ID()")[0][0].as<std::int64_t>();
  }

  // Ends session id from another connection and waits until the server has closed it.
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

// --- Connecting and DSN forms ------------------------------------------------------------

TEST_F(MariaDbDriverTest, RegisteredForMariadbAndMysqlSchemes) {
  ASSERT_NE(find_driver("mariadb"), nullptr);
  auto conn = connect();
  EXPECT_EQ(conn->driver_name(), "mariadb");
  EXPECT_NE(conn->native_handle(), nullptr);
  std::string mysql = maria().dsn;
  mysql.replace(0, std::string("mariadb").size(), "mysql");
  auto other = connect(mysql);
  EXPECT_EQ(other->query("SELECT 1")[0][0].as<int>(), 1);
}

TEST_F(MariaDbDriverTest, CharsetDefaultsToUtf8mb4) {
  auto conn = connect();
  EXPECT_EQ(conn->query("SELECT @@character_set_client")[0][0].as<std::string>(), "utf8mb4");
  auto latin = connect(dsn_with("charset=latin1"));
  EXPECT_EQ(latin->query("SELECT @@character_set_client")[0][0].as<std::string>(), "latin1");
}

TEST_F(MariaDbDriverTest, UnknownOrMalformedParameterIsInvalidArgumentNamingIt) {
  Error e = error_of([&] { connect(dsn_with("sslmode=require")); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(e.what()).find("sslmode"), std::string::npos) << e.what();
  EXPECT_EQ(std::string(e.what()).find(maria().password), std::string::npos) << e.what();
  e = error_of([&] { connect(dsn_with("stmt_cache_size=many")); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  e = error_of([&] { connect(dsn_with("ssl_mode=sometimes")); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
}

TEST_F(MariaDbDriverTest, RequiredTlsAgainstAServerWithoutTlsFailsInsteadOfPlaintext) {
  // The fixture's server offers no TLS. Connector/C 3.3 would go on in plaintext with
  // MYSQL_OPT_SSL_ENFORCE alone; the driver checks what was negotiated.
  for (const char* mode : {"ssl_mode=required", "ssl_mode=REQUIRED", "ssl_mode=verify_ca",
                           "ssl_mode=verify_identity"}) {
    const Error e = error_of([&] { connect(dsn_with(mode)); });
    EXPECT_EQ(e.code(), ErrorCode::connect_failed) << mode << ": " << e.what();
    EXPECT_EQ(std::string(e.what()).find(maria().password), std::string::npos) << e.what();
  }
  const Error e = error_of([&] { connect(dsn_with("ssl_mode=required")); });
  EXPECT_NE(std::string(e.what()).find("TLS was required"), std::string::npos) << e.what();
  // Without a demand for TLS the plaintext server is fine.
  EXPECT_EQ(connect(dsn_with("ssl_mode=disabled"))->query("SELECT 1")[0][0], Value(1));
  EXPECT_EQ(connect(dsn_with("ssl_mode=preferred"))->query("SELECT 1")[0][0], Value(1));
}

// --- Types both ways ---------------------------------------------------------------------

TEST_F(MariaDbDriverTest, NullsBothWays) {
  auto conn = connect();
  const auto row = conn->query("SELECT ?, NULL, CAST(NULL AS SIGNED)", nullptr)[0];
  EXPECT_TRUE(row[0].is_null());
  EXPECT_TRUE(row[1].is_null());
  EXPECT_TRUE(row[2].is_null());
  EXPECT_EQ(row[0].as<std::optional<int>>(), std::nullopt);
}

TEST_F(MariaDbDriverTest, IntegersAtTheirBounds) {
  auto conn = connect();
  const auto lo = std::numeric_limits<std::int64_t>::min();
  const auto hi = std::numeric_limits<std::int64_t>::max();
  const auto row = conn->query("SELECT ?, ?, ?, ? + 1", lo, hi, 0, 41)[0];
  EXPECT_EQ(row[0], Value(lo));
  EXPECT_EQ(row[1], Value(hi));
  EXPECT_EQ(row[2], Value(0));
  EXPECT_EQ(row[3], Value(42));

  conn->execute(
      "CREATE TEMPORARY TABLE ints(t TINYINT, s SMALLINT, m MEDIUMINT, i INT, b BIGINT, "
      "u BIGINT UNSIGNED, ut TINYINT UNSIGNED, y YEAR, flag BOOLEAN)");
  conn->execute("INSERT INTO ints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", -128, -32768, -8388608,
                -2147483648LL, lo, 42, 255, 2024, true);
  conn->execute(
      "INSERT INTO ints VALUES (127, 32767, 8388607, 2147483647, ?, "
      "18446744073709551615, 0, 1999, FALSE)",
      hi);
  const auto rows = conn->query("SELECT * FROM ints ORDER BY b");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0], Value(-128));
  EXPECT_EQ(rows[0][1], Value(-32768));
  EXPECT_EQ(rows[0][2], Value(-8388608));
  EXPECT_EQ(rows[0][3], Value(-2147483648LL));
  EXPECT_EQ(rows[0][4], Value(lo));
  EXPECT_EQ(rows[0][5], Value(42));
  EXPECT_EQ(rows[0][6], Value(255));
  EXPECT_EQ(rows[0][7], Value(2024));
  EXPECT_TRUE(rows[0][8].as<bool>());
  EXPECT_EQ(rows[1][3], Value(2147483647));
  EXPECT_EQ(rows[1][4], Value(hi));
  // Beyond int64: exact, as text.
  EXPECT_EQ(rows[1][5], Value("18446744073709551615"));
  EXPECT_FALSE(rows[1][8].as<bool>());
}

TEST_F(MariaDbDriverTest, DoublesBothWays) {
  auto conn = connect();
  const double values[] = {0.0, -1.5, 3.141592653589793, 1e308, -2.2250738585072014e-308};
  for (const double d : values) {
    EXPECT_EQ(conn->query("SELECT ?", d)[0][0], Value(d)) << d;
  }
  conn->execute("CREATE TEMPORARY TABLE reals(f FLOAT, d DOUBLE)");
  conn->execute("INSERT INTO reals VALUES (?, ?)", 1.5, 0.1);
  const auto row = conn->query("SELECT f, d FROM reals")[0];
  EXPECT_EQ(row[0].type(), ValueType::real);
  EXPECT_EQ(row[0].as<double>(), 1.5);
  EXPECT_EQ(row[1], Value(0.1));
}

TEST_F(MariaDbDriverTest, UnicodeTextBothWays) {
  auto conn = connect();
  const std::string text = "Grüße, 世界! 🚀 ñ";
  EXPECT_EQ(conn->query("SELECT ?", text)[0][0], Value(text));
  conn->execute("CREATE TEMPORARY TABLE texts(v VARCHAR(100), t TEXT, c CHAR(3))");
  conn->execute("INSERT INTO texts VALUES (?, ?, ?)", text, text + text, "abc");
  const auto row = conn->query("SELECT v, t, c, CHAR_LENGTH(v) FROM texts")[0];
  EXPECT_EQ(row[0], Value(text));
  EXPECT_EQ(row[1], Value(text + text));
  EXPECT_EQ(row[2], Value("abc"));
  EXPECT_EQ(row[3], Value(14));
  EXPECT_EQ(conn->query("SELECT ''")[0][0], Value(""));
}

TEST_F(MariaDbDriverTest, BinaryWithZeroBytesBothWays) {
  auto conn = connect();
  Bytes blob = bytes_of(std::string_view("\0\x01\xff\0abc\0", 8));
  blob.resize(70'000, std::byte{0x5a});  // more than a BLOB's 64 KiB needs MEDIUMBLOB
  conn->execute("CREATE TEMPORARY TABLE blobs(id INT, vb VARBINARY(16), b MEDIUMBLOB)");
  conn->execute("INSERT INTO blobs VALUES (1, ?, ?)", bytes_of(std::string_view("\0x\0", 3)), blob);
  conn->execute("INSERT INTO blobs VALUES (2, ?, ?)", Bytes{}, nullptr);
  const auto rows = conn->query("SELECT vb, b, LENGTH(b) FROM blobs ORDER BY id");
  EXPECT_EQ(rows[0][0], Value(bytes_of(std::string_view("\0x\0", 3))));
  EXPECT_EQ(rows[0][1], Value(blob));
  EXPECT_EQ(rows[0][2], Value(70'000));
  EXPECT_EQ(rows[1][0], Value(Bytes{}));
  EXPECT_TRUE(rows[1][1].is_null());
  EXPECT_EQ(conn->query("SELECT ?", blob)[0][0], Value(blob));
}

TEST_F(MariaDbDriverTest, OtherTypesComeBackAsText) {
  auto conn = connect();
  conn->execute(
      "CREATE TEMPORARY TABLE others(d DECIMAL(10,2), day DATE, ts DATETIME, tm TIME, "
      "j JSON, e ENUM('a','b'))");
  conn->execute("INSERT INTO others VALUES (?, ?, ?, ?, ?, ?)", "12345.67", "2024-02-29",
                "2024-02-29 13:14:15", "01:02:03", R"({"k": [1, 2]})", "b");
  const auto row = conn->query("SELECT * FROM others")[0];
  EXPECT_EQ(row[0], Value("12345.67"));
  EXPECT_EQ(row[1], Value("2024-02-29"));
  EXPECT_EQ(row[2], Value("2024-02-29 13:14:15"));
  EXPECT_EQ(row[3], Value("01:02:03"));
  EXPECT_EQ(row[4], Value(R"({"k": [1, 2]})"));
  EXPECT_EQ(row[5], Value("b"));
}

TEST_F(MariaDbDriverTest, ColumnNamesAndAffectedRows) {
  auto conn = connect();
  conn->execute("CREATE TEMPORARY TABLE items(id INT PRIMARY KEY, name VARCHAR(20))");
  EXPECT_EQ(conn->execute("INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')"), 3u);
  EXPECT_EQ(conn->execute("UPDATE items SET name = ? WHERE id >= ?", "z", 2), 2u);
  const auto rows = conn->query("SELECT id, name AS label FROM items ORDER BY id");
  EXPECT_EQ(rows.columns(), (std::vector<std::string>{"id", "label"}));
  EXPECT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2][rows.column_index("label")], Value("z"));
  EXPECT_EQ(conn->execute("DELETE FROM items"), 3u);
}

TEST_F(MariaDbDriverTest, ParameterCountMismatchIsInvalidArgumentAndHarmless) {
  auto conn = connect();
  EXPECT_EQ(error_of([&] { conn->query("SELECT ?"); }).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(error_of([&] { conn->query("SELECT ?, ?", 1); }).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(error_of([&] { conn->query("SELECT 1", 1); }).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(conn->query("SELECT ?, ?", 1, 2)[0][1], Value(2));
  // A question mark in a string literal is not a placeholder.
  EXPECT_EQ(conn->query("SELECT '?', ?", 5)[0][0], Value("?"));
}

TEST_F(MariaDbDriverTest, StatementsThePreparedProtocolRefusesRunAsText) {
  auto conn = connect();
  // Not preparable in MariaDB: runs through the text protocol, typed the same way.
  conn->execute("CREATE TEMPORARY TABLE cached(x INT)");
  EXPECT_NO_THROW(conn->execute("HELP 'nothing_4711'"));
  EXPECT_EQ(conn->query("SELECT 1")[0][0], Value(1));
}

// --- Statement cache -----------------------------------------------------------------------

TEST_F(MariaDbDriverTest, StatementCacheKeepsRecentStatements) {
  auto conn = connect();  // default size 20
  prepares(*conn);        // the counter query itself is now cached
  const auto before = prepares(*conn);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(conn->query("SELECT ? + " + std::to_string(i), 1)[0][0], Value(1 + i));
    }
  }
  EXPECT_EQ(prepares(*conn) - before, 5);
}

TEST_F(MariaDbDriverTest, MoreStatementsThanTheCacheStayCorrect) {
  auto conn = connect(dsn_with("stmt_cache_size=3"));
  const auto before = prepares(*conn);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 6; ++i) {  // cycling through 6 with room for 3: every one is evicted
      EXPECT_EQ(conn->query("SELECT ? * " + std::to_string(i), 2)[0][0], Value(2 * i));
    }
  }
  // 18 statements plus the counter query, none of them still cached.
  EXPECT_EQ(prepares(*conn) - before, 19);
}

TEST_F(MariaDbDriverTest, StatementCacheSizeZeroPreparesEveryTime) {
  auto conn = connect(dsn_with("stmt_cache_size=0"));
  const auto before = prepares(*conn);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(conn->query("SELECT ?", i)[0][0], Value(i));
  EXPECT_EQ(prepares(*conn) - before, 5);
  // And nothing lingers on the server: statements are closed after use.
  EXPECT_EQ(conn->query("SHOW SESSION STATUS LIKE 'Com_stmt_close'")[0][1].as<std::string>(), "6");
}

TEST_F(MariaDbDriverTest, CachedStatementSurvivesSchemaChange) {
  auto conn = connect();
  conn->execute("CREATE TEMPORARY TABLE shape(a INT)");
  conn->execute("INSERT INTO shape VALUES (1)");
  EXPECT_EQ(conn->query("SELECT * FROM shape")[0].size(), 1u);
  conn->execute("ALTER TABLE shape ADD COLUMN b VARCHAR(5) DEFAULT 'x'");
  const auto row = conn->query("SELECT * FROM shape")[0];
  ASSERT_EQ(row.size(), 2u);
  EXPECT_EQ(row[1], Value("x"));
  EXPECT_EQ(conn->query("SELECT 1")[0][0], Value(1));
  // Inside a transaction the statement is not run twice: the caller hears of it.
  conn->begin();
  conn->execute("ALTER TABLE shape ADD COLUMN c INT DEFAULT 7");  // commits implicitly
  conn->begin();
  const Error e = error_of([&] { conn->query("SELECT * FROM shape"); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(conn->query("SELECT * FROM shape")[0].size(), 3u);
  conn->rollback();
}

TEST_F(MariaDbDriverTest, WritingStatementIsNotRunTwiceAfterSchemaChange) {
  auto conn = connect();
  conn->execute("CREATE TEMPORARY TABLE ret(id INT AUTO_INCREMENT PRIMARY KEY, a INT)");
  const std::string insert = "INSERT INTO ret(a) VALUES (?) RETURNING *";
  EXPECT_EQ(conn->query(insert, 1)[0].size(), 2u);  // now cached
  conn->execute("ALTER TABLE ret ADD COLUMN b INT DEFAULT 0");
  // The server executes the cached statement once; its result shape changed, so the caller is
  // told instead of the INSERT being sent a second time.
  const Error e = error_of([&] { conn->query(insert, 2); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
  EXPECT_EQ(e.native_code(), 2057) << e.what();
  EXPECT_NE(std::string(e.what()).find("executed"), std::string::npos) << e.what();
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(conn->query("SELECT COUNT(*) FROM ret WHERE a = 2")[0][0], Value(1));
  EXPECT_EQ(conn->query("SELECT COUNT(*) FROM ret")[0][0], Value(2));
  // The next call prepares afresh.
  EXPECT_EQ(conn->query(insert, 3)[0].size(), 3u);
  EXPECT_EQ(conn->query("SELECT COUNT(*) FROM ret")[0][0], Value(3));
}

// --- Stored procedures -------------------------------------------------------------------

TEST_F(MariaDbDriverTest, CallOfAProcedureWithAResultSetLeavesTheConnectionUsable) {
  auto conn = connect();
  const std::string one = unique_name();
  const std::string two = unique_name();
  const std::string none = unique_name();
  conn->execute("CREATE PROCEDURE " + one + "() SELECT 1 AS x");
  conn->execute("CREATE PROCEDURE " + two + "() BEGIN SELECT 1 AS x; SELECT 2, 3; END");
  conn->execute("CREATE TEMPORARY TABLE called(x INT)");
  conn->execute("CREATE PROCEDURE " + none + "() INSERT INTO called VALUES (5)");
  for (int round = 0; round < 2; ++round) {  // the second round uses the cached statements
    EXPECT_NO_THROW(conn->execute("CALL " + one + "()"));
    EXPECT_EQ(conn->query("SELECT 41 + 1")[0][0], Value(42));
    const auto rows = conn->query("CALL " + one + "()");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0][0], Value(1));
    EXPECT_EQ(conn->query("SELECT 2")[0][0], Value(2));
    // Only the first of several result sets is returned; the rest is read and dropped.
    const auto first = conn->query("CALL " + two + "()");
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].size(), 1u);
    EXPECT_NO_THROW(conn->execute("CALL " + two + "()"));
    EXPECT_NO_THROW(conn->execute("CALL " + none + "()"));
    EXPECT_EQ(conn->query("SELECT 3")[0][0], Value(3));
    conn->begin();
    EXPECT_EQ(conn->query("CALL " + one + "()")[0][0], Value(1));
    conn->commit();
    EXPECT_FALSE(conn->broken());
  }
  EXPECT_EQ(conn->query("SELECT COUNT(*) FROM called")[0][0], Value(2));
  conn->ping(1s);
  conn->reset();
  EXPECT_EQ(conn->query("SELECT 1")[0][0], Value(1));
  for (const auto& p : {one, two, none}) conn->execute("DROP PROCEDURE " + p);
}

// --- Transactions ------------------------------------------------------------------------

TEST_F(MariaDbDriverTest, CommitIsVisibleRollbackIsNot) {
  auto conn = connect();
  const std::string table = unique_name();
  conn->execute("CREATE TABLE " + table + "(x INT) ENGINE=InnoDB");
  EXPECT_FALSE(conn->in_transaction());
  conn->begin();
  EXPECT_TRUE(conn->in_transaction());
  conn->execute("INSERT INTO " + table + " VALUES (?)", 1);
  conn->rollback();
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(conn->query("SELECT COUNT(*) FROM " + table)[0][0], Value(0));
  {
    auto tx = conn->transaction();
    conn->execute("INSERT INTO " + table + " VALUES (?)", 2);
    tx.commit();
  }
  EXPECT_FALSE(conn->in_transaction());
  {
    auto tx = conn->transaction();
    conn->execute("INSERT INTO " + table + " VALUES (?)", 3);
  }  // rolled back
  auto other = connect();
  EXPECT_EQ(other->query("SELECT x FROM " + table)[0][0], Value(2));
  EXPECT_EQ(other->query("SELECT COUNT(*) FROM " + table)[0][0], Value(1));
  // A transaction begun through execute() is seen too.
  conn->execute("BEGIN");
  EXPECT_TRUE(conn->in_transaction());
  conn->execute("ROLLBACK");
  EXPECT_FALSE(conn->in_transaction());
  conn->rollback();  // a no-op outside a transaction
  conn->execute("DROP TABLE " + table);
}

// --- Reset -------------------------------------------------------------------------------

TEST_F(MariaDbDriverTest, ResetClearsSessionState) {
  auto conn = connect();
  const auto id = connection_id(*conn);
  conn->execute("SET @x = 1");
  conn->execute("SET SESSION sql_mode = 'ANSI_QUOTES'");
  conn->execute("CREATE TEMPORARY TABLE scratch(x INT)");
  conn->execute("INSERT INTO scratch VALUES (?)", 1);
  EXPECT_EQ(conn->query("SELECT @x")[0][0], Value(1));
  conn->reset();
  EXPECT_EQ(connection_id(*conn), id);  // the same session, reset
  EXPECT_TRUE(conn->query("SELECT @x")[0][0].is_null());
  EXPECT_EQ(conn->query("SELECT @@SESSION.sql_mode = @@GLOBAL.sql_mode")[0][0], Value(1));
  const Error e = error_of([&] { conn->query("SELECT * FROM scratch"); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed);
  EXPECT_EQ(e.native_code(), 1146);  // ER_NO_SUCH_TABLE
  // Unicode still round-trips: the session character set survived the reset.
  EXPECT_EQ(conn->query("SELECT ?", "é🚀")[0][0], Value("é🚀"));
}

TEST_F(MariaDbDriverTest, ResetRollsBackAnOpenTransaction) {
  auto conn = connect();
  const std::string table = unique_name();
  conn->execute("CREATE TABLE " + table + "(x INT) ENGINE=InnoDB");
  conn->begin();
  conn->execute("INSERT INTO " + table + " VALUES (1)");
  conn->reset();
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(conn->query("SELECT COUNT(*) FROM " + table)[0][0], Value(0));
  conn->execute("DROP TABLE " + table);
}

// --- Ping and lost connections -----------------------------------------------------------

TEST_F(MariaDbDriverTest, PingIsARoundTrip) {
  auto conn = connect();
  conn->ping();
  conn->ping(100ms);
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(conn->query("SELECT 1")[0][0], Value(1));  // still usable after the async ping
}

TEST_F(MariaDbDriverTest, PingFindsAKilledConnection) {
  auto conn = connect();
  kill(connection_id(*conn));
  const Error e = error_of([&] { conn->ping(2s); });
  EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
  EXPECT_TRUE(conn->broken());
  EXPECT_EQ(error_of([&] { conn->query("SELECT 1"); }).code(), ErrorCode::connection_lost);
}

TEST_F(MariaDbDriverTest, KilledConnectionIsConnectionLostAndBroken) {
  auto conn = connect();
  EXPECT_EQ(conn->query("SELECT ?", 1)[0][0], Value(1));  // a cached statement
  kill(connection_id(*conn));
  const Error e = error_of([&] { conn->query("SELECT ?", 1); });
  EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
  EXPECT_TRUE(e.retryable());
  EXPECT_TRUE(conn->broken());
  EXPECT_EQ(error_of([&] { conn->ping(); }).code(), ErrorCode::connection_lost);
}

// --- Connect errors ----------------------------------------------------------------------

TEST_F(MariaDbDriverTest, WrongPasswordIsAuthFailedWithoutThePassword) {
  const std::string wrong = "Wr0ngSecret4711";
  const Error e =
      error_of([&] { connect(maria().dsn_for(maria().user, wrong, maria().database)); });
  EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "28000");
  EXPECT_EQ(e.native_code(), 1045);
  EXPECT_FALSE(e.retryable());
  const std::string message = e.what();
  EXPECT_NE(message.find("Access denied"), std::string::npos) << message;
  EXPECT_EQ(message.find(wrong), std::string::npos) << message;
  EXPECT_EQ(message.find(maria().password), std::string::npos) << message;
}

TEST_F(MariaDbDriverTest, UnknownDatabaseIsConnectFailed3D000AndNotRetryable) {
  // The fixture grants reservoir_app every database named reservoir_*, so that the server says
  // "unknown database" (1049) rather than "access denied" (1044).
  const Error e = error_of([&] {
    connect(maria().dsn_for(maria().user, maria().password, "reservoir_no_such_db_4711"));
  });
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "3D000");
  EXPECT_EQ(e.native_code(), 1049);
  EXPECT_FALSE(e.retryable());
  EXPECT_NE(std::string(e.what()).find("no_such_db_4711"), std::string::npos);
  EXPECT_EQ(std::string(e.what()).find(maria().password), std::string::npos);
}

TEST_F(MariaDbDriverTest, DatabaseWithoutAccessIsAuthFailed) {
  const Error e =
      error_of([&] { connect(maria().dsn_for(maria().user, maria().password, "mysql")); });
  EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
  EXPECT_EQ(e.native_code(), 1044);
  EXPECT_FALSE(e.retryable());
}

TEST_F(MariaDbDriverTest, ConnectTimeoutAgainstASilentServer) {
  SilentListener silent;
  const std::string dsn = "mariadb://u:pw@127.0.0.1:" + std::to_string(silent.port()) + "/db";
  auto start = std::chrono::steady_clock::now();
  Error e = error_of([&] { connect(dsn, 700ms); });  // rounded up to Connector/C's 1 s
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_TRUE(e.retryable());
  EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos) << e.what();
  EXPECT_GE(took, 650ms);
  EXPECT_LT(took, 2500ms);

  // The DSN's connect_timeout (seconds) bounds a connect without a caller timeout.
  start = std::chrono::steady_clock::now();
  e = error_of([&] { connect(dsn + "?connect_timeout=2", 0ms); });
  took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::connect_failed);
  EXPECT_GE(took, 1900ms);
  EXPECT_LT(took, 4s);
}

// --- Errors from statements --------------------------------------------------------------

TEST_F(MariaDbDriverTest, QueryErrorsCarrySqlstateNativeCodeAndSql) {
  auto conn = connect();
  const Error syntax = error_of([&] { conn->execute("SELEC 1"); });
  EXPECT_EQ(syntax.code(), ErrorCode::query_failed);
  EXPECT_EQ(syntax.sqlstate(), "42000");
  EXPECT_EQ(syntax.native_code(), 1064);
  EXPECT_FALSE(syntax.retryable());
  EXPECT_NE(std::string(syntax.what()).find("SELEC 1"), std::string::npos) << syntax.what();

  const Error missing = error_of([&] { conn->query("SELECT * FROM no_such_table_4711"); });
  EXPECT_EQ(missing.code(), ErrorCode::query_failed);
  EXPECT_EQ(missing.sqlstate(), "42S02");
  EXPECT_EQ(missing.native_code(), 1146);

  conn->execute("CREATE TEMPORARY TABLE uniq(x INT PRIMARY KEY)");
  conn->execute("INSERT INTO uniq VALUES (?)", 1);
  const Error dup = error_of([&] { conn->execute("INSERT INTO uniq VALUES (?)", 1); });
  EXPECT_EQ(dup.sqlstate(), "23000");
  EXPECT_EQ(dup.native_code(), 1062);
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(conn->query("SELECT 1")[0][0], Value(1));
}

}  // namespace
}  // namespace reservoir
