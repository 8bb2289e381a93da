// tests/integration/pg_nonblocking_test.cpp: the PostgreSQL driver's non-blocking path
// (start_connect, start_statement) against a real server, driven by poll(2) through
// tests/support/drive_op.hpp: connect and its errors and timeout, typed results, parameters,
// the statement cache, large results and parameters, a lost link, abandon().
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/drive_op.hpp"
#include "support/postgres_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using test::drive;
using test::DriveResult;
using testing::error_of;
using testing::PostgresTest;
using testing::SilentListener;

class PgNonBlockingTest : public PostgresTest {
 protected:
  static std::shared_ptr<Driver> driver() { return find_driver("postgresql"); }

  // Opens a connection through the connect operation; *result gets the drive's counts.
  std::unique_ptr<Connection> connect_op(const std::string& dsn, std::chrono::milliseconds timeout,
                                         DriveResult* result = nullptr) {
    auto op = driver()->start_connect(Dsn::parse(dsn), timeout);
    EXPECT_NE(op, nullptr);
    if (!op) return nullptr;
    const DriveResult r = drive(*op);
    if (result != nullptr) *result = r;
    EXPECT_FALSE(r.abandoned);
    return op->take();
  }

  struct Outcome {
    DriveResult drive;
    std::uint64_t affected = 0;
    ResultSet rows;
  };

  // Runs sql through start_statement, driven by poll(2).
  static Outcome run(Connection& conn, std::string_view sql, std::vector<Value> params = {},
                     bool want_rows = true) {
    auto op = conn.start_statement(sql, params, want_rows);
    EXPECT_NE(op, nullptr);
    Outcome o;
    if (!op) return o;
    params.clear();  // the operation keeps its own copy
    o.drive = drive(*op);
    EXPECT_FALSE(o.drive.abandoned);
    o.affected = op->affected();
    if (want_rows) o.rows = op->take_rows();
    return o;
  }

  static std::int64_t prepared_count(Connection& conn) {
    return conn.query("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'rsv\\_%'")[0][0]
        .as<std::int64_t>();
  }

  void terminate(std::int64_t pid) {
    auto killer = connect();
    EXPECT_TRUE(killer->query("SELECT pg_terminate_backend($1::int, 5000)", pid)[0][0].as<bool>());
  }
};

// --- Connecting --------------------------------------------------------------------------

TEST_F(PgNonBlockingTest, ConnectOpGivesAWorkingConnection) {
  DriveResult r;
  auto conn = connect_op(pg().dsn, 5s, &r);
  ASSERT_NE(conn, nullptr);
  EXPECT_GT(r.waits, 0);  // it waited on the socket: it did not block inside resume()
  EXPECT_EQ(conn->driver_name(), "postgresql");
  EXPECT_EQ(conn->query("SELECT current_user")[0][0].as<std::string>(), pg().user);  // blocking
  const Outcome o = run(*conn, "SELECT $1::int + 1", {Value(41)});
  EXPECT_EQ(o.rows[0][0].as<std::int64_t>(), 42);
  // The same session settings as the blocking connect.
  EXPECT_EQ(conn->query("SHOW client_encoding")[0][0].as<std::string>(), "UTF8");
  EXPECT_EQ(conn->query("SHOW application_name")[0][0].as<std::string>(), "reservoir");
}

TEST_F(PgNonBlockingTest, ConnectOpWrongPasswordIsAuthFailed) {
  auto op = driver()->start_connect(
      Dsn::parse(pg().dsn_for(pg().user, "Wr0ngSecret4711", pg().database)), 5s);
  ASSERT_NE(op, nullptr);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "28P01");
  EXPECT_EQ(std::string(e.what()).find("Wr0ngSecret4711"), std::string::npos) << e.what();
}

TEST_F(PgNonBlockingTest, ConnectOpUnknownDatabaseIsConnectFailed3D000) {
  auto op = driver()->start_connect(
      Dsn::parse(pg().dsn_for(pg().user, pg().password, "no_such_db_4711")), 5s);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "3D000");
  EXPECT_FALSE(e.retryable());
}

