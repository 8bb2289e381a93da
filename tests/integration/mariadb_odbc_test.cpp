// tests/integration/mariadb_odbc_test.cpp: the ODBC driver through unixODBC and MariaDB
// Connector/ODBC (odbc-mariadb) against the MariaDB fixture's server: types, transactions,
// reset (SQL_ATTR_RESET_CONNECTION), ping and the error mapping.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "drivers/odbc/odbc_connection.hpp"
#include "reservoir/reservoir.hpp"
#include "support/mariadb_fixture.hpp"
#include "support/odbc_server_test.hpp"
#include "support/odbc_support.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using drivers::OdbcConnection;
using testing::error_of;

class MariaDbOdbcTest : public testing::OdbcServerTest<testing::MariaDbTest> {
 protected:
  std::string odbc_dsn(std::string* why) override {
    return testing::odbc_mariadb_dsn(maria(), why);
  }
};

TEST_F(MariaDbOdbcTest, TypesRoundTrip) {
  auto c = odbc_connect();
  EXPECT_EQ(odbc(*c).ping_sql(), "SELECT 1");
  c->execute("CREATE TEMPORARY TABLE t(i BIGINT, f DOUBLE, s TEXT, y BLOB)");
  const Bytes blob{std::byte{0}, std::byte{1}, std::byte{0}, std::byte{0xff}};
  const std::string text = "héllo \xf0\x9f\x98\x80 日本語";
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  c->execute("INSERT INTO t VALUES (?, ?, ?, ?)", kMin, -1.5, text, blob);
  c->execute("INSERT INTO t VALUES (?, ?, ?, ?)", nullptr, nullptr, nullptr, nullptr);
  const auto rows = c->query("SELECT i, f, s, y FROM t ORDER BY i IS NULL");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0], Value(kMin));
  EXPECT_EQ(rows[0][1], Value(-1.5));
  EXPECT_EQ(rows[0][2], Value(text));
  EXPECT_EQ(rows[0][3], Value(blob));
  for (const Value& v : rows[1]) EXPECT_TRUE(v.is_null());
  EXPECT_EQ(error_of([&] { c->query("SELECT ? + ?", 1); }).code(), ErrorCode::invalid_argument);
}

TEST_F(MariaDbOdbcTest, TransactionsAndReset) {
  auto c = odbc_connect();
  c->execute("CREATE TEMPORARY TABLE t(x INT) ENGINE=InnoDB");
  c->begin();
  c->execute("INSERT INTO t VALUES (?)", 1);
  c->rollback();
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(c->query("SELECT count(*) FROM t")[0][0].as<int>(), 0);
  c->begin();
  c->execute("INSERT INTO t VALUES (?)", 2);
  c->commit();
  EXPECT_EQ(c->query("SELECT count(*) FROM t")[0][0].as<int>(), 1);
  c->begin();
  c->execute("INSERT INTO t VALUES (?)", 3);
  c->reset();
  EXPECT_FALSE(c->in_transaction());
  EXPECT_TRUE(odbc(*c).last_reset_was_native());
  EXPECT_EQ(odbc(*c).cached_statements(), 0u);
  // Documented exception (docs/odbc.md): Connector/ODBC accepts SQL_ATTR_RESET_CONNECTION, yet
  // the server session keeps its TEMPORARY tables; only the rollback is certain.
  EXPECT_EQ(c->query("SELECT count(*) FROM t")[0][0].as<int>(), 1);
  EXPECT_NO_THROW(c->ping(2s));
}

TEST_F(MariaDbOdbcTest, SyntaxErrorIsQueryFailedWithSqlstate) {
  auto c = odbc_connect();
  const Error e = error_of([&] { c->execute("SELEC 1"); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "42000") << e.what();
  EXPECT_EQ(e.native_code(), 1064) << e.what();
}

TEST_F(MariaDbOdbcTest, KilledSessionIsConnectionLost) {
  auto c = odbc_connect();
  const auto id = c->query("SELECT CONNECTION_ID()")[0][0].as<std::int64_t>();
  auto killer = odbc_connect();
  killer->execute("KILL CONNECTION " + std::to_string(id));
  EXPECT_EQ(error_of([&] { c->ping(2s); }).code(), ErrorCode::connection_lost);
  EXPECT_TRUE(c->broken());
}

TEST_F(MariaDbOdbcTest, WrongPasswordIsAuthFailedWithoutThePassword) {
  const std::string wrong = "Wr0ngSecret4711";
  std::string why;
  const Error e =
      error_of([&] { odbc_connect(testing::odbc_mariadb_dsn(maria(), &why, {}, {}, wrong)); });
  EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
  EXPECT_EQ(std::string(e.what()).find(wrong), std::string::npos) << e.what();
  EXPECT_EQ(std::string(e.what()).find(maria().password), std::string::npos) << e.what();
}

}  // namespace
}  // namespace reservoir
