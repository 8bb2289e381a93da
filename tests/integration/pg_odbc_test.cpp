// tests/integration/pg_odbc_test.cpp: the ODBC driver through unixODBC and psqlODBC
// (odbc-postgresql) against the test PostgreSQL server: types, parameters, the statement cache,
// transactions, reset, liveness and the error mapping.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "drivers/odbc/odbc_connection.hpp"
#include "reservoir/reservoir.hpp"
#include "support/odbc_server_test.hpp"
#include "support/odbc_support.hpp"
#include "support/postgres_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using drivers::OdbcConnection;
using testing::error_of;

class PgOdbcTest : public testing::OdbcServerTest<testing::PostgresTest> {
 protected:
  std::string odbc_dsn(std::string* why) override { return testing::odbc_postgres_dsn(pg(), why); }
  static std::int64_t backend_pid(Connection& c) {
    return c.query("SELECT pg_backend_pid()")[0][0].as<std::int64_t>();
  }
  // Ends the session of backend pid from a libpq connection, waiting until it is gone.
  void terminate(std::int64_t pid) {
    auto killer = connect();
    EXPECT_TRUE(killer->query("SELECT pg_terminate_backend($1::int, 5000)", pid)[0][0].as<bool>());
  }
};

TEST_F(PgOdbcTest, ConnectsThroughPsqlOdbc) {
  auto c = odbc_connect();
  EXPECT_EQ(c->driver_name(), "odbc");
  EXPECT_EQ(odbc(*c).dbms_name(), "PostgreSQL");
  EXPECT_EQ(odbc(*c).ping_sql(), "SELECT 1");
  EXPECT_EQ(c->query("SELECT current_user")[0][0].as<std::string>(), pg().user);
}

TEST_F(PgOdbcTest, TypesRoundTrip) {
  auto c = odbc_connect();
  c->execute(
      "CREATE TEMP TABLE t(i8 bigint, i4 int, i2 smallint, f8 float8, f4 real, b boolean, "
      "s text, v varchar(100), y bytea, n numeric(10,2))");
  const Bytes blob{std::byte{0}, std::byte{1}, std::byte{0}, std::byte{0xff}, std::byte{0}};
  const std::string text = "héllo wörld \xe2\x82\xac \xf0\x9f\x98\x80 日本語";
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  c->execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kMin, -2147483647 - 1, -32768,
             -1.5, 0.25, true, text, text, blob, "12.50");
  c->execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kMax, 2147483647, 32767, 1e300,
             2.5, false, std::string(), std::string(), Bytes{}, "0");
  c->execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", nullptr, nullptr, nullptr,
             nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  const auto rows = c->query("SELECT * FROM t ORDER BY i8 NULLS LAST");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0][0], Value(kMin));
  EXPECT_EQ(rows[0][1], Value(std::int64_t{-2147483647 - 1}));
  EXPECT_EQ(rows[0][2], Value(-32768));
  EXPECT_EQ(rows[0][3], Value(-1.5));
  EXPECT_EQ(rows[0][4], Value(0.25));
  EXPECT_EQ(rows[0][5], Value(true));
  EXPECT_EQ(rows[0][6], Value(text));
  EXPECT_EQ(rows[0][7], Value(text));
  EXPECT_EQ(rows[0][8], Value(blob));
  EXPECT_EQ(rows[0][9], Value("12.50"));  // NUMERIC comes back as text, exactly
  EXPECT_EQ(rows[1][0], Value(kMax));
  EXPECT_EQ(rows[1][3], Value(1e300));
  EXPECT_EQ(rows[1][5], Value(false));
  EXPECT_EQ(rows[1][6], Value(std::string()));
  EXPECT_EQ(rows[1][8].type(), ValueType::bytes);
  EXPECT_TRUE(rows[1][8].as<Bytes>().empty());
  for (const Value& v : rows[2]) EXPECT_TRUE(v.is_null()) << v.to_string();
}

TEST_F(PgOdbcTest, ParametersInExpressionsNeedCasts) {
  auto c = odbc_connect();
  const auto rows = c->query(
      "SELECT CAST(? AS int) + 1 AS n, ? || 'b' AS s, CAST(? AS float8) AS f", 41, "a", 0.5);
  EXPECT_EQ(rows.columns(), (std::vector<std::string>{"n", "s", "f"}));
  EXPECT_EQ(rows[0][0].as<int>(), 42);
  EXPECT_EQ(rows[0][1].as<std::string>(), "ab");
  EXPECT_EQ(rows[0][2].as<double>(), 0.5);
}