TEST_F(PgNonBlockingTest, ConnectOpTimeoutAgainstASilentServer) {
  SilentListener silent;
  const std::string dsn = "postgresql://u:pw@127.0.0.1:" + std::to_string(silent.port()) + "/db";
  auto op = driver()->start_connect(Dsn::parse(dsn), 700ms);
  const auto start = std::chrono::steady_clock::now();
  // The op's own timeouts end the wait (the drive's limit is far away) and resume(true) after
  // the deadline throws the blocking connect's timeout error.
  const Error e = error_of([&] { drive(*op, 10s); });
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_NE(std::string(e.what()).find("connect timeout"), std::string::npos) << e.what();
  EXPECT_GE(took, 650ms);
  EXPECT_LT(took, 2500ms);
}

TEST_F(PgNonBlockingTest, ConnectOpWaitsCarryTheTimeLeft) {
  SilentListener silent;
  const std::string dsn = "postgresql://u:pw@127.0.0.1:" + std::to_string(silent.port()) + "/db";
  auto op = driver()->start_connect(Dsn::parse(dsn), 2s);
  IoWait w = op->resume(false);
  ASSERT_NE(w.kind, IoWait::Kind::done);
  EXPECT_GE(w.fd, 0);
  EXPECT_GT(w.timeout, 1500ms);
  EXPECT_LE(w.timeout, 2s);
  // A timer that fires before the deadline is no timeout yet: the op waits again, for less.
  ::poll(nullptr, 0, 100);
  const IoWait again = op->resume(true);
  EXPECT_NE(again.kind, IoWait::Kind::done);
  EXPECT_LT(again.timeout, w.timeout);
  op->abandon();
}

// --- Statements --------------------------------------------------------------------------

TEST_F(PgNonBlockingTest, TypedResultsAndParameters) {
  auto conn = connect();
  const Outcome o = run(*conn,
                        "SELECT 7::int4 AS i, 'hé'::text AS t, NULL::int AS n, true AS b, "
                        "'\\x00ff10'::bytea AS x, 2.5::float8 AS f, 9007199254740993::int8 AS big");
  ASSERT_EQ(o.rows.size(), 1u);
  const Row& row = o.rows[0];
  EXPECT_EQ(row[0].as<std::int64_t>(), 7);
  EXPECT_EQ(row[1].as<std::string>(), "hé");
  EXPECT_TRUE(row[2].is_null());
  EXPECT_EQ(row[3].as<bool>(), true);
  EXPECT_EQ(row[4].as<Bytes>(), (Bytes{std::byte{0x00}, std::byte{0xff}, std::byte{0x10}}));
  EXPECT_DOUBLE_EQ(row[5].as<double>(), 2.5);
  EXPECT_EQ(row[6].as<std::int64_t>(), 9007199254740993);
  EXPECT_EQ(o.affected, 0u);

  const Bytes blob{std::byte{1}, std::byte{0}, std::byte{2}};
  const Outcome p = run(
      *conn, "SELECT $1::int8, $2::text, $3::bool, $4::bytea, $5::float8, $6::int",
      {Value(std::int64_t{-5}), Value("x'y"), Value(false), Value(blob), Value(-0.125), Value()});
  ASSERT_EQ(p.rows.size(), 1u);
  EXPECT_EQ(p.rows[0][0].as<std::int64_t>(), -5);
  EXPECT_EQ(p.rows[0][1].as<std::string>(), "x'y");
  EXPECT_EQ(p.rows[0][2].as<bool>(), false);
  EXPECT_EQ(p.rows[0][3].as<Bytes>(), blob);
  EXPECT_DOUBLE_EQ(p.rows[0][4].as<double>(), -0.125);
  EXPECT_TRUE(p.rows[0][5].is_null());
  EXPECT_FALSE(conn->broken());
}

