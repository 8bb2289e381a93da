// tests/support/async_support.hpp: what the async API's tests share (tests/unit/async_test.cpp,
// tests/integration/pg_async_test.cpp, mariadb_async_test.cpp): running an io_context, spawning
// coroutines whose exceptions fail the test, and the checks that a pool is at rest, that every
// connection it may have is usable, and that the server counts the sessions the pool does.
#pragma once

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
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "reservoir/async.hpp"
#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"

namespace reservoir::testing {

// Runs io until it has no more work, on `threads` threads.
inline void run(asio::io_context& io, int threads = 1) {
  std::vector<std::thread> extra;
  for (int i = 1; i < threads; ++i) extra.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : extra) t.join();
}

// Runs io until it has no more work or `limit` passed; false (the test fails) on the latter.
[[nodiscard]] inline bool run_bounded(asio::io_context& io, std::chrono::milliseconds limit) {
  io.run_for(limit);
  return io.stopped();
}

// Spawns body on io; a failure (an exception escaping it) is reported as a test failure.
template <class F>
void spawn(asio::io_context& io, F body) {
  asio::co_spawn(io, std::move(body), [](const std::exception_ptr& e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      ADD_FAILURE() << "coroutine threw: " << x.what();
    }
  });
}

// The counters of a pool at rest: nothing leased, waiting or connecting; opened within max and
// all of it idle.
inline void expect_stats_at_rest(const PoolStats& s, std::uint32_t max) {
  EXPECT_EQ(s.busy, 0u) << s.to_string();
  EXPECT_EQ(s.waiting, 0u) << s.to_string();
  EXPECT_EQ(s.connecting, 0u) << s.to_string();
  EXPECT_LE(s.opened, max) << s.to_string();
  EXPECT_EQ(s.idle, s.opened) << s.to_string();
}

// The same on a real server's pool. A pool with min > 0 refills in the background after a drop:
// that connect may still be in flight, hence the polling.
inline void expect_settled_at_rest(const Pool& pool, std::uint32_t max) {
  EXPECT_TRUE(eventually([&] { return pool.stats().connecting == 0; })) << pool.stats().to_string();
  expect_stats_at_rest(pool.stats(), max);
}

// Every connection the pool may have, leased at once (timed_wait), each running SELECT 1 on a
// session of its own (session_id_sql names the session: pg_backend_pid(), CONNECTION_ID()).
inline void expect_all_usable(Pool& pool, std::uint32_t max, const std::string& session_id_sql) {
  std::vector<Lease> all;
  std::set<std::int64_t> ids;
  const AcquireOptions ao{.get_mode = GetMode::timed_wait, .wait_timeout = std::chrono::seconds(5)};
  for (std::uint32_t i = 0; i < max; ++i) {
    all.push_back(pool.acquire(ao));
    EXPECT_EQ(all.back()->query("SELECT 1")[0][0].as<int>(), 1);
    ids.insert(all.back()->query(session_id_sql)[0][0].as<std::int64_t>());
  }
  EXPECT_EQ(ids.size(), max);
  EXPECT_EQ(pool.busy(), max);
  EXPECT_EQ(pool.opened(), max);
}

// The pool's count of live connections and the server's (server_sessions()) agree. A closed
// session leaves the server asynchronously, hence the polling.
inline void expect_server_agrees(const Pool& pool,
                                 const std::function<std::int64_t()>& server_sessions) {
  std::int64_t on_server = -1;
  EXPECT_TRUE(eventually([&] {
    on_server = server_sessions();
    return on_server == static_cast<std::int64_t>(pool.opened());
  })) << "pool opened "
      << pool.opened() << ", server has " << on_server;
}

// close(true) with coroutines waiting on pool (max 1): every one of them gets pool_closed at
// once, and async acquires after the close fail at once too. The lease held meanwhile is
// released (its connection closed) before this returns.
inline void expect_close_fails_pending_async_waiters(const std::shared_ptr<Pool>& pool) {
  using Clock = std::chrono::steady_clock;
  using namespace std::chrono_literals;
  std::optional<Lease> held(pool->acquire());
  constexpr int kWaiters = 20;
  std::atomic<int> closed_errors{0}, other{0};
  asio::io_context io;
  for (int i = 0; i < kWaiters; ++i) {
    spawn(io, [&]() -> asio::awaitable<void> {
      try {
        // Far beyond the test's bounds: ending early can only be the close.
        const AcquireOptions ao{.get_mode = GetMode::timed_wait, .wait_timeout = 20s};
        Lease c = co_await pool->async_acquire(ao);
        ++other;
      } catch (const Error& e) {
        if (e.code() == ErrorCode::pool_closed) {
          ++closed_errors;
        } else {
          ++other;
        }
      }
    });
  }
  bool finished = false;
  std::thread io_thread([&] { finished = run_bounded(io, 10s); });
  EXPECT_TRUE(eventually([&] { return pool->waiting() == kWaiters; }));
  const auto start = Clock::now();
  pool->close(true);
  io_thread.join();
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_TRUE(finished);
  EXPECT_EQ(closed_errors.load(), kWaiters);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(pool->waiting(), 0u);
  // After the close, async acquires fail at once too.
  asio::io_context io2;
  std::optional<ErrorCode> late;
  spawn(io2, [&]() -> asio::awaitable<void> {
    try {
      Lease c = co_await pool->async_acquire();
    } catch (const Error& e) {
      late = e.code();
    }
  });
  EXPECT_TRUE(run_bounded(io2, 5s));
  EXPECT_EQ(late, ErrorCode::pool_closed);
  held.reset();  // the revoked lease's connection is closed now
}

