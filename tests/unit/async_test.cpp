// tests/unit/async_test.cpp: the async API (reservoir/async.hpp) on the fake driver: the fast
// path, waiting in the one FIFO queue shared with synchronous acquirers, get modes, cancellation
// and timeouts that leave every counter exact (python-oracledb #581's bug class), close with
// waiters pending, destroyed coroutines, statements and transactions on the worker pool,
// creation and maintenance on the application's io_context.
#include "reservoir/async.hpp"

#include <gtest/gtest.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "core/engine.hpp"
#include "reservoir/reservoir.hpp"
#include "support/async_support.hpp"
#include "support/fake_driver.hpp"

using namespace std::chrono_literals;
using namespace reservoir;
using namespace asio::experimental::awaitable_operators;
using reservoir::testing::eventually;
using reservoir::testing::FakeDriver;
using reservoir::testing::run;

namespace {

PoolOptions opts(std::shared_ptr<FakeDriver> fake, std::uint32_t min, std::uint32_t max) {
  PoolOptions o;
  o.dsn = "fake://app:pw@db";
  o.driver = fake;
  o.min = min;
  o.max = max;
  o.wait_timeout = 5s;
  return o;
}

// The pool is at rest: nothing leased, waiting or connecting, and the fake driver's live
// connections are exactly the pool's.
void expect_at_rest(const Pool& pool, const FakeDriver& fake, std::uint32_t max) {
  const PoolStats s = pool.stats();
  reservoir::testing::expect_stats_at_rest(s, max);
  EXPECT_EQ(static_cast<int>(s.opened), fake.live());
}

}  // namespace

TEST(Async, AcquireQueryRelease) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 2));
  asio::io_context io;
  std::optional<std::int64_t> id;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Lease c = co_await pool->async_acquire();
        ResultSet rows = co_await async_query(*c, "SELECT ID");
        id = rows[0][0].as<std::int64_t>();
        EXPECT_EQ(co_await async_execute(*c, "SET x=1"), 0u);
      },
      asio::detached);
  run(io);
  ASSERT_TRUE(id.has_value());
  EXPECT_GT(*id, 0);
  EXPECT_EQ(pool->stats().hits, 1u);
  expect_at_rest(*pool, *fake, 2);
}

TEST(Async, WaiterGetsTheReleasedConnection) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 1));
  asio::io_context io;
  std::vector<int> order;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Lease c = co_await pool->async_acquire();
        asio::steady_timer t(io, 20ms);
        co_await t.async_wait(asio::use_awaitable);
        order.push_back(1);
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Lease c = co_await pool->async_acquire();  // waits for the first to release
        order.push_back(2);
      },
      asio::detached);
  run(io);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(pool->stats().waits, 1u);
  EXPECT_EQ(fake->connects(), 1);
  expect_at_rest(*pool, *fake, 1);
}

// Sync and async acquirers wait in one first-come-first-served line.
TEST(Async, SharesOneFifoQueueWithSyncAcquirers) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 1));
  std::optional<Lease> held(pool->acquire());
  std::mutex m;
  std::vector<std::string> order;
  asio::io_context io;
  // Waiter 1: async. Waiter 2: a thread. Waiter 3: async again.
  auto async_waiter = [&](std::string name) -> asio::awaitable<void> {
    Lease c = co_await pool->async_acquire();
    std::lock_guard lk(m);
    order.push_back(name);
  };
  asio::co_spawn(io, async_waiter("async-1"), asio::detached);
  std::thread io_thread([&] { run(io); });  // keeps running until async-3 is done
  auto work = asio::make_work_guard(io);
  ASSERT_TRUE(eventually([&] { return pool->waiting() == 1; }));
  std::thread sync_waiter([&] {
    Lease c = pool->acquire();
    std::lock_guard lk(m);
    order.push_back("sync-2");
  });
  ASSERT_TRUE(eventually([&] { return pool->waiting() == 2; }));
  asio::co_spawn(io, async_waiter("async-3"), asio::detached);
  ASSERT_TRUE(eventually([&] { return pool->waiting() == 3; }));
  // Each is served only after every older waiter: wait out the starvation bound so that each
  // release is handed straight to the oldest waiter.
  std::this_thread::sleep_for(core::Engine::kStarvationBoundMax + 2ms);  // not synchronisation
  held.reset();
  sync_waiter.join();
  work.reset();
  io_thread.join();
  EXPECT_EQ(order, (std::vector<std::string>{"async-1", "sync-2", "async-3"}));
  expect_at_rest(*pool, *fake, 1);
}