TEST_F(PgNonBlockingTest, OpsWaitInsteadOfBlocking) {
  auto conn = connect();
  // A statement the server needs 200 ms for: every resume() returns at once and the op waits
  // on the socket in between, for the PREPARE's answer and for the execution's.
  auto op = conn->start_statement("SELECT pg_sleep(0.2), 1", {}, true);
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto longest = clock::duration::zero();
  int waits = 0;
  auto t = clock::now();
  IoWait w = op->resume(false);
  longest = std::max(longest, clock::now() - t);
  while (w.kind != IoWait::Kind::done) {
    ASSERT_GE(w.fd, 0);
    ++waits;
    pollfd p{w.fd,
             static_cast<short>(w.kind == IoWait::Kind::read    ? POLLIN
                                : w.kind == IoWait::Kind::write ? POLLOUT
                                                                : (POLLIN | POLLOUT)),
             0};
    ASSERT_GE(::poll(&p, 1, 5000), 0);
    t = clock::now();
    w = op->resume(false);
    longest = std::max(longest, clock::now() - t);
  }
  EXPECT_GE(clock::now() - start, 190ms);
  EXPECT_GT(waits, 0);
  EXPECT_LT(longest, 100ms) << "a resume() blocked";
  EXPECT_EQ(op->take_rows()[0][1].as<std::int64_t>(), 1);
  // The same through the drive helper.
  EXPECT_GT(run(*conn, "SELECT pg_sleep(0.05)").drive.waits, 0);
}

TEST_F(PgNonBlockingTest, AffectedRowsOfAnUpdate) {
  auto conn = connect();
  conn->execute("CREATE TEMP TABLE items(id int, price float8)");
  EXPECT_EQ(run(*conn, "INSERT INTO items SELECT g, 1.0 FROM generate_series(1, 5) g", {}, false)
                .affected,
            5u);
  const Outcome o =
      run(*conn, "UPDATE items SET price = $1 WHERE id > $2", {Value(9.5), Value(2)}, false);
  EXPECT_EQ(o.affected, 3u);
  EXPECT_EQ(conn->query("SELECT count(*) FROM items WHERE price = 9.5")[0][0].as<std::int64_t>(),
            3);
  // A script of several statements (simple protocol): the total, and the last result's rows.
  const Outcome s = run(*conn,
                        "UPDATE items SET price = 1 WHERE id = 1; DELETE FROM items "
                        "WHERE id > 3; SELECT count(*) FROM items");
  EXPECT_EQ(s.affected, 3u);
  EXPECT_EQ(s.rows[0][0].as<std::int64_t>(), 3);
}

TEST_F(PgNonBlockingTest, QueryErrorIsQueryFailedAndTheConnectionStaysUsable) {
  auto conn = connect();
  auto op = conn->start_statement("SELECT * FROM no_such_table_4711 WHERE x = $1",
                                  std::vector<Value>{Value(1)}, true);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
  EXPECT_EQ(e.sqlstate(), "42P01");
  EXPECT_NE(std::string(e.what()).find("no_such_table_4711"), std::string::npos);
  EXPECT_FALSE(conn->broken());

  auto syntax = conn->start_statement("SELEC 1", {}, false);
  EXPECT_EQ(error_of([&] { drive(*syntax); }).sqlstate(), "42601");

  // The parameter count is checked before sending, as in the blocking path.
  auto count = conn->start_statement("SELECT $1, $2", std::vector<Value>{Value(1)}, true);
  EXPECT_EQ(error_of([&] { drive(*count); }).code(), ErrorCode::invalid_argument);

  EXPECT_EQ(run(*conn, "SELECT 1").rows[0][0].as<std::int64_t>(), 1);
  EXPECT_EQ(conn->query("SELECT 2")[0][0].as<std::int64_t>(), 2);
}

TEST_F(PgNonBlockingTest, TransactionStateIsTrackedAsInTheBlockingPath) {
  auto conn = connect();
  conn->execute("CREATE TEMP TABLE tx(x int)");
  run(*conn, "BEGIN", {}, false);
  EXPECT_TRUE(conn->in_transaction());
  run(*conn, "INSERT INTO tx VALUES ($1)", {Value(1)}, false);
  auto bad = conn->start_statement("SELECT 1/0", {}, true);
  EXPECT_EQ(error_of([&] { drive(*bad); }).sqlstate(), "22012");
  EXPECT_TRUE(conn->in_transaction());  // a failed transaction
  conn->rollback();                     // what the pool does on release
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(run(*conn, "SELECT count(*) FROM tx").rows[0][0].as<std::int64_t>(), 0);

  run(*conn, "BEGIN", {}, false);
  run(*conn, "INSERT INTO tx VALUES (2)", {}, false);
  EXPECT_TRUE(conn->in_transaction());
  conn->reset();  // ROLLBACK + DISCARD ALL
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(run(*conn, "SELECT 1").rows[0][0].as<std::int64_t>(), 1);
}

