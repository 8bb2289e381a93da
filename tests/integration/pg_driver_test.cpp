// tests/integration/pg_driver_test.cpp: the PostgreSQL driver against a real server (the
// fixture in tests/support/postgres_fixture.hpp): types both ways, parameters, the prepared-
// statement cache, transactions, reset, ping, error mapping, timeouts and DSN forms.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "reservoir/reservoir.hpp"
#include "support/postgres_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using testing::closed_port;
using testing::error_of;
using testing::PostgresTest;
using testing::SilentListener;

class PgDriverTest : public PostgresTest {
 protected:
  // The DSN with extra parameters.
  std::string dsn_with(std::string_view params) const {
    return pg().dsn_for(pg().user, pg().password, pg().database, params);
  }
  // Prepared statements of this driver in conn's session (the query itself included when the
  // cache is on: it is prepared before it runs).
  static std::int64_t prepared_count(Connection& conn) {
    return conn.query("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'rsv\\_%'")[0][0]
        .as<std::int64_t>();
  }
  // Ends the session of backend pid from another connection, waiting until it is gone.
  void terminate(std::int64_t pid) {
    auto killer = connect();
    EXPECT_TRUE(killer->query("SELECT pg_terminate_backend($1::int, 5000)", pid)[0][0].as<bool>());
  }
};

// --- Connecting and DSN forms ------------------------------------------------------------

TEST_F(PgDriverTest, RegisteredForPostgresqlAndPostgresSchemes) {
  ASSERT_NE(find_driver("postgresql"), nullptr);
  auto conn = connect();
  EXPECT_EQ(conn->driver_name(), "postgresql");
  EXPECT_NE(conn->native_handle(), nullptr);
  EXPECT_EQ(conn->query("SELECT current_user")[0][0].as<std::string>(), pg().user);

  std::string alias = pg().dsn;
  ASSERT_EQ(alias.rfind("postgresql://", 0), 0u);
  alias.replace(0, std::string("postgresql").size(), "postgres");
  const Dsn dsn = Dsn::parse(alias);
  EXPECT_EQ(dsn.scheme, "postgresql");
  auto other = find_driver(dsn.scheme)->connect(dsn, 5s);
  EXPECT_EQ(other->query("SELECT current_database()")[0][0].as<std::string>(), pg().database);
}

TEST_F(PgDriverTest, LibpqKeywordsAsParameters) {
  // The keyword-string form: everything as ?key=value, nothing in the URL.
  const std::string dsn = "postgresql://?host=" + pg().host + "&port=" + std::to_string(pg().port) +
                          "&dbname=" + pg().database + "&user=" + pg().user +
                          "&password=" + pg().password;
  auto conn = connect(dsn);
  EXPECT_EQ(conn->query("SELECT current_user")[0][0].as<std::string>(), pg().user);
}

TEST_F(PgDriverTest, ParametersPassThroughToLibpq) {
  const std::string app = unique_name("app");
  // options: %20 and %3D keep the space and '=' out of the DSN syntax.
  auto conn = connect(dsn_with("application_name=" + app + "&sslmode=disable" +
                               "&options=-c%20statement_timeout%3D4321"));
  EXPECT_EQ(conn->query("SELECT application_name FROM pg_stat_activity WHERE pid = "
                        "pg_backend_pid()")[0][0]
                .as<std::string>(),
            app);
  EXPECT_EQ(conn->query("SHOW statement_timeout")[0][0].as<std::string>(), "4321ms");
  EXPECT_EQ(conn->query("SHOW client_encoding")[0][0].as<std::string>(), "UTF8");

  // Without one, the application is named "reservoir" (fallback_application_name).
  auto plain = connect();
  EXPECT_EQ(plain->query("SHOW application_name")[0][0].as<std::string>(), "reservoir");
}