TEST(Async, GetModes) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 1));
  Lease held = pool->acquire();
  asio::io_context io;
  std::vector<ErrorCode> codes;
  bool forced = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (GetMode m : {GetMode::no_wait, GetMode::timed_wait}) {
          try {
            const AcquireOptions ao{.get_mode = m, .wait_timeout = 20ms};
            Lease c = co_await pool->async_acquire(ao);
          } catch (const Error& e) {
            codes.push_back(e.code());
          }
        }
        const AcquireOptions force{.get_mode = GetMode::force_get};
        Lease extra = co_await pool->async_acquire(force);
        forced = static_cast<bool>(extra);
        EXPECT_EQ(pool->opened(), 2u);  // one beyond max
      },
      asio::detached);
  run(io);
  EXPECT_EQ(codes, (std::vector<ErrorCode>{ErrorCode::pool_exhausted, ErrorCode::pool_timeout}));
  EXPECT_TRUE(forced);
  EXPECT_EQ(pool->opened(), 1u);  // the extra was closed on release
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.exhausted, 1u);
  EXPECT_EQ(s.timeouts, 1u);
}

// python-oracledb #581's bug class: waits that are cancelled or time out must leave opened <= max
// and every counter exact. 10,000 of them, on two threads, some while connects are in flight.
TEST(Async, TenThousandCancelledOrTimedOutWaitsLeaveCountersExact) {
  auto fake = std::make_shared<FakeDriver>();
  constexpr std::uint32_t kMax = 4;
  auto o = opts(fake, 0, kMax);
  o.max_connecting = kMax;
  auto pool = Pool::create(o);
  fake->set_connect_delay(2ms);  // connects run on the worker pool, some get cancelled
  asio::io_context io;
  std::atomic<int> served{0}, cancelled{0}, timed_out{0}, other{0};
  constexpr int kWaiters = 10'000;
  for (int i = 0; i < kWaiters; ++i) {
    // Two threads run io: each coroutine on a strand of its own, as Asio requires for the
    // awaitable operators (their branches must not run at once).
    asio::co_spawn(
        asio::make_strand(io),
        [&, i]() -> asio::awaitable<void> {
          try {
            if (i % 3 == 0) {
              // Times out in the pool.
              const AcquireOptions ao{.get_mode = GetMode::timed_wait,
                                      .wait_timeout = std::chrono::milliseconds(i % 5)};
              Lease c = co_await pool->async_acquire(ao);
              ++served;
              asio::steady_timer hold(co_await asio::this_coro::executor, 1ms);
              co_await hold.async_wait(asio::use_awaitable);
            } else {
              // Cancelled by the caller's own timer (Asio cancellation).
              asio::steady_timer t(co_await asio::this_coro::executor,
                                   std::chrono::microseconds(100 * (i % 30)));
              auto r = co_await (pool->async_acquire() || t.async_wait(asio::use_awaitable));
              if (r.index() == 0) {
                ++served;
              } else {
                ++cancelled;
              }
            }
          } catch (const Error& e) {
            if (e.code() == ErrorCode::pool_timeout) {
              ++timed_out;
            } else {
              ++other;
            }
          }
          EXPECT_LE(pool->opened(), kMax);
        },
        asio::detached);
  }
  run(io, 2);
  EXPECT_EQ(served + cancelled + timed_out, kWaiters);
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(cancelled.load(), 0);
  EXPECT_GT(timed_out.load(), 0);
  expect_at_rest(*pool, *fake, kMax);
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.timeouts, static_cast<std::uint64_t>(timed_out.load()));
  EXPECT_EQ(s.max_waiting > 0, true);
  // Nothing leaked: every connection can be leased at once, without waiting.
  std::vector<Lease> all;
  for (std::uint32_t i = 0; i < kMax; ++i)
    all.push_back(pool->acquire({.get_mode = GetMode::timed_wait, .wait_timeout = 2s}));
  EXPECT_EQ(pool->busy(), kMax);
  EXPECT_EQ(static_cast<int>(pool->opened()), fake->live());
}

TEST(Async, CloseFailsPendingWaiters) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 1));
  std::optional<Lease> held(pool->acquire());
  asio::io_context io;
  std::atomic<int> closed_errors{0};
  for (int i = 0; i < 50; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          try {
            const AcquireOptions ao{.get_mode = GetMode::wait};
            Lease c = co_await pool->async_acquire(ao);
          } catch (const Error& e) {
            if (e.code() == ErrorCode::pool_closed) ++closed_errors;
          }
        },
        asio::detached);
  }
  std::thread io_thread([&] { run(io); });
  ASSERT_TRUE(eventually([&] { return pool->waiting() == 50; }));
  pool->close(true);
  io_thread.join();
  EXPECT_EQ(closed_errors.load(), 50);
  EXPECT_EQ(pool->waiting(), 0u);
  held.reset();
  EXPECT_EQ(fake->live(), 0);
}

// A coroutine destroyed while it waits (its io_context goes away) leaves the queue.
TEST(Async, DestroyedCoroutineLeavesTheQueue) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 1));
  std::optional<Lease> held(pool->acquire());
  {
    asio::io_context io;
    for (int i = 0; i < 10; ++i)
      asio::co_spawn(
          io, [&]() -> asio::awaitable<void> { Lease c = co_await pool->async_acquire(); },
          asio::detached);
    io.run_for(50ms);
    EXPECT_EQ(pool->waiting(), 10u);
  }  // destroys the suspended coroutines
  EXPECT_EQ(pool->waiting(), 0u);
  held.reset();
  expect_at_rest(*pool, *fake, 1);
  Lease again = pool->acquire({.get_mode = GetMode::no_wait});
  EXPECT_TRUE(again);
}

