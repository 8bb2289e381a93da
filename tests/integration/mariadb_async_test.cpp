// tests/integration/mariadb_async_test.cpp: the async API (reservoir/async.hpp) against a real
// MariaDB: statements, typed results and transactions, sync and async acquirers on one pool, a
// cancellation storm on real connects, close with async waiters. Whether the driver's
// non-blocking path or the worker pool runs the calls, the outcomes must be the same.
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "reservoir/async.hpp"
#include "reservoir/reservoir.hpp"
#include "support/async_support.hpp"
#include "support/fake_driver.hpp"
#include "support/mariadb_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
using testing::eventually;
using testing::MariaDbTest;
using testing::run_bounded;
using testing::spawn;

// Each test's pool connects to a database of the test's own, so that the server's process list
// tells its sessions apart from those of tests running in parallel (MariaDB has no
// application_name): information_schema.PROCESSLIST.DB is the session's current database.
class MariaDbAsyncTest : public MariaDbTest {
 protected:
  void TearDown() override {
    if (!database_.empty()) {
      try {
        connect()->execute("DROP DATABASE IF EXISTS " + database_);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "dropping " << database_ << ": " << e.what();
      }
    }
    MariaDbTest::TearDown();
  }

  // A pool on a new database of this test's own.
  PoolOptions options(std::uint32_t min, std::uint32_t max) {
    if (database_.empty()) {
      database_ = unique_name("reservoir_db");  // reservoir_app has every right on reservoir_*
      connect()->execute("CREATE DATABASE " + database_);
    }
    return testing::server_pool_options(maria().dsn_for(maria().user, maria().password, database_),
                                        min, max, 5s);
  }

  // Sessions on the test's database, counted from a connection of the test's own.
  std::int64_t backends() {
    return connect()
        ->query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ?", database_)[0][0]
        .as<std::int64_t>();
  }

  // The pool's count of live connections and the server's agree (a closed session leaves the
  // process list asynchronously, hence the polling).
  void expect_server_agrees(const Pool& pool) {
    testing::expect_server_agrees(pool, [&] { return backends(); });
  }

  static void expect_at_rest(const Pool& pool, std::uint32_t max) {
    testing::expect_settled_at_rest(pool, max);
  }

  static void expect_all_usable(Pool& pool, std::uint32_t max) {
    testing::expect_all_usable(pool, max, "SELECT CONNECTION_ID()");
  }

 private:
  std::string database_;
};