TEST_F(PgDriverTest, UnknownParameterIsInvalidArgumentNamingIt) {
  const Error e = error_of([&] { connect(dsn_with("no_such_keyword=1")); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(e.what()).find("no_such_keyword"), std::string::npos) << e.what();
  EXPECT_EQ(std::string(e.what()).find(pg().password), std::string::npos) << e.what();

  const Error bad = error_of([&] { connect(dsn_with("stmt_cache_size=lots")); });
  EXPECT_EQ(bad.code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(bad.what()).find("stmt_cache_size"), std::string::npos) << bad.what();
}

TEST_F(PgDriverTest, SeveralHostsAreTriedInOrder) {
  // The first host refuses; libpq moves on to the second.
  const std::string dsn = "postgresql://" + pg().user + ":" + pg().password +
                          "@127.0.0.1:" + std::to_string(closed_port()) +
                          ",127.0.0.1:" + std::to_string(pg().port) + "/" + pg().database;
  const Dsn parsed = Dsn::parse(dsn);
  EXPECT_EQ(parsed.port, 0);
  auto conn = connect(dsn);
  EXPECT_EQ(conn->query("SELECT 1")[0][0].as<int>(), 1);
}

TEST_F(PgDriverTest, UnixSocketThroughHostParameter) {
  if (pg().admin_dsn.empty()) GTEST_SKIP() << "no admin DSN (RESERVOIR_PG_ADMIN_DSN)";
  auto conn = connect(pg().admin_dsn);
  EXPECT_TRUE(conn->query("SELECT inet_server_addr() IS NULL")[0][0].as<bool>());
}

// --- Types -------------------------------------------------------------------------------

TEST_F(PgDriverTest, BooleansBothWays) {
  auto conn = connect();
  const auto rows = conn->query("SELECT true, false, $1, $2", true, false);
  EXPECT_EQ(rows[0][0], Value(true));
  EXPECT_EQ(rows[0][1], Value(false));
  EXPECT_EQ(rows[0][2], Value(true));
  EXPECT_EQ(rows[0][3], Value(false));
}

TEST_F(PgDriverTest, IntegersAtTheirBounds) {
  auto conn = connect();
  const auto rows = conn->query(
      "SELECT (-32768)::int2, 32767::int2, (-2147483648)::int4, 2147483647::int4,"
      " (-9223372036854775808)::int8, 9223372036854775807::int8");
  EXPECT_EQ(rows[0][0], Value(-32768));
  EXPECT_EQ(rows[0][1], Value(32767));
  EXPECT_EQ(rows[0][2], Value(std::int64_t{-2147483648}));
  EXPECT_EQ(rows[0][3], Value(2147483647));
  EXPECT_EQ(rows[0][4], Value(std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(rows[0][5], Value(std::numeric_limits<std::int64_t>::max()));

  // Parameters are int8 and cast down where the statement asks.
  const auto p =
      conn->query("SELECT $1, $2, $3::int2, $4::int4", std::numeric_limits<std::int64_t>::min(),
                  std::numeric_limits<std::int64_t>::max(), 32767, -2147483648LL);
  EXPECT_EQ(p[0][0].as<std::int64_t>(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(p[0][1].as<std::int64_t>(), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(p[0][2].as<int>(), 32767);
  EXPECT_EQ(p[0][3].as<std::int64_t>(), -2147483648LL);

  const Error e = error_of([&] { conn->query("SELECT $1::int2", 32768); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed);
  EXPECT_EQ(e.sqlstate(), "22003");  // numeric_value_out_of_range
}

TEST_F(PgDriverTest, FloatsBothWays) {
  auto conn = connect();
  const auto rows =
      conn->query("SELECT 1.5::float4, $1::float4, $2, $3, $4, $5", 0.25, 0.1,
                  std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                  std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(rows[0][0].type(), ValueType::real);
  EXPECT_EQ(rows[0][0].as<double>(), 1.5);
  EXPECT_EQ(rows[0][1].as<double>(), 0.25);
  EXPECT_EQ(rows[0][2].as<double>(), 0.1);  // float8 text is exact both ways
  EXPECT_EQ(rows[0][3].as<double>(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(rows[0][4].as<double>(), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(rows[0][5].as<double>()));
  EXPECT_EQ(conn->query("SELECT $1", 1e300)[0][0].as<double>(), 1e300);
  EXPECT_EQ(conn->query("SELECT $1", -2.5e-300)[0][0].as<double>(), -2.5e-300);
}

TEST_F(PgDriverTest, UnicodeTextBothWays) {
  auto conn = connect();
  const std::string text =
      "h\xC3\xA9llo w\xC3\xB6rld \xE2\x9C\x93 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\x89";
  EXPECT_EQ(conn->query("SELECT $1", text)[0][0].as<std::string>(), text);
  conn->execute("CREATE TEMP TABLE t(a text, b varchar(50), c char(3), d name)");
  // Text parameters are of unknown type, so one used as text and varchar at once would be
  // "inconsistent types deduced": two parameters (or a cast) it is.
  conn->execute("INSERT INTO t VALUES ($1, $2, 'ab', 'nm')", text, text);
  const auto rows = conn->query("SELECT a, b, c, d, length(a) FROM t");
  EXPECT_EQ(rows[0][0].as<std::string>(), text);
  EXPECT_EQ(rows[0][1].as<std::string>(), text);
  EXPECT_EQ(rows[0][2].as<std::string>(), "ab ");  // bpchar pads
  EXPECT_EQ(rows[0][3].as<std::string>(), "nm");
  EXPECT_EQ(rows[0][4].as<int>(), 18);  // characters, not bytes: the session is UTF-8

  // Quotes and SQL in a parameter are data.
  const std::string evil = "'); DROP TABLE t; --";
  EXPECT_EQ(conn->query("SELECT $1", evil)[0][0].as<std::string>(), evil);
  EXPECT_EQ(conn->query("SELECT count(*) FROM t")[0][0].as<int>(), 1);
}

TEST_F(PgDriverTest, ByteaWithZeroBytesBothWays) {
  auto conn = connect();
  Bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<std::byte>(i));
  all.push_back(std::byte{0});
  const auto rows = conn->query("SELECT $1, length($1), $2, '\\x00ff'::bytea", all, Bytes{});
  EXPECT_EQ(rows[0][0].type(), ValueType::bytes);
  EXPECT_EQ(rows[0][0].as<Bytes>(), all);
  EXPECT_EQ(rows[0][1].as<int>(), 257);
  EXPECT_EQ(rows[0][2].type(), ValueType::bytes);  // empty, not NULL
  EXPECT_TRUE(rows[0][2].as<Bytes>().empty());
  EXPECT_EQ(rows[0][3].as<Bytes>(), (Bytes{std::byte{0}, std::byte{0xff}}));

  conn->execute("CREATE TEMP TABLE b(x bytea)");
  conn->execute("INSERT INTO b VALUES ($1)", all);
  EXPECT_EQ(conn->query("SELECT x FROM b")[0][0].as<Bytes>(), all);
  // The old escape output format decodes too.
  conn->execute("SET bytea_output = 'escape'");
  EXPECT_EQ(conn->query("SELECT x FROM b")[0][0].as<Bytes>(), all);
}

TEST_F(PgDriverTest, NullsBothWays) {
  auto conn = connect();
  const auto rows = conn->query("SELECT NULL::int, NULL::text, NULL::bytea, $1::int8, $2::text",
                                nullptr, std::nullopt);
  for (const Value& v : rows[0]) EXPECT_TRUE(v.is_null());
  conn->execute("CREATE TEMP TABLE n(i int, t text, d date)");
  conn->execute("INSERT INTO n VALUES ($1, $2, $3)", nullptr, nullptr, nullptr);
  EXPECT_TRUE(conn->query("SELECT i IS NULL AND t IS NULL AND d IS NULL FROM n")[0][0].as<bool>());
  EXPECT_EQ(conn->query("SELECT i FROM n")[0][0].as<std::optional<int>>(), std::nullopt);
}

TEST_F(PgDriverTest, OtherTypesComeBackAsTextAndGoInAsText) {
  auto conn = connect();
  const auto rows = conn->query(
      "SELECT 12.50::numeric, DATE '2024-02-29', TIMESTAMP '2024-02-29 13:14:15',"
      " '{\"a\": 1}'::jsonb, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, ARRAY[1,2]");
  EXPECT_EQ(rows[0][0], Value("12.50"));
  EXPECT_EQ(rows[0][1], Value("2024-02-29"));
  EXPECT_EQ(rows[0][2], Value("2024-02-29 13:14:15"));
  EXPECT_EQ(rows[0][3], Value("{\"a\": 1}"));
  EXPECT_EQ(rows[0][4], Value("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
  EXPECT_EQ(rows[0][5], Value("{1,2}"));

  // Text parameters are of unknown type: the column decides.
  conn->execute("CREATE TEMP TABLE o(n numeric, d date, j jsonb, u uuid)");
  conn->execute("INSERT INTO o VALUES ($1, $2, $3, $4)", "99.95", "2024-12-31", "{\"k\": [1]}",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  const auto o = conn->query("SELECT n + 0.05, d + 1, j->'k', u FROM o WHERE d = $1", "2024-12-31");
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0][0], Value("100.00"));
  EXPECT_EQ(o[0][1], Value("2025-01-01"));
  EXPECT_EQ(o[0][2], Value("[1]"));
}

TEST_F(PgDriverTest, ColumnNamesAndAffectedRows) {
  auto conn = connect();
  conn->execute("CREATE TEMP TABLE a(id int, v text)");
  EXPECT_EQ(conn->execute("INSERT INTO a VALUES (1, 'x'), (2, 'y'), (3, 'z')"), 3u);
  EXPECT_EQ(conn->execute("UPDATE a SET v = $1 WHERE id >= $2", "w", 2), 2u);
  EXPECT_EQ(conn->execute("SELECT * FROM a"), 0u);  // a query changes nothing
  const auto returning = conn->query("DELETE FROM a WHERE id = $1 RETURNING id, v AS value", 1);
  EXPECT_EQ(returning.affected_rows(), 1u);
  EXPECT_EQ(returning.columns(), (std::vector<std::string>{"id", "value"}));
  EXPECT_EQ(returning[0][1], Value("x"));
  const auto empty = conn->query("SELECT id FROM a WHERE id > 100");
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.columns(), (std::vector<std::string>{"id"}));
}

// --- Parameters --------------------------------------------------------------------------

TEST_F(PgDriverTest, ParameterCountMismatchIsInvalidArgumentAndHarmless) {
  auto conn = connect();
  conn->begin();
  EXPECT_EQ(error_of([&] { conn->query("SELECT $1::int + $2::int", 1); }).code(),
            ErrorCode::invalid_argument);
  EXPECT_EQ(error_of([&] { conn->query("SELECT $1::int", 1, 2); }).code(),
            ErrorCode::invalid_argument);
  EXPECT_EQ(error_of([&] { conn->query("SELECT $1::int"); }).code(), ErrorCode::invalid_argument);
  // Checked before sending: the transaction is still usable.
  EXPECT_EQ(conn->query("SELECT 7")[0][0].as<int>(), 7);
  conn->commit();
}

TEST_F(PgDriverTest, ParametersByNumberReusedAndReordered) {
  auto conn = connect();
  EXPECT_EQ(conn->query("SELECT $1 + $1 * 10", 4)[0][0].as<int>(), 44);
  const auto rows = conn->query("SELECT $2::text || $1::text", "b", "a");
  EXPECT_EQ(rows[0][0].as<std::string>(), "ab");
  // $1 inside literals, identifiers, dollar quotes and comments is not a placeholder.
  const auto q = conn->query(
      "SELECT '$2' AS \"$3\", $$ $4 $$, $tag$ $5 $tag$, $1::text -- $6\n /* $7 */", "x");
  EXPECT_EQ(q[0][0], Value("$2"));
  EXPECT_EQ(q[0][1], Value(" $4 "));
  EXPECT_EQ(q[0][3], Value("x"));

  // SQL-standard function bodies have placeholders (and ';') of their own.
  conn->execute(
      "CREATE FUNCTION pg_temp.add1(int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT $1 + 1; END");
  conn->execute("CREATE FUNCTION pg_temp.add2(int) RETURNS int LANGUAGE sql RETURN $1 + 2");
  EXPECT_EQ(conn->query("SELECT pg_temp.add1($1::int), pg_temp.add2(1)", 1)[0][0].as<int>(), 2);
}

TEST_F(PgDriverTest, TextWithNulIsRejected) {
  auto conn = connect();
  EXPECT_EQ(error_of([&] { conn->query("SELECT $1", std::string("a\0b", 3)); }).code(),
            ErrorCode::invalid_argument);
}

TEST_F(PgDriverTest, SeveralStatementsWithoutParameters) {
  auto conn = connect();
  const auto rows = conn->query(
      "CREATE TEMP TABLE m(x int); INSERT INTO m VALUES (1), (2); SELECT x FROM m ORDER BY x;");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1][0].as<int>(), 2);
  EXPECT_EQ(conn->execute("INSERT INTO m VALUES (3); UPDATE m SET x = x + 1"), 4u);
  // A ';' inside a literal does not split, nor does a trailing one.
  EXPECT_EQ(conn->query("SELECT 'a;b'")[0][0], Value("a;b"));
  EXPECT_EQ(conn->query("SELECT $1::int; -- done", 5)[0][0].as<int>(), 5);
  // With parameters, several statements are the server's error.
  EXPECT_EQ(error_of([&] { conn->execute("SELECT $1::int; SELECT 2", 1); }).code(),
            ErrorCode::query_failed);
}

TEST_F(PgDriverTest, CopyIsUnsupportedAndLeavesTheConnectionUsable) {
  auto conn = connect();
  conn->execute("CREATE TEMP TABLE c(x int)");
  EXPECT_EQ(error_of([&] { conn->query("COPY (SELECT 1) TO STDOUT"); }).code(),
            ErrorCode::unsupported);
  EXPECT_EQ(error_of([&] { conn->execute("COPY c FROM STDIN"); }).code(), ErrorCode::unsupported);
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(conn->query("SELECT count(*) FROM c")[0][0].as<int>(), 0);
}

// --- Statement cache ---------------------------------------------------------------------

TEST_F(PgDriverTest, StatementCacheKeepsAtMostItsSizeAndStaysCorrectAfterEviction) {
  auto conn = connect(dsn_with("stmt_cache_size=4"));
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(conn->query("SELECT $1::int + " + std::to_string(i), 100)[0][0].as<int>(), 100 + i);
  }
  EXPECT_EQ(prepared_count(*conn), 4);
  // Evicted statements are prepared again and still right.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 10; ++i) {
      EXPECT_EQ(conn->query("SELECT $1::int + " + std::to_string(i), round)[0][0].as<int>(),
                round + i);
    }
  }
  EXPECT_EQ(prepared_count(*conn), 4);
}

TEST_F(PgDriverTest, EvictionInsideATransactionDoesNotAbortIt) {
  const std::string table = unique_name();
  auto conn = connect(dsn_with("stmt_cache_size=3"));
  conn->execute("CREATE TABLE " + table + "(x int)");  // rsv_1
  conn->query("SELECT 1");                             // rsv_2
  // The application drops our statements behind the cache's back.
  conn->execute("DEALLOCATE rsv_1");
  conn->execute("DEALLOCATE rsv_2");
  conn->begin();  // the cache now holds three statements
  // Each INSERT evicts one the server no longer has; a DEALLOCATE inside the transaction would
  // fail (26000) and abort it (25P02).
  conn->execute("INSERT INTO " + table + " VALUES (1)");
  conn->execute("INSERT INTO " + table + " VALUES (2)");
  conn->commit();
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(conn->query("SELECT count(*) FROM " + table)[0][0].as<std::int64_t>(), 2);
  EXPECT_LE(prepared_count(*conn), 3);  // the deferred deallocations ran once idle
  conn->execute("DROP TABLE " + table);
}

TEST_F(PgDriverTest, StatementCacheDefaultsToTwenty) {
  auto conn = connect();
  for (int i = 0; i < 30; ++i) conn->query("SELECT " + std::to_string(i));
  EXPECT_EQ(prepared_count(*conn), 20);
}

TEST_F(PgDriverTest, StatementCacheSizeZeroPreparesNothing) {
  auto conn = connect(dsn_with("stmt_cache_size=0"));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(conn->query("SELECT $1::int", i)[0][0].as<int>(), i);
  EXPECT_EQ(prepared_count(*conn), 0);
}

TEST_F(PgDriverTest, SameSqlWithOtherParameterTypes) {
  auto conn = connect();
  EXPECT_EQ(conn->query("SELECT $1::text", 5)[0][0], Value("5"));
  EXPECT_EQ(conn->query("SELECT $1::text", "five")[0][0], Value("five"));
  EXPECT_EQ(conn->query("SELECT $1::text", true)[0][0], Value("true"));
  EXPECT_TRUE(conn->query("SELECT $1::text", nullptr)[0][0].is_null());
  EXPECT_EQ(conn->query("SELECT $1::text", 5)[0][0], Value("5"));
}

TEST_F(PgDriverTest, CachedStatementSurvivesSchemaChangeAndDeallocateAll) {
  auto conn = connect();
  conn->execute("CREATE TEMP TABLE s(a int)");
  conn->execute("INSERT INTO s VALUES (1)");
  EXPECT_EQ(conn->query("SELECT * FROM s")[0].size(), 1u);
  conn->execute("ALTER TABLE s ADD COLUMN b int DEFAULT 2");
  const auto rows = conn->query("SELECT * FROM s");  // "cached plan must not change result type"
  ASSERT_EQ(rows[0].size(), 2u);
  EXPECT_EQ(rows[0][1].as<int>(), 2);

  conn->execute("DEALLOCATE ALL");
  EXPECT_EQ(conn->query("SELECT * FROM s")[0][1].as<int>(), 2);
  conn->execute("PREPARE mine AS SELECT 1");
  conn->execute("DISCARD ALL");  // drops temp tables too
  EXPECT_EQ(conn->query("SELECT 5")[0][0].as<int>(), 5);
}

// --- Transactions ------------------------------------------------------------------------

TEST_F(PgDriverTest, CommitIsVisibleRollbackIsNot) {
  const std::string table = unique_name();
  auto a = connect();
  auto b = connect();
  a->execute("CREATE TABLE " + table + "(x int)");
  EXPECT_FALSE(a->in_transaction());
  a->begin();
  EXPECT_TRUE(a->in_transaction());
  a->execute("INSERT INTO " + table + " VALUES (1)");
  EXPECT_EQ(b->query("SELECT count(*) FROM " + table)[0][0].as<int>(), 0);
  a->commit();
  EXPECT_FALSE(a->in_transaction());
  EXPECT_EQ(b->query("SELECT count(*) FROM " + table)[0][0].as<int>(), 1);
  {
    auto tx = a->transaction();
    a->execute("INSERT INTO " + table + " VALUES (2)");
  }  // rolled back
  EXPECT_FALSE(a->in_transaction());
  EXPECT_EQ(b->query("SELECT count(*) FROM " + table)[0][0].as<int>(), 1);
  a->execute("BEGIN");  // a transaction opened by SQL counts too
  EXPECT_TRUE(a->in_transaction());
  a->rollback();
  EXPECT_FALSE(a->in_transaction());
  a->rollback();  // harmless outside a transaction
  a->execute("DROP TABLE " + table);
}

TEST_F(PgDriverTest, FailedTransactionStaysOpenUntilRolledBack) {
  auto conn = connect();
  conn->begin();
  EXPECT_EQ(error_of([&] { conn->query("SELECT 1/0"); }).sqlstate(), "22012");
  EXPECT_TRUE(conn->in_transaction());  // INERROR
  const Error next = error_of([&] { conn->query("SELECT 1"); });
  EXPECT_EQ(next.code(), ErrorCode::query_failed);
  EXPECT_EQ(next.sqlstate(), "25P02");  // in_failed_sql_transaction
  EXPECT_TRUE(conn->in_transaction());
  conn->ping();  // a ping works in a failed transaction
  // COMMIT of a failed transaction rolls back; the driver says so.
  const Error commit = error_of([&] { conn->commit(); });
  EXPECT_EQ(commit.code(), ErrorCode::query_failed);
  EXPECT_EQ(commit.sqlstate(), "25P02");
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(conn->query("SELECT 2")[0][0].as<int>(), 2);

  conn->begin();
  EXPECT_ANY_THROW(conn->execute("SELEC 1"));
  conn->rollback();
  EXPECT_FALSE(conn->in_transaction());
}

// --- Reset -------------------------------------------------------------------------------

TEST_F(PgDriverTest, ResetClearsSessionState) {
  auto conn = connect();
  conn->execute("SET statement_timeout = 1234");
  conn->execute("SET reservoir.marker = 'x'");
  conn->execute("CREATE TEMP TABLE tmp(x int)");
  conn->execute("PREPARE mine(int) AS SELECT $1 + 1");  // its $1 is its own, not ours
  EXPECT_EQ(conn->query("EXECUTE mine(41)")[0][0].as<int>(), 42);
  for (int i = 0; i < 5; ++i) conn->query("SELECT $1::int", i);
  EXPECT_GE(prepared_count(*conn), 6);

  conn->reset();
  EXPECT_EQ(prepared_count(*conn), 1);  // only the query that counts
  EXPECT_EQ(conn->query("SHOW statement_timeout")[0][0], Value("0"));
  EXPECT_TRUE(conn->query("SELECT current_setting('reservoir.marker', true)")[0][0].is_null() ||
              conn->query("SELECT current_setting('reservoir.marker', true)")[0][0] == Value(""));
  EXPECT_EQ(conn->query("SELECT to_regclass('pg_temp.tmp') IS NULL")[0][0], Value(true));
  EXPECT_EQ(conn->query("SELECT count(*) FROM pg_prepared_statements WHERE name = 'mine'")[0][0]
                .as<int>(),
            0);
  // The cache was emptied with the server's statements: cached SQL runs again.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(conn->query("SELECT $1::int", i)[0][0].as<int>(), i);
}

TEST_F(PgDriverTest, ResetRollsBackAnOpenTransaction) {
  const std::string table = unique_name();
  auto conn = connect();
  conn->execute("CREATE TABLE " + table + "(x int)");
  conn->begin();
  conn->execute("INSERT INTO " + table + " VALUES (1)");
  conn->reset();
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(conn->query("SELECT count(*) FROM " + table)[0][0].as<int>(), 0);

  conn->begin();  // a failed one too
  EXPECT_ANY_THROW(conn->query("SELECT 1/0"));
  conn->reset();
  EXPECT_FALSE(conn->in_transaction());
  conn->execute("DROP TABLE " + table);
}

// --- Ping and lost connections -----------------------------------------------------------

TEST_F(PgDriverTest, PingIsARoundTrip) {
  auto conn = connect();
  conn->ping();
  conn->ping(100ms);
  EXPECT_FALSE(conn->broken());
}

TEST_F(PgDriverTest, TerminatedBackendIsConnectionLostAndBroken) {
  auto conn = connect();
  const auto pid = conn->query("SELECT pg_backend_pid()")[0][0].as<std::int64_t>();
  terminate(pid);
  const Error e = error_of([&] { conn->query("SELECT 1"); });
  EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
  EXPECT_TRUE(e.retryable());
  EXPECT_TRUE(conn->broken());
  EXPECT_EQ(error_of([&] { conn->query("SELECT 1"); }).code(), ErrorCode::connection_lost);
  EXPECT_EQ(error_of([&] { conn->ping(); }).code(), ErrorCode::connection_lost);
}

TEST_F(PgDriverTest, PingFindsATerminatedBackend) {
  auto conn = connect();
  const auto pid = conn->query("SELECT pg_backend_pid()")[0][0].as<std::int64_t>();
  terminate(pid);
  EXPECT_EQ(error_of([&] { conn->ping(); }).code(), ErrorCode::connection_lost);
  EXPECT_TRUE(conn->broken());
}

// --- Connect errors ----------------------------------------------------------------------

TEST_F(PgDriverTest, WrongPasswordIsAuthFailedWithoutThePassword) {
  const std::string wrong = "Wr0ngSecret4711";
  const Error e = error_of([&] { connect(pg().dsn_for(pg().user, wrong, pg().database)); });
  EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "28P01");
  EXPECT_FALSE(e.retryable());
  const std::string message = e.what();
  EXPECT_NE(message.find("password authentication failed"), std::string::npos) << message;
  EXPECT_EQ(message.find(wrong), std::string::npos) << message;
  EXPECT_EQ(message.find(pg().password), std::string::npos) << message;
}

TEST_F(PgDriverTest, NologinRoleIsAuthFailed28000AndNotRetryable) {
  if (pg().admin_dsn.empty()) GTEST_SKIP() << "no admin DSN (RESERVOIR_PG_ADMIN_DSN)";
  const std::string role = unique_name("nologin");
  const std::string password = "N0login4711";
  auto admin = connect(pg().admin_dsn);
  admin->execute("CREATE ROLE " + role + " NOLOGIN PASSWORD '" + password + "'");
  const Error e = error_of([&] { connect(pg().dsn_for(role, password, pg().database)); });
  admin->execute("DROP ROLE " + role);
  EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "28000");
  EXPECT_FALSE(e.retryable());
  EXPECT_NE(std::string(e.what()).find("not permitted to log in"), std::string::npos) << e.what();
  EXPECT_EQ(std::string(e.what()).find(password), std::string::npos) << e.what();
}

TEST_F(PgDriverTest, UnknownDatabaseIsConnectFailed3D000) {
  const Error e =
      error_of([&] { connect(pg().dsn_for(pg().user, pg().password, "no_such_db_4711")); });
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "3D000");
  EXPECT_FALSE(e.retryable());
  EXPECT_NE(std::string(e.what()).find("no_such_db_4711"), std::string::npos);
  EXPECT_EQ(std::string(e.what()).find(pg().password), std::string::npos);
}

TEST_F(PgDriverTest, RefusedConnectionIsConnectFailedAndRetryable) {
  const auto start = std::chrono::steady_clock::now();
  const Error e = error_of(
      [&] { connect("postgresql://u:pw@127.0.0.1:" + std::to_string(closed_port()) + "/db", 5s); });
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_TRUE(e.retryable());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(PgDriverTest, ConnectTimeoutAgainstASilentServer) {
  SilentListener silent;
  const std::string dsn = "postgresql://u:pw@127.0.0.1:" + std::to_string(silent.port()) + "/db";
  auto start = std::chrono::steady_clock::now();
  Error e = error_of([&] { connect(dsn, 700ms); });
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos) << e.what();
  EXPECT_GE(took, 650ms);
  EXPECT_LT(took, 2500ms);

  // The DSN's connect_timeout (seconds, at least 2) bounds a connect without a caller timeout.
  start = std::chrono::steady_clock::now();
  e = error_of([&] { connect(dsn + "?connect_timeout=1", 0ms); });
  took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::connect_failed);
  EXPECT_GE(took, 1900ms);
  EXPECT_LT(took, 4s);
}

