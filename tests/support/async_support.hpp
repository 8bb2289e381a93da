// tests/support/async_support.hpp: what the async API's tests share (tests/unit/async_test.cpp,
// tests/integration/pg_async_test.cpp, mariadb_async_test.cpp): running an io_context, spawning
// coroutines whose exceptions fail the test, and the checks that a pool is at rest, that every
// connection it may have is usable, and that the server counts the sessions the pool does.
#pragma once

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
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

}  // namespace reservoir::testing