TEST_F(PgNonBlockingTest, StatementCacheIsUsed) {
  auto conn = connect();
  const std::string sql = "SELECT $1::int * 2 AS twice";
  EXPECT_EQ(run(*conn, sql, {Value(2)}).rows[0][0].as<std::int64_t>(), 4);
  const std::int64_t after_first = prepared_count(*conn);
  EXPECT_GE(after_first, 1);
  const Outcome second = run(*conn, sql, {Value(5)});
  EXPECT_EQ(second.rows[0][0].as<std::int64_t>(), 10);
  EXPECT_EQ(prepared_count(*conn), after_first);  // not prepared again
  // The blocking path finds the statement the non-blocking one prepared, and the other way.
  EXPECT_EQ(conn->query(sql, 7)[0][0].as<std::int64_t>(), 14);
  EXPECT_EQ(prepared_count(*conn), after_first);
  const std::int64_t calls =
      conn->query("SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", sql)[0][0]
          .as<std::int64_t>();
  EXPECT_EQ(calls, 1);

  // A statement the server forgot is prepared again, transparently.
  conn->execute("DEALLOCATE ALL");
  EXPECT_EQ(run(*conn, sql, {Value(1)}).rows[0][0].as<std::int64_t>(), 2);
}

TEST_F(PgNonBlockingTest, StatementCacheEvictsTheLeastRecentlyUsed) {
  auto conn = connect(pg().dsn_for(pg().user, pg().password, pg().database, "stmt_cache_size=2"));
  run(*conn, "SELECT $1::int + 1", {Value(1)});
  run(*conn, "SELECT $1::int + 2", {Value(1)});
  run(*conn, "SELECT $1::int + 1", {Value(1)});  // most recently used again
  run(*conn, "SELECT $1::int + 3", {Value(1)});  // evicts "+ 2"
  const ResultSet left = conn->query(
      "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'rsv\\_%' ORDER BY 1");
  std::vector<std::string> statements;
  for (const Row& r : left) statements.push_back(r[0].as<std::string>());
  // The blocking query itself is cached too (it evicted the next one in line).
  EXPECT_EQ(std::count(statements.begin(), statements.end(), "SELECT $1::int + 2"), 0);
  EXPECT_LE(statements.size(), 2u);

  auto off = connect(pg().dsn_for(pg().user, pg().password, pg().database, "stmt_cache_size=0"));
  run(*off, "SELECT $1::int + 1", {Value(1)});
  EXPECT_EQ(prepared_count(*off), 0);
}