// --- Errors from statements --------------------------------------------------------------

TEST_F(PgDriverTest, QueryErrorsCarrySqlstateMessageAndSql) {
  auto conn = connect();
  const Error syntax = error_of([&] { conn->execute("SELEC 1"); });
  EXPECT_EQ(syntax.code(), ErrorCode::query_failed);
  EXPECT_EQ(syntax.sqlstate(), "42601");
  EXPECT_FALSE(syntax.retryable());
  EXPECT_NE(std::string(syntax.what()).find("syntax error"), std::string::npos);
  EXPECT_NE(std::string(syntax.what()).find("SELEC 1"), std::string::npos);

  const Error missing =
      error_of([&] { conn->query("SELECT * FROM no_such_table_4711 WHERE x = $1", 1); });
  EXPECT_EQ(missing.code(), ErrorCode::query_failed);
  EXPECT_EQ(missing.sqlstate(), "42P01");

  conn->execute("CREATE TEMP TABLE u(id int PRIMARY KEY)");
  conn->execute("INSERT INTO u VALUES (1)");
  const Error dup = error_of([&] { conn->execute("INSERT INTO u VALUES ($1)", 1); });
  EXPECT_EQ(dup.sqlstate(), "23505");
  EXPECT_NE(std::string(dup.what()).find("DETAIL: Key (id)=(1) already exists"), std::string::npos)
      << dup.what();
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(conn->query("SELECT 1")[0][0].as<int>(), 1);
}

}  // namespace
}  // namespace reservoir