// Documented exception (docs/odbc.md): psqlODBC sends parameters with the type "unknown", so a
// parameter that nothing gives a type comes back as text, and "? + ?" is ambiguous (42725).
TEST_F(PgOdbcTest, UntypedParametersComeBackAsText) {
  auto c = odbc_connect();
  EXPECT_EQ(c->query("SELECT ? AS n", 41)[0][0], Value("41"));
  EXPECT_EQ(error_of([&] { c->query("SELECT ? + ?", 1, 2); }).sqlstate(), "42725");
}

TEST_F(PgOdbcTest, LongValuesAreReadInChunks) {
  auto c = odbc_connect();
  const auto rows =
      c->query("SELECT repeat('xyz', 20000) AS s, decode(repeat('00ff', 30000), 'hex') AS b");
  EXPECT_EQ(rows[0][0].as<std::string>().size(), 60000u);
  EXPECT_EQ(rows[0][1].as<Bytes>().size(), 60000u);
}

TEST_F(PgOdbcTest, AffectedRows) {
  auto c = odbc_connect();
  c->execute("CREATE TEMP TABLE t(x int)");
  EXPECT_EQ(c->execute("INSERT INTO t VALUES (1), (2), (3)"), 3u);
  EXPECT_EQ(c->execute("UPDATE t SET x = x + 1 WHERE x >= ?", 2), 2u);
  EXPECT_EQ(c->execute("DELETE FROM t WHERE x = ?", 99), 0u);
}