TEST_F(PgNonBlockingTest, LargeResultNeedsManyReads) {
  auto conn = connect();
  const Outcome o =
      run(*conn, "SELECT g, repeat('x', 20) FROM generate_series(1, $1::int) g", {Value(100'000)});
  ASSERT_EQ(o.rows.size(), 100'000u);
  EXPECT_EQ(o.rows[99'999][0].as<std::int64_t>(), 100'000);
  EXPECT_GT(o.drive.waits, 0) << "a multi-megabyte result arrives over several reads";
}

TEST_F(PgNonBlockingTest, BigParameterNeedsSeveralWrites) {
  auto conn = connect();
  const std::string big(1 << 20, 'p');
  const Outcome o = run(*conn, "SELECT length($1::text), md5($1::text)", {Value(big)});
  EXPECT_EQ(o.rows[0][0].as<std::int64_t>(), 1 << 20);
  EXPECT_EQ(o.rows[0][1].as<std::string>(),
            conn->query("SELECT md5(repeat('p', 1048576))")[0][0].as<std::string>());
  // How many of the waits are for writing depends on the loopback's socket buffers (they
  // often take the whole megabyte at once), and a fast server may answer before the op looks:
  // the count is not checked here (see OpsWaitInsteadOfBlocking).
  // A second, larger one on the same connection, through the cached statement.
  const std::string bigger(4 << 20, 'q');
  const Outcome again = run(*conn, "SELECT length($1::text), md5($1::text)", {Value(bigger)});
  EXPECT_EQ(again.rows[0][0].as<std::int64_t>(), 4 << 20);
}

TEST_F(PgNonBlockingTest, TerminatedBackendIsConnectionLost) {
  auto conn = connect();
  const auto pid = conn->query("SELECT pg_backend_pid()")[0][0].as<std::int64_t>();
  terminate(pid);
  auto op = conn->start_statement("SELECT 1", {}, true);
  const Error e = error_of([&] { drive(*op); });
  EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
  EXPECT_TRUE(e.retryable());
  EXPECT_TRUE(conn->broken());
  // Every later call fails at once, both paths.
  EXPECT_EQ(error_of([&] { conn->query("SELECT 1"); }).code(), ErrorCode::connection_lost);
  auto later = conn->start_statement("SELECT 1", {}, true);
  EXPECT_EQ(error_of([&] { drive(*later); }).code(), ErrorCode::connection_lost);
}

TEST_F(PgNonBlockingTest, TerminatedMidQueryIsConnectionLost) {
  auto conn = connect();
  const auto pid = conn->query("SELECT pg_backend_pid()")[0][0].as<std::int64_t>();
  auto op = conn->start_statement("SELECT pg_sleep(10)", {}, true);
  IoWait w = op->resume(false);
  ASSERT_NE(w.kind, IoWait::Kind::done);
  terminate(pid);
  const auto start = std::chrono::steady_clock::now();
  const Error e = error_of([&] {
    while (w.kind != IoWait::Kind::done) {
      pollfd p{w.fd, static_cast<short>(w.kind == IoWait::Kind::write ? POLLOUT : POLLIN), 0};
      ::poll(&p, 1, 5000);
      w = op->resume(false);
    }
  });
  EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
  // The server's FATAL (57P01) may or may not be read before the end of the stream is: libpq
  // then reports the closed socket, without a SQLSTATE. Either way the link is lost.
  EXPECT_TRUE(e.sqlstate() == "57P01" || e.sqlstate().empty()) << e.what();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(conn->broken());
}

TEST_F(PgNonBlockingTest, AbandonMidQueryNeverHangs) {
  auto conn = connect();
  auto op = conn->start_statement("SELECT pg_sleep(10)", {}, true);
  const auto start = std::chrono::steady_clock::now();
  const DriveResult r = drive(*op, 50ms);
  EXPECT_TRUE(r.abandoned);
  EXPECT_GT(r.waits, 0);
  op.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  // Either usable or broken (then the pool discards it); this driver marks it broken.
  if (!conn->broken()) {
    EXPECT_EQ(conn->query("SELECT 1")[0][0].as<std::int64_t>(), 1);
  } else {
    EXPECT_EQ(error_of([&] { conn->query("SELECT 1"); }).code(), ErrorCode::connection_lost);
  }
  conn.reset();  // closing it does not wait for the sleeping backend
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(PgNonBlockingTest, AbandonBeforeStartOrAfterDoneKeepsTheConnection) {
  auto conn = connect();
  {
    auto op = conn->start_statement("SELECT 1", {}, true);
    op->abandon();
  }
  EXPECT_FALSE(conn->broken());
  auto op = conn->start_statement("SELECT 1", {}, true);
  drive(*op);
  op->abandon();
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(op->take_rows()[0][0].as<std::int64_t>(), 1);
}

TEST_F(PgNonBlockingTest, CopyIsUnsupportedAndTheConnectionStaysUsable) {
  auto conn = connect();
  conn->execute("CREATE TEMP TABLE c(x int)");
  conn->execute("INSERT INTO c SELECT generate_series(1, 1000)");
  auto out = conn->start_statement("COPY c TO STDOUT", {}, false);
  EXPECT_EQ(error_of([&] { drive(*out); }).code(), ErrorCode::unsupported);
  EXPECT_FALSE(conn->broken());
  auto in = conn->start_statement("COPY c FROM STDIN", {}, false);
  EXPECT_EQ(error_of([&] { drive(*in); }).code(), ErrorCode::unsupported);
  EXPECT_FALSE(conn->broken());
  EXPECT_EQ(run(*conn, "SELECT count(*) FROM c").rows[0][0].as<std::int64_t>(), 1000);
}

}  // namespace
}  // namespace reservoir