// The largest number of connections pool had open at any of the calls (for "never above max").
class MaxOpened {
 public:
  void note(const Pool& pool) noexcept {
    const std::uint32_t n = pool.opened();
    std::uint32_t seen = max_.load();
    while (n > seen && !max_.compare_exchange_weak(seen, n)) {
    }
  }
  std::uint32_t get() const noexcept { return max_.load(); }

 private:
  std::atomic<std::uint32_t> max_{0};
};

// Threads acquiring synchronously and coroutines acquiring asynchronously share one pool of at
// most max connections (opened with wait_timeout 15 s or more), each lease running plus_one, a
// statement that returns its one int parameter plus one ("SELECT $1::int + 1"). Every acquire
// succeeds, the pool really was short of connections, never opened more than max, and ends at
// rest with server_agrees() (the server's sessions match) holding.
inline void expect_sync_and_async_acquirers_share(Pool& pool, std::uint32_t max,
                                                   const std::string& plus_one,
                                                   const std::function<void()>& server_agrees) {
  constexpr int kThreads = 4, kThreadIterations = 50;
  constexpr int kCoroutines = 200, kCoroutineIterations = 5;
  std::atomic<int> sync_ok{0}, async_ok{0}, failures{0};
  MaxOpened max_opened;
  asio::io_context io;
  for (int k = 0; k < kCoroutines; ++k) {
    spawn(io, [&, k]() -> asio::awaitable<void> {
      for (int i = 0; i < kCoroutineIterations; ++i) {
        try {
          Lease c = co_await pool.async_acquire();
          max_opened.note(pool);
          const int v = k * 100 + i;
          if ((co_await async_query(*c, plus_one, v))[0][0].as<int>() == v + 1) ++async_ok;
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
          Lease c = pool.acquire();
          max_opened.note(pool);
          const int v = -(t * 1000 + i);
          if (c->query(plus_one, v)[0][0].as<int>() == v + 1) ++sync_ok;
        } catch (const Error& e) {
          ++failures;
          ADD_FAILURE() << "sync: " << e.what();
        }
      }
    });
  }
  const bool finished = run_bounded(io, std::chrono::seconds(25));
  for (auto& t : threads) t.join();  // each bounded by wait_timeout per iteration
  ASSERT_TRUE(finished);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(sync_ok.load(), kThreads * kThreadIterations);
  EXPECT_EQ(async_ok.load(), kCoroutines * kCoroutineIterations);
  EXPECT_LE(max_opened.get(), max);
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.acquires, static_cast<std::uint64_t>(kThreads * kThreadIterations +
                                                   kCoroutines * kCoroutineIterations))
      << s.to_string();
  EXPECT_GT(s.waits, 0u) << s.to_string();  // the pool really was short of connections
  EXPECT_EQ(s.timeouts, 0u);
  EXPECT_EQ(s.creates - s.drops, s.opened) << s.to_string();
  expect_settled_at_rest(pool, max);
  server_agrees();
}

// python-oracledb #581's bug class on real connects: 2,000 acquires on pool (at most max
// connections, max_connecting = max), each with a SELECT 1, raced against timers of 0-3 ms, so
// that waits, connects in flight and queries in flight are cancelled. The starts are spread over
// start_spread, so that the storm meets an empty pool, connects in flight, idle connections and
// leases in use; every tenth acquirer has up to 1 s, or no slow connect would ever finish (a
// cancelled acquirer abandons its connect) and the pool would stay empty. Nothing may leak, in
// the pool or on the server (server_agrees(); session_id_sql as for expect_all_usable).
inline void expect_cancellation_storm_leaves_nothing(Pool& pool, std::uint32_t max,
                                                     std::chrono::milliseconds start_spread,
                                                     const std::string& session_id_sql,
                                                     const std::function<void()>& server_agrees) {
  using namespace asio::experimental::awaitable_operators;
  constexpr int kCoroutines = 2'000;
  const unsigned seed = std::random_device{}();
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_us(0, 3'000), long_us(0, 1'000'000),
      start_us(0, static_cast<int>(start_spread.count()) * 1000);
  std::atomic<int> served{0}, cancelled{0}, pool_timeouts{0}, other{0};
  std::mutex m;
  std::vector<std::string> other_errors;
  MaxOpened max_opened;

  // One acquire + query; what went wrong other than the cancellation (which propagates).
  const auto work = [&]() -> asio::awaitable<void> {
    try {
      Lease c = co_await pool.async_acquire();
      max_opened.note(pool);
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
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_bounded(io, std::chrono::seconds(25)));
  ::testing::Test::RecordProperty(
      "storm_ms", static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::steady_clock::now() - start)
                                       .count()));
  ::testing::Test::RecordProperty("served", served.load());
  ::testing::Test::RecordProperty("cancelled", cancelled.load());
  ::testing::Test::RecordProperty("creates", static_cast<int>(pool.stats().creates));
  ::testing::Test::RecordProperty("closed_broken",
                                  static_cast<int>(pool.stats().closed_for(CloseReason::broken)));
  EXPECT_EQ(served + cancelled, kCoroutines);
  EXPECT_GT(served.load(), 0) << pool.stats().to_string();
  EXPECT_GT(cancelled.load(), 0) << pool.stats().to_string();
  EXPECT_EQ(pool_timeouts.load(), 0);
  EXPECT_EQ(other.load(), 0) << (other_errors.empty() ? "" : other_errors.front());
  EXPECT_LE(max_opened.get(), max);
  const PoolStats s = pool.stats();
  EXPECT_GT(s.creates, 0u) << s.to_string();
  EXPECT_EQ(s.creates - s.drops, s.opened) << s.to_string();
  expect_settled_at_rest(pool, max);
  // No session the pool has forgotten about (a cancelled connect that went on), none missing.
  server_agrees();
  expect_all_usable(pool, max, session_id_sql);
  server_agrees();
}

}  // namespace reservoir::testing
