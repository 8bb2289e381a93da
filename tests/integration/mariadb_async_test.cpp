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
  constexpr int kThreads = 4, kThreadIterations = 50;
  constexpr int kCoroutines = 200, kCoroutineIterations = 5;
  std::atomic<int> sync_ok{0}, async_ok{0}, failures{0};
  std::atomic<std::uint32_t> max_opened{0};
  const auto note_opened = [&] {
    const std::uint32_t n = pool->opened();
    std::uint32_t seen = max_opened.load();
    while (n > seen && !max_opened.compare_exchange_weak(seen, n)) {
    }
  };

  asio::io_context io;
  for (int k = 0; k < kCoroutines; ++k) {
    spawn(io, [&, k]() -> asio::awaitable<void> {
      for (int i = 0; i < kCoroutineIterations; ++i) {
        try {
          Lease c = co_await pool->async_acquire();
          note_opened();
          const int v = k * 100 + i;
          if ((co_await async_query(*c, "SELECT ? + 1", v))[0][0].as<int>() == v + 1) ++async_ok;
        } catch (const Error& e) {
          ++failures;
          ADD_FAILURE() << "async: " << e.what();
        }
      }
    });
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kThreadIterations; ++i) {
        try {
          Lease c = pool->acquire();
          note_opened();
          const int v = -(t * 1000 + i);
          if (c->query("SELECT ? + 1", v)[0][0].as<int>() == v + 1) ++sync_ok;
        } catch (const Error& e) {
          ++failures;
          ADD_FAILURE() << "sync: " << e.what();
        }
      }
    });
  }
  const bool finished = run_bounded(io, 25s);
  for (auto& t : threads) t.join();  // each bounded by wait_timeout per iteration
  ASSERT_TRUE(finished);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(sync_ok.load(), kThreads * kThreadIterations);
  EXPECT_EQ(async_ok.load(), kCoroutines * kCoroutineIterations);
  EXPECT_LE(max_opened.load(), kMax);
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.acquires, static_cast<std::uint64_t>(kThreads * kThreadIterations +
                                                   kCoroutines * kCoroutineIterations))
      << s.to_string();
  EXPECT_GT(s.waits, 0u) << s.to_string();  // the pool really was short of connections
  EXPECT_EQ(s.timeouts, 0u);
  EXPECT_EQ(s.creates - s.drops, s.opened) << s.to_string();
  expect_at_rest(*pool, kMax);
  expect_server_agrees(*pool);
  pool->close();
}

// 2,000 acquires (each with a short query) raced against timers of 0-3 ms, so that waits,
// connects in flight and queries in flight are cancelled. Nothing may leak, in the pool or on the
// server.
TEST_F(MariaDbAsyncTest, CancellationStormLeavesCountersAndServerExact) {
  constexpr std::uint32_t kMax = 4;
  auto o = options(0, kMax);
  o.max_connecting = kMax;
  auto pool = Pool::create(o);
  constexpr int kCoroutines = 2'000;
  const unsigned seed = std::random_device{}();
  RecordProperty("seed", std::to_string(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_us(0, 3'000), long_us(0, 1'000'000), start_us(0, 60'000);
  std::atomic<int> served{0}, cancelled{0}, pool_timeouts{0}, other{0};
  std::mutex m;
  std::vector<std::string> other_errors;
  std::atomic<std::uint32_t> max_opened{0};

  // One acquire + query; what went wrong other than the cancellation (which propagates).
  const auto work = [&]() -> asio::awaitable<void> {
    try {
      Lease c = co_await pool->async_acquire();
      const std::uint32_t n = pool->opened();
      std::uint32_t seen = max_opened.load();
      while (n > seen && !max_opened.compare_exchange_weak(seen, n)) {
      }
      if ((co_await async_query(*c, "SELECT 1"))[0][0].as<int>() == 1) ++served;
    } catch (const Error& e) {
      if (e.code() == ErrorCode::pool_timeout) {
        ++pool_timeouts;
      } else {
        ++other;
        std::lock_guard lk(m);
        other_errors.push_back(e.what());
      }
    }
  };
  asio::io_context io;
  for (int i = 0; i < kCoroutines; ++i) {
    // Starts spread over 60 ms (a MariaDB round trip is short: more at once keeps a queue), so
    // that the storm meets an empty pool, connects in flight, idle connections and leases in
    // use. Every tenth acquirer has up to 1 s, or (a cancelled acquirer abandons its connect) a
    // slow connect might never finish.
    const auto start_at = std::chrono::microseconds(start_us(rng));
    const auto limit = std::chrono::microseconds(i % 10 == 0 ? long_us(rng) : delay_us(rng));
    spawn(io, [&, start_at, limit]() -> asio::awaitable<void> {
      asio::steady_timer t(co_await asio::this_coro::executor, start_at);
      co_await t.async_wait(asio::use_awaitable);
      t.expires_after(limit);
      auto r = co_await (work() || t.async_wait(asio::use_awaitable));
      if (r.index() == 1) ++cancelled;
    });
  }
  ASSERT_TRUE(run_bounded(io, 25s));
  RecordProperty("served", served.load());
  RecordProperty("cancelled", cancelled.load());
  RecordProperty("creates", static_cast<int>(pool->stats().creates));
  RecordProperty("closed_broken", static_cast<int>(pool->stats().closed_for(CloseReason::broken)));
  EXPECT_EQ(served + cancelled, kCoroutines);
  EXPECT_GT(served.load(), 0) << pool->stats().to_string();
  EXPECT_GT(cancelled.load(), 0) << pool->stats().to_string();
  EXPECT_EQ(pool_timeouts.load(), 0);
  EXPECT_EQ(other.load(), 0) << (other_errors.empty() ? "" : other_errors.front());
  EXPECT_LE(max_opened.load(), kMax);
  const PoolStats s = pool->stats();
  EXPECT_GT(s.creates, 0u) << s.to_string();
  EXPECT_EQ(s.creates - s.drops, s.opened) << s.to_string();
  expect_at_rest(*pool, kMax);
  // No session the pool has forgotten about (a cancelled connect that went on), none missing.
  expect_server_agrees(*pool);
  expect_all_usable(*pool, kMax);
  expect_server_agrees(*pool);
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