// A connection handed to a waiter that is cancelled before it runs goes back to the pool.
TEST(Async, HandedConnectionOfACancelledWaiterGoesBack) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 1));
  std::optional<Lease> held(pool->acquire());
  asio::io_context io;
  asio::cancellation_signal cancel;
  bool aborted = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        try {
          const AcquireOptions ao{.get_mode = GetMode::wait};
          Lease c = co_await pool->async_acquire(ao);
        } catch (const asio::system_error& e) {
          aborted = e.code() == asio::error::operation_aborted;
        }
      },
      asio::bind_cancellation_slot(cancel.slot(), asio::detached));
  io.run_for(20ms);  // the coroutine is now waiting
  ASSERT_EQ(pool->waiting(), 1u);
  // Not synchronisation: past the starvation bound, so the release is handed straight to the
  // waiter, which has not run yet.
  std::this_thread::sleep_for(core::Engine::kStarvationBoundMax + 2ms);
  held.reset();
  cancel.emit(asio::cancellation_type::terminal);
  io.run();
  EXPECT_TRUE(aborted);
  expect_at_rest(*pool, *fake, 1);
  EXPECT_EQ(pool->idle(), 1u);
}

TEST(Async, TransactionsCommitAndRollBack) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 1));
  asio::io_context io;
  bool in_tx_after_begin = false, in_tx_after_commit = true;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Lease c = co_await pool->async_acquire();
        auto tx = co_await AsyncTransaction::begin(*c);
        in_tx_after_begin = c->in_transaction();
        co_await tx.commit();
        in_tx_after_commit = c->in_transaction();
        EXPECT_FALSE(tx.active());
        try {
          co_await tx.commit();
          ADD_FAILURE() << "commit twice";
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
        }
        auto tx2 = co_await AsyncTransaction::begin(*c);
        (void)tx2;  // left open: the release rolls it back
      },
      asio::detached);
  run(io);
  EXPECT_TRUE(in_tx_after_begin);
  EXPECT_FALSE(in_tx_after_commit);
  EXPECT_EQ(fake->rollbacks(), 1);
  expect_at_rest(*pool, *fake, 1);
}

TEST(Async, StatementErrorsPropagate) {
  auto fake = std::make_shared<FakeDriver>();
  auto pool = Pool::create(opts(fake, 1, 1));
  asio::io_context io;
  std::optional<ErrorCode> code;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Lease c = co_await pool->async_acquire();
        try {
          co_await async_execute(*c, "FAIL");
        } catch (const Error& e) {
          code = e.code();
        }
      },
      asio::detached);
  run(io);
  EXPECT_EQ(code, ErrorCode::query_failed);
}

TEST(Async, ConnectErrorsReachTheAwaiter) {
  auto fake = std::make_shared<FakeDriver>();
  auto o = opts(fake, 0, 2);
  auto pool = Pool::create(o);
  fake->fail_with_auth(true);
  fake->fail_all_connects(true);
  asio::io_context io;
  std::optional<ErrorCode> code;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        try {
          Lease c = co_await pool->async_acquire();
        } catch (const Error& e) {
          code = e.code();
        }
      },
      asio::detached);
  run(io);
  EXPECT_EQ(code, ErrorCode::auth_failed);
  EXPECT_EQ(pool->stats().create_failures, 1u);
  expect_at_rest(*pool, *fake, 2);
}

TEST(Async, CreatePoolAndMaintainOnTheApplicationsContext) {
  auto fake = std::make_shared<FakeDriver>();
  auto o = opts(fake, 2, 4);
  o.background_maintenance = false;
  o.maintenance_interval = 10ms;
  o.idle_timeout = 1ms;
  o.min = 1;
  asio::io_context io;
  std::shared_ptr<Pool> pool;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        pool = co_await async_create_pool(o);
        // Open a second and third connection, then let maintenance close those above min.
        {
          Lease a = co_await pool->async_acquire();
          Lease b = co_await pool->async_acquire();
          Lease c = co_await pool->async_acquire();
        }
        EXPECT_GE(pool->opened(), 3u);
        async_maintain(co_await asio::this_coro::executor, pool);
        asio::steady_timer t(co_await asio::this_coro::executor);
        for (int i = 0; i < 500 && pool->opened() > 1; ++i) {
          t.expires_after(2ms);
          co_await t.async_wait(asio::use_awaitable);
        }
        EXPECT_EQ(pool->opened(), 1u);
        pool->close();
      },
      asio::detached);
  run(io);  // ends when the maintenance loop sees the pool closed
  ASSERT_TRUE(pool);
  EXPECT_TRUE(pool->closed());
  EXPECT_GE(pool->stats().closed_for(CloseReason::idle_timeout), 2u);
}
