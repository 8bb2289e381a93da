// tests/integration/worker_pool_async_test.cpp: the async API on the drivers without a
// non-blocking path, SQLite and ODBC (to SQLite), whose calls run on the worker pool: many
// coroutines on one thread write through a small pool in transactions and lose nothing; the
// event loop stays free meanwhile (a timer on it keeps firing while the statements run).
#include <gtest/gtest.h>

#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <filesystem>
#include <string>

#include "reservoir/async.hpp"
#include "reservoir/reservoir.hpp"
#include "support/async_support.hpp"
#include "support/odbc_support.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using testing::run_bounded;
using testing::spawn;

class WorkerPoolAsyncTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::filesystem::path dir;
  std::string dsn;

  void SetUp() override {
    dir = std::filesystem::temp_directory_path() /
          ("reservoir-async-" + std::to_string(::getpid()) + "-" + GetParam());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    if (GetParam() == "sqlite") {
      dsn = "sqlite://" + (dir / "async.db").string();
    } else {
      if (!testing::odbc_driver_built()) GTEST_SKIP() << "the ODBC driver is not built";
      std::string why;
      dsn = testing::odbc_sqlite_dsn(dir / "async.db", &why);
      if (dsn.empty()) GTEST_SKIP() << why;
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
};

TEST_P(WorkerPoolAsyncTest, CoroutinesWriteThroughTheWorkerPoolAndLoseNothing) {
  PoolOptions o;
  o.dsn = dsn;
  o.min = 1;
  o.max = 4;
  o.wait_timeout = 30s;
  auto pool = Pool::create(o);
  {
    Lease c = pool->acquire();
    c->execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER NOT NULL)");
  }
  asio::io_context io(1);
  constexpr int kCoroutines = 200;
  int done = 0, in_flight = 0, most_in_flight = 0, ticks = 0;
  bool finished = false;
  for (int i = 0; i < kCoroutines; ++i) {
    spawn(io, [&, i]() -> asio::awaitable<void> {
      Lease c = co_await pool->async_acquire();
      ++in_flight;
      most_in_flight = std::max(most_in_flight, in_flight);
      auto tx = co_await AsyncTransaction::begin(*c);
      EXPECT_EQ(co_await async_execute(*c, "INSERT INTO t(who) VALUES (?)", i), 1u);
      ResultSet r = co_await async_query(*c, "SELECT COUNT(*) FROM t WHERE who = ?", i);
      EXPECT_EQ(r[0][0].as<std::int64_t>(), 1);
      co_await tx.commit();
      --in_flight;
      if (++done == kCoroutines) finished = true;
    });
  }
  // The loop is not blocked while the statements run on the worker pool: a timer on it fires.
  spawn(io, [&]() -> asio::awaitable<void> {
    asio::steady_timer t(io);
    while (!finished) {
      t.expires_after(1ms);
      co_await t.async_wait(asio::use_awaitable);
      ++ticks;
    }
  });
  ASSERT_TRUE(run_bounded(io, 60s));
  EXPECT_EQ(done, kCoroutines);
  EXPECT_GT(most_in_flight, 1) << "the coroutines never overlapped";
  EXPECT_GT(ticks, 0);
  Lease c = pool->acquire();
  EXPECT_EQ(c->query("SELECT COUNT(*), COUNT(DISTINCT who) FROM t")[0][0].as<std::int64_t>(),
            kCoroutines);
  const PoolStats s = pool->stats();
  EXPECT_LE(s.opened, 4u);
  EXPECT_EQ(s.waiting, 0u);
}

TEST_P(WorkerPoolAsyncTest, StatementErrorsAndRollbackOnTheWorkerPool) {
  PoolOptions o;
  o.dsn = dsn;
  o.max = 1;
  auto pool = Pool::create(o);
  asio::io_context io(1);
  bool caught = false;
  spawn(io, [&]() -> asio::awaitable<void> {
    Lease c = co_await pool->async_acquire();
    co_await async_execute(*c, "CREATE TABLE u(x INTEGER)");
    auto tx = co_await AsyncTransaction::begin(*c);
    co_await async_execute(*c, "INSERT INTO u VALUES (1)");
    co_await tx.rollback();
    try {
      co_await async_execute(*c, "INSERT INTO no_such_table VALUES (1)");
    } catch (const Error& e) {
      caught = e.code() == ErrorCode::query_failed;
    }
    ResultSet r = co_await async_query(*c, "SELECT COUNT(*) FROM u");
    EXPECT_EQ(r[0][0].as<std::int64_t>(), 0);
  });
  ASSERT_TRUE(run_bounded(io, 30s));
  EXPECT_TRUE(caught);
}

INSTANTIATE_TEST_SUITE_P(Drivers, WorkerPoolAsyncTest, ::testing::Values("sqlite", "odbc"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace reservoir