TEST_F(PgOdbcTest, ParameterCountMismatchIsInvalidArgumentAndHarmless) {
  auto c = odbc_connect();
  const std::string sql = "SELECT CAST(? AS int) + CAST(? AS int) AS n";
  const Error e = error_of([&] { c->query(sql, 1); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
  EXPECT_EQ(c->query(sql, 1, 2)[0][0].as<int>(), 3);
  EXPECT_FALSE(c->broken());
}

TEST_F(PgOdbcTest, StatementCacheKeepsAtMostItsSize) {
  auto c = odbc_connect(dsn + ";ReservoirStmtCache=3");
  for (int i = 0; i < 10; ++i) {
    const std::string sql = "SELECT CAST(? AS int) + " + std::to_string(i) + " AS n";
    EXPECT_EQ(c->query(sql, 1)[0][0].as<int>(), 1 + i);
    EXPECT_LE(odbc(*c).cached_statements(), 3u);
  }
  EXPECT_EQ(odbc(*c).cached_statements(), 3u);
  EXPECT_EQ(c->query("SELECT CAST(? AS int) + 9 AS n", 2)[0][0].as<int>(), 11);  // cached
  auto none = odbc_connect(dsn + ";ReservoirStmtCache=0");
  none->query("SELECT 1");
  EXPECT_EQ(odbc(*none).cached_statements(), 0u);
}

TEST_F(PgOdbcTest, CommitIsVisibleFromAnotherConnectionRollbackIsNot) {
  auto a = odbc_connect();
  auto b = odbc_connect();
  const std::string table = unique_name();
  a->execute("CREATE TABLE " + table + "(x int)");
  a->begin();
  EXPECT_TRUE(a->in_transaction());
  a->execute("INSERT INTO " + table + " VALUES (?)", 1);
  EXPECT_EQ(b->query("SELECT x FROM " + table).size(), 0u);
  a->commit();
  EXPECT_FALSE(a->in_transaction());
  EXPECT_EQ(b->query("SELECT x FROM " + table).size(), 1u);
  a->begin();
  a->execute("INSERT INTO " + table + " VALUES (?)", 2);
  a->rollback();
  EXPECT_FALSE(a->in_transaction());
  EXPECT_EQ(b->query("SELECT x FROM " + table).size(), 1u);
  a->execute("INSERT INTO " + table + " VALUES (3)");  // autocommit again
  EXPECT_EQ(b->query("SELECT x FROM " + table).size(), 2u);
  a->execute("DROP TABLE " + table);
}

TEST_F(PgOdbcTest, FailedStatementInATransactionThenRollback) {
  auto c = odbc_connect();
  c->execute("CREATE TEMP TABLE t(x int)");
  c->begin();
  c->execute("INSERT INTO t VALUES (1)");
  EXPECT_EQ(error_of([&] { c->execute("SELEC 1"); }).code(), ErrorCode::query_failed);
  EXPECT_TRUE(c->in_transaction());
  c->rollback();
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(c->query("SELECT count(*) FROM t")[0][0].as<int>(), 0);
}

TEST_F(PgOdbcTest, BeginSentThroughExecuteIsTracked) {
  auto c = odbc_connect();
  c->execute("CREATE TEMP TABLE t(x int)");
  c->execute("BEGIN");
  EXPECT_TRUE(c->in_transaction());
  c->execute("INSERT INTO t VALUES (1)");
  c->rollback();
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(c->query("SELECT count(*) FROM t")[0][0].as<int>(), 0);
}

// psqlODBC has no SQL_ATTR_RESET_CONNECTION: reset() falls back to DISCARD ALL.
TEST_F(PgOdbcTest, ResetDiscardsSessionState) {
  auto c = odbc_connect();
  c->execute("CREATE TEMP TABLE scratch(x int)");
  c->execute("SET application_name = 'dirty'");
  c->begin();
  c->execute("INSERT INTO scratch VALUES (1)");
  c->reset();
  EXPECT_FALSE(c->in_transaction());
  EXPECT_FALSE(odbc(*c).last_reset_was_native());
  EXPECT_EQ(odbc(*c).cached_statements(), 0u);
  EXPECT_EQ(c->query("SELECT count(*) FROM pg_tables WHERE tablename = 'scratch'")[0][0].as<int>(),
            0);
  EXPECT_NE(c->query("SHOW application_name")[0][0].as<std::string>(), "dirty");
  EXPECT_EQ(c->query("SELECT CAST(? AS int) AS n", 5)[0][0].as<int>(), 5);
}

TEST_F(PgOdbcTest, PingIsARoundTrip) {
  auto c = odbc_connect();
  EXPECT_NO_THROW(c->ping(2s));
  EXPECT_NO_THROW(c->ping());
  EXPECT_FALSE(c->broken());
}

TEST_F(PgOdbcTest, PingFindsATerminatedBackend) {
  auto c = odbc_connect();
  terminate(backend_pid(*c));
  const Error e = error_of([&] { c->ping(2s); });
  EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
  EXPECT_TRUE(c->broken());
  EXPECT_EQ(error_of([&] { c->query("SELECT 1"); }).code(), ErrorCode::connection_lost);
}

TEST_F(PgOdbcTest, TerminatedBackendIsConnectionLostOnAQuery) {
  auto c = odbc_connect();
  terminate(backend_pid(*c));
  const Error e = error_of([&] { c->query("SELECT 1"); });
  EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
  EXPECT_TRUE(e.retryable());
  EXPECT_TRUE(c->broken());
}

TEST_F(PgOdbcTest, QueryErrorsCarrySqlstate) {
  auto c = odbc_connect();
  Error e = error_of([&] { c->execute("SELEC 1"); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "42601") << e.what();
  EXPECT_NE(std::string(e.what()).find("SELEC 1"), std::string::npos);
  e = error_of([&] { c->query("SELECT * FROM no_such_table_4711"); });
  EXPECT_EQ(e.sqlstate(), "42P01") << e.what();
  e = error_of([&] { c->query("SELECT 1 / 0"); });
  EXPECT_EQ(e.sqlstate(), "22012") << e.what();
  EXPECT_FALSE(c->broken());
  EXPECT_NO_THROW(c->ping());
}

TEST_F(PgOdbcTest, WrongPasswordIsAuthFailedWithoutThePassword) {
  const std::string wrong = "Wr0ngSecret4711";
  std::string why;
  const std::string text = testing::odbc_postgres_dsn(pg(), &why, {}, pg().user, wrong);
  const Error e = error_of([&] { odbc_connect(text); });
  EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "28P01") << e.what();
  EXPECT_FALSE(e.retryable());
  const std::string message = e.what();
  EXPECT_EQ(message.find(wrong), std::string::npos) << message;
  EXPECT_EQ(message.find(pg().password), std::string::npos) << message;
}

TEST_F(PgOdbcTest, UnknownDatabaseIsConnectFailed3D000) {
  std::string why;
  const std::string text =
      testing::odbc_postgres_dsn(pg(), &why, {}, pg().user, pg().password, "no_such_db_4711");
  const Error e = error_of([&] { odbc_connect(text); });
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "3D000") << e.what();
  EXPECT_NE(std::string(e.what()).find("no_such_db_4711"), std::string::npos);
  EXPECT_EQ(std::string(e.what()).find(pg().password), std::string::npos);
}

TEST_F(PgOdbcTest, PoolEndToEnd) {
  PoolOptions o;
  o.dsn = dsn;
  o.min = 1;
  o.max = 1;
  o.wait_timeout = 5s;
  auto pool = Pool::create(o);
  const std::string table = unique_name();
  {
    auto c = pool->acquire();
    c->execute("CREATE TABLE " + table + "(x int)");
    c->begin();
    c->execute("INSERT INTO " + table + " VALUES (?)", 1);
  }  // released mid-transaction: rolled back
  {
    auto c = pool->acquire();
    EXPECT_FALSE(c->in_transaction());
    EXPECT_EQ(c->query("SELECT count(*) FROM " + table)[0][0].as<int>(), 0);
    EXPECT_EQ(error_of([&] { (void)pool->acquire({.get_mode = GetMode::no_wait}); }).code(),
              ErrorCode::pool_exhausted);
    c->execute("DROP TABLE " + table);
  }
}

}  // namespace
}  // namespace reservoir