// Statements with parameters, typed results, errors, AsyncTransaction commit and rollback, and a
// transaction left open that the release rolls back before the next user.
TEST_F(MariaDbAsyncTest, StatementsTypedResultsAndTransactions) {
  // One connection: every lease below is the same session.
  auto pool = Pool::create(options(1, 1));
  const std::string table = "items";  // in the test's own database
  asio::io_context io;
  int steps = 0;
  std::int64_t id = 0;
  spawn(io, [&]() -> asio::awaitable<void> {
    {
      Lease c = co_await pool->async_acquire();
      EXPECT_EQ(c->driver_name(), "mariadb");
      id = (co_await async_query(*c, "SELECT CONNECTION_ID()"))[0][0].as<std::int64_t>();
      co_await async_execute(*c, "CREATE TABLE " + table +
                                     "(id BIGINT PRIMARY KEY, name VARCHAR(20), price DOUBLE, "
                                     "ok BOOLEAN, note TEXT) ENGINE=InnoDB");
      EXPECT_EQ(co_await async_execute(*c, "INSERT INTO " + table + " VALUES (?, ?, ?, ?, ?)", 1,
                                       "pen", 1.5, true, Value()),
                1u);
      const std::int64_t big = 5'000'000'000;
      EXPECT_EQ(co_await async_execute(*c, "INSERT INTO " + table + " VALUES (?, ?, ?, ?, ?)", big,
                                       std::string("ink"), 20.25, false, "blue"),
                1u);
      const ResultSet rows = co_await async_query(
          *c, "SELECT id, name, price, ok, note FROM " + table + " WHERE price > ? ORDER BY id",
          0.5);
      EXPECT_EQ(rows.size(), 2u);
      if (rows.size() == 2) {
        EXPECT_EQ(rows[0][0].as<std::int64_t>(), 1);
        EXPECT_EQ(rows[0][1].as<std::string>(), "pen");
        EXPECT_DOUBLE_EQ(rows[0][2].as<double>(), 1.5);
        EXPECT_TRUE(rows[0][3].as<bool>());
        EXPECT_TRUE(rows[0][4].is_null());
        EXPECT_EQ(rows[0][4].as<std::optional<std::string>>(), std::nullopt);
        EXPECT_EQ(rows[1][0].as<std::int64_t>(), big);
        EXPECT_EQ(rows[1][1].as<std::string>(), "ink");
        EXPECT_DOUBLE_EQ(rows[1][2].as<double>(), 20.25);
        EXPECT_FALSE(rows[1][3].as<bool>());
        EXPECT_EQ(rows[1][4].as<std::string>(), "blue");
      }
      EXPECT_EQ(co_await async_execute(*c, "UPDATE " + table + " SET price = price * ?", 2), 2u);
      // A server error reaches the coroutine as the sync call's Error; the session stays usable.
      try {
        co_await async_execute(*c, "INSERT INTO " + table + "(id) VALUES (?)", 1);
        ADD_FAILURE() << "duplicate key accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
        EXPECT_EQ(e.sqlstate(), "23000") << e.what();
      }
      EXPECT_FALSE(c->broken());

      // Commit.
      auto tx = co_await AsyncTransaction::begin(*c);
      EXPECT_TRUE(c->in_transaction());
      co_await async_execute(*c, "INSERT INTO " + table + "(id, name) VALUES (?, ?)", 2, "cap");
      co_await tx.commit();
      EXPECT_FALSE(tx.active());
      EXPECT_FALSE(c->in_transaction());
      try {
        co_await tx.commit();
        ADD_FAILURE() << "committed twice";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      }
      // Rollback.
      auto tx2 = co_await AsyncTransaction::begin(*c);
      co_await async_execute(*c, "INSERT INTO " + table + "(id, name) VALUES (?, ?)", 3, "mug");
      co_await tx2.rollback();
      EXPECT_FALSE(c->in_transaction());
      EXPECT_EQ((co_await async_query(*c, "SELECT COUNT(*) FROM " + table))[0][0].as<int>(), 3);
      EXPECT_EQ((co_await async_query(*c, "SELECT COUNT(*) FROM " + table + " WHERE id = 3"))[0][0]
                    .as<int>(),
                0);
      // Left open: the lease goes back inside the transaction.
      auto tx3 = co_await AsyncTransaction::begin(*c);
      co_await async_execute(*c, "INSERT INTO " + table + "(id, name) VALUES (?, ?)", 4, "box");
      EXPECT_TRUE(c->in_transaction());
      EXPECT_EQ((co_await async_query(*c, "SELECT @@in_transaction"))[0][0].as<int>(), 1);
      EXPECT_TRUE(tx3.active());
      ++steps;
    }
    {
      Lease c = co_await pool->async_acquire();
      EXPECT_EQ((co_await async_query(*c, "SELECT CONNECTION_ID()"))[0][0].as<std::int64_t>(), id);
      EXPECT_FALSE(c->in_transaction());
      // The server agrees that no transaction is open, and the session would see its own
      // uncommitted row.
      EXPECT_EQ((co_await async_query(*c, "SELECT @@in_transaction"))[0][0].as<int>(), 0);
      EXPECT_EQ((co_await async_query(*c, "SELECT COUNT(*) FROM " + table + " WHERE id = 4"))[0][0]
                    .as<int>(),
                0);
      EXPECT_EQ((co_await async_query(*c, "SELECT COUNT(*) FROM " + table))[0][0].as<int>(), 3);
      ++steps;
    }
  });
  ASSERT_TRUE(run_bounded(io, 20s));
  EXPECT_EQ(steps, 2);
  EXPECT_EQ(pool->opened(), 1u);
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.drops, 0u) << s.to_string();
  expect_at_rest(*pool, 1);
  pool->close();
}

// Threads acquiring synchronously and coroutines acquiring asynchronously share one pool.
TEST_F(MariaDbAsyncTest, MixedSyncAndAsyncAcquirers) {
  constexpr std::uint32_t kMax = 4;
  auto o = options(0, kMax);
  o.wait_timeout = 15s;
  auto pool = Pool::create(o);
  testing::expect_sync_and_async_acquirers_share(*pool, kMax, "SELECT ? + 1",
                                                 [&] { expect_server_agrees(*pool); });
  pool->close();
}

// 2,000 acquires raced against timers of 0-3 ms
// (testing::expect_cancellation_storm_leaves_nothing).
// A MariaDB round trip is short: the starts are spread over only 60 ms, so that more come at
// once and keep a queue.
TEST_F(MariaDbAsyncTest, CancellationStormLeavesCountersAndServerExact) {
  constexpr std::uint32_t kMax = 4;
  auto o = options(0, kMax);
  o.max_connecting = kMax;
  auto pool = Pool::create(o);
  testing::expect_cancellation_storm_leaves_nothing(*pool, kMax, 60ms, "SELECT CONNECTION_ID()",
                                                    [&] { expect_server_agrees(*pool); });
  pool->close();
  EXPECT_TRUE(eventually([&] { return backends() == 0; }));
}

// close(true) with coroutines waiting: every one of them gets pool_closed at once.
TEST_F(MariaDbAsyncTest, CloseFailsPendingAsyncWaiters) {
  auto pool = Pool::create(options(1, 1));
  testing::expect_close_fails_pending_async_waiters(pool);
  EXPECT_TRUE(eventually([&] { return backends() == 0; }));
}

}  // namespace
}  // namespace reservoir
