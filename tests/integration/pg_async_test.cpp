// tests/integration/pg_async_test.cpp: the async API (reservoir/async.hpp) against a real
// PostgreSQL: statements, typed results and transactions, sync and async acquirers on one pool,
// a cancellation storm on real connects, a statement cancelled in flight, close with async
// waiters, a server restart under async load, heterogeneous users and tags.
#include <gtest/gtest.h>

#include <algorithm>
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
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "reservoir/async.hpp"
#include "reservoir/reservoir.hpp"
#include "support/async_support.hpp"
#include "support/fake_driver.hpp"
#include "support/postgres_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
using testing::eventually;
using testing::PostgresServer;
using testing::PostgresTest;
using testing::run_bounded;
using testing::spawn;

class PgAsyncTest : public PostgresTest {
 protected:
  // A pool on server whose sessions carry application_name app (counted and checked by it).
  static PoolOptions options(const PostgresServer& server, const std::string& app,
                             std::uint32_t min, std::uint32_t max) {
    return testing::server_pool_options(
        server.dsn_for(server.user, server.password, server.database, "application_name=" + app),
        min, max, 5s);
  }
  PoolOptions options(const std::string& app, std::uint32_t min, std::uint32_t max) const {
    return options(pg(), app, min, max);
  }

  // Sessions with application_name app, counted from a connection of the test's own.
  std::int64_t backends(const PostgresServer& server, const std::string& app) {
    auto conn = connect(server.dsn, 5s);
    return conn
        ->query("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app)[0][0]
        .as<std::int64_t>();
  }
  std::int64_t backends(const std::string& app) { return backends(pg(), app); }

  // The pool's count of live connections and the server's agree (a closed session's backend
  // exits asynchronously, hence the polling).
  void expect_server_agrees(const Pool& pool, const PostgresServer& server,
                            const std::string& app) {
    testing::expect_server_agrees(pool, [&] { return backends(server, app); });
  }

  static void expect_at_rest(const Pool& pool, std::uint32_t max) {
    testing::expect_settled_at_rest(pool, max);
  }

  static void expect_all_usable(Pool& pool, std::uint32_t max) {
    testing::expect_all_usable(pool, max, "SELECT pg_backend_pid()");
  }
};

// Statements with parameters, typed results, errors, AsyncTransaction commit and rollback, and a
// transaction left open that the release rolls back before the next user.
TEST_F(PgAsyncTest, StatementsTypedResultsAndTransactions) {
  const std::string app = unique_name("app");
  const std::string table = unique_name();
  // One connection: every lease below is the same session.
  auto pool = Pool::create(options(app, 1, 1));
  auto probe = connect();  // looks at the pool's session from outside (blocking, briefly)
  asio::io_context io;
  int steps = 0;
  std::int64_t pid = 0;
  spawn(io, [&]() -> asio::awaitable<void> {
    {
      Lease c = co_await pool->async_acquire();
      EXPECT_EQ(c->driver_name(), "postgresql");
      pid = (co_await async_query(*c, "SELECT pg_backend_pid()"))[0][0].as<std::int64_t>();
      co_await async_execute(*c, "CREATE TABLE " + table +
                                     "(id bigint PRIMARY KEY, name text, price float8, "
                                     "ok boolean, note text)");
      EXPECT_EQ(co_await async_execute(*c, "INSERT INTO " + table + " VALUES ($1, $2, $3, $4, $5)",
                                       1, "pen", 1.5, true, Value()),
                1u);
      EXPECT_EQ(co_await async_execute(*c, "INSERT INTO " + table + " VALUES ($1, $2, $3, $4, $5)",
                                       std::int64_t{5'000'000'000}, std::string("ink"), 20.25,
                                       false, "blue"),
                1u);
      const ResultSet rows = co_await async_query(
          *c, "SELECT id, name, price, ok, note FROM " + table + " WHERE price > $1 ORDER BY id",
          0.5);
      EXPECT_EQ(rows.size(), 2u);
      if (rows.size() == 2) {
        EXPECT_EQ(rows[0][0].as<std::int64_t>(), 1);
        EXPECT_EQ(rows[0][1].as<std::string>(), "pen");
        EXPECT_DOUBLE_EQ(rows[0][2].as<double>(), 1.5);
        EXPECT_TRUE(rows[0][3].as<bool>());
        EXPECT_TRUE(rows[0][4].is_null());
        EXPECT_EQ(rows[0][4].as<std::optional<std::string>>(), std::nullopt);
        EXPECT_EQ(rows[1][0].as<std::int64_t>(), 5'000'000'000);
        EXPECT_EQ(rows[1][1].as<std::string>(), "ink");
        EXPECT_DOUBLE_EQ(rows[1][2].as<double>(), 20.25);
        EXPECT_FALSE(rows[1][3].as<bool>());
        EXPECT_EQ(rows[1][4].as<std::string>(), "blue");
      }
      EXPECT_EQ(co_await async_execute(*c, "UPDATE " + table + " SET price = price * $1", 2), 2u);
      // A server error reaches the coroutine as the sync call's Error; the session stays usable.
      try {
        co_await async_execute(*c, "INSERT INTO " + table + "(id) VALUES ($1)", 1);
        ADD_FAILURE() << "duplicate key accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
        EXPECT_EQ(e.sqlstate(), "23505") << e.what();
      }
      EXPECT_FALSE(c->broken());

      // Commit.
      auto tx = co_await AsyncTransaction::begin(*c);
      EXPECT_TRUE(c->in_transaction());
      co_await async_execute(*c, "INSERT INTO " + table + "(id, name) VALUES ($1, $2)", 2, "cap");
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
      co_await async_execute(*c, "INSERT INTO " + table + "(id, name) VALUES ($1, $2)", 3, "mug");
      co_await tx2.rollback();
      EXPECT_FALSE(c->in_transaction());
      EXPECT_EQ((co_await async_query(*c, "SELECT count(*) FROM " + table))[0][0].as<int>(), 3);
      EXPECT_EQ((co_await async_query(*c, "SELECT count(*) FROM " + table + " WHERE id = 3"))[0][0]
                    .as<int>(),
                0);
      // Left open: the lease goes back inside the transaction.
      auto tx3 = co_await AsyncTransaction::begin(*c);
      co_await async_execute(*c, "INSERT INTO " + table + "(id, name) VALUES ($1, $2)", 4, "box");
      EXPECT_TRUE(c->in_transaction());
      EXPECT_TRUE(tx3.active());
      ++steps;
    }
    {
      Lease c = co_await pool->async_acquire();
      EXPECT_EQ((co_await async_query(*c, "SELECT pg_backend_pid()"))[0][0].as<std::int64_t>(),
                pid);
      EXPECT_FALSE(c->in_transaction());
      // The server agrees: the session is idle, not "idle in transaction", and this statement's
      // transaction has no transaction id yet (the one left open had: it inserted).
      EXPECT_EQ(probe->query("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)[0][0]
                    .as<std::string>(),
                "idle");
      EXPECT_TRUE(
          (co_await async_query(*c, "SELECT txid_current_if_assigned() IS NULL"))[0][0].as<bool>());
      // The same session would see its own uncommitted row.
      EXPECT_EQ((co_await async_query(*c, "SELECT count(*) FROM " + table + " WHERE id = 4"))[0][0]
                    .as<int>(),
                0);
      EXPECT_EQ((co_await async_query(*c, "SELECT count(*) FROM " + table))[0][0].as<int>(), 3);
      co_await async_execute(*c, "DROP TABLE " + table);
      ++steps;
    }
  });
  ASSERT_TRUE(run_bounded(io, 20s));
  EXPECT_EQ(steps, 2);
  EXPECT_EQ(pool->opened(), 1u);
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.acquires, 2u);
  EXPECT_EQ(s.drops, 0u) << s.to_string();
  expect_at_rest(*pool, 1);
  pool->close();
}

// Threads acquiring synchronously and coroutines acquiring asynchronously share one pool.
TEST_F(PgAsyncTest, MixedSyncAndAsyncAcquirers) {
  const std::string app = unique_name("app");
  constexpr std::uint32_t kMax = 4;
  auto o = options(app, 0, kMax);
  o.wait_timeout = 15s;
  auto pool = Pool::create(o);
  testing::expect_sync_and_async_acquirers_share(*pool, kMax, "SELECT $1::int + 1",
                                                 [&] { expect_server_agrees(*pool, pg(), app); });
  pool->close();
}

// 2,000 acquires raced against timers of 0-3 ms
// (testing::expect_cancellation_storm_leaves_nothing).
// A connect takes longer than 3 ms here (SCRAM, a fresh server, sanitizers): the starts are
// spread over 200 ms.
TEST_F(PgAsyncTest, CancellationStormLeavesCountersAndServerExact) {
  const std::string app = unique_name("app");
  constexpr std::uint32_t kMax = 4;
  auto o = options(app, 0, kMax);
  o.max_connecting = kMax;
  auto pool = Pool::create(o);
  testing::expect_cancellation_storm_leaves_nothing(*pool, kMax, 200ms, "SELECT pg_backend_pid()",
                                                    [&] { expect_server_agrees(*pool, pg(), app); });
  pool->close();
  EXPECT_TRUE(eventually([&] { return backends(app) == 0; }));
}

// PoolStats::acquires is documented as "acquire() calls", but the engine derives it from the
// outcomes it records (hits + misses + timeouts + exhausted + errors): an async acquire
// cancelled by its caller has none of them, so it is not counted at all.
TEST_F(PgAsyncTest, CancelledAsyncAcquireIsCountedInAcquires) {
  const std::string app = unique_name("app");
  auto pool = Pool::create(options(app, 1, 1));
  std::optional<Lease> held(pool->acquire());  // acquires: 1
  asio::io_context io;
  std::optional<std::size_t> winner;
  spawn(io, [&]() -> asio::awaitable<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, 20ms);
    auto r = co_await (pool->async_acquire() || t.async_wait(asio::use_awaitable));
    winner = r.index();
  });
  ASSERT_TRUE(run_bounded(io, 5s));
  ASSERT_EQ(winner, 1u);  // cancelled while waiting
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.waits, 1u) << s.to_string();
  EXPECT_EQ(s.acquires, 2u) << "the cancelled acquire() call is missing: " << s.to_string();
  held.reset();
  expect_at_rest(*pool, 1);
}

// A statement cancelled while the server runs it: the coroutine gets control back at once, the
// connection is discarded (or usable), the next acquire works, and nothing keeps running on the
// server.
TEST_F(PgAsyncTest, StatementCancelledInFlight) {
  const std::string app = unique_name("app");
  auto pool = Pool::create(options(app, 1, 1));
  asio::io_context io;
  std::optional<std::size_t> winner;
  bool broken = false;
  Clock::duration took{};
  std::int64_t first_pid = 0, second_pid = 0;
  spawn(io, [&]() -> asio::awaitable<void> {
    {
      Lease c = co_await pool->async_acquire();
      first_pid = (co_await async_query(*c, "SELECT pg_backend_pid()"))[0][0].as<std::int64_t>();
      asio::steady_timer t(co_await asio::this_coro::executor, 50ms);
      const auto start = Clock::now();
      auto r =
          co_await (async_query(*c, "SELECT pg_sleep(5)") || t.async_wait(asio::use_awaitable));
      took = Clock::now() - start;
      winner = r.index();
      broken = c->broken();
      if (!broken) {  // the driver brought the session back: it must work
        EXPECT_EQ((co_await async_query(*c, "SELECT 1"))[0][0].as<int>(), 1);
      }
    }
    Lease c = co_await pool->async_acquire();
    EXPECT_EQ((co_await async_query(*c, "SELECT 1"))[0][0].as<int>(), 1);
    second_pid = (co_await async_query(*c, "SELECT pg_backend_pid()"))[0][0].as<std::int64_t>();
  });
  ASSERT_TRUE(run_bounded(io, 10s));
  ASSERT_EQ(winner, 1u);
  EXPECT_LT(took, 1s);
  RecordProperty("broken", broken ? 1 : 0);
  if (broken) {
    EXPECT_NE(second_pid, first_pid);
    EXPECT_EQ(pool->stats().closed_for(CloseReason::broken), 1u);
  }
  expect_at_rest(*pool, 1);
  // The cancelled pg_sleep must not go on running on the server (well before its 5 s are up).
  std::int64_t running = -1;
  auto probe = connect();
  EXPECT_TRUE(eventually(
      [&] {
        running = probe
                      ->query(
                          "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                          "AND state = 'active' AND query LIKE '%pg_sleep(5)%'",
                          app)[0][0]
                      .as<std::int64_t>();
        return running == 0;
      },
      2s))
      << running << " backend(s) still running the cancelled pg_sleep(5)";
  expect_server_agrees(*pool, pg(), app);
  pool->close();
}

// close(true) with coroutines waiting: every one of them gets pool_closed at once.
TEST_F(PgAsyncTest, CloseFailsPendingAsyncWaiters) {
  const std::string app = unique_name("app");
  auto pool = Pool::create(options(app, 1, 1));
  testing::expect_close_fails_pending_async_waiters(pool);
  EXPECT_TRUE(eventually([&] { return backends(app) == 0; }));
}

// One acquire + SELECT 1 of a coroutine of the restart test.
struct Attempt {
  Clock::time_point start;
  Clock::time_point end;
  bool ok = false;
  bool in_query = false;  // failed after the acquire succeeded
  bool is_error = false;  // a reservoir::Error (else something else was thrown)
  bool retryable = false;
  ErrorCode code = ErrorCode::internal;
  std::string message;
};

std::string describe(const Attempt& a, Clock::time_point origin) {
  std::ostringstream out;
  out << "[" << std::chrono::duration_cast<std::chrono::milliseconds>(a.start - origin).count()
      << " ms .. " << std::chrono::duration_cast<std::chrono::milliseconds>(a.end - origin).count()
      << " ms] " << (a.in_query ? "query" : "acquire") << ": "
      << (a.is_error ? to_string(a.code) : "not an Error") << ": " << a.message;
  return out.str();
}

// PostgreSQL restarts (pg_ctl restart -m fast) under 100 coroutines' load: only work in flight
// fails, for the reasons a restart gives, and the pool recovers with exact counters.
TEST_F(PgAsyncTest, RecoversFromARestartUnderAsyncLoad) {
  auto own = start_own_server();
  if (!own) return;
  const PostgresServer& server = own->server();
  const std::string app = unique_name("app");
  constexpr std::uint32_t kMax = 4;
  auto o = options(server, app, 2, kMax);
  o.ping_interval = 0ms;  // every idle connection is validated before it is handed out
  o.connect_timeout = 2s;
  o.wait_timeout = 3s;
  o.backoff_initial = 20ms;  // quick retries while the server is away
  o.backoff_max = 300ms;
  auto pool = Pool::create(o);

  constexpr int kCoroutines = 100;
  std::atomic<bool> stop{false};
  std::atomic<int> successes{0}, successes_after_back{0};
  std::atomic<std::int64_t> back_ns{std::numeric_limits<std::int64_t>::max()};
  std::vector<Attempt> attempts;  // only the io thread writes, read after it ended
  const auto ns = [](Clock::time_point t) { return t.time_since_epoch().count(); };

  asio::io_context io;
  for (int k = 0; k < kCoroutines; ++k) {
    spawn(io, [&]() -> asio::awaitable<void> {
      asio::steady_timer pause(co_await asio::this_coro::executor);
      while (!stop.load()) {
        Attempt a;
        a.start = Clock::now();
        try {
          Lease c = co_await pool->async_acquire();
          a.in_query = true;
          a.ok = (co_await async_query(*c, "SELECT 1"))[0][0].as<int>() == 1;
        } catch (const Error& e) {
          a.is_error = true;
          a.code = e.code();
          a.retryable = e.retryable();
          a.message = e.what();
        } catch (const std::exception& e) {
          a.message = e.what();
        }
        a.end = Clock::now();
        if (a.ok) {
          ++successes;
          if (ns(a.start) > back_ns.load()) ++successes_after_back;
        } else {
          // Not a busy loop while the server is away: a failure comes back at once at times.
          pause.expires_after(5ms);
          co_await pause.async_wait(asio::use_awaitable);
        }
        attempts.push_back(std::move(a));
      }
    });
  }
  bool finished = false;
  std::thread io_thread([&] { finished = run_bounded(io, 40s); });

  EXPECT_TRUE(eventually([&] { return successes >= 500; }));  // warm
  const auto restart_begin = Clock::now();
  std::string restart_error;
  try {
    own->restart();
  } catch (const std::exception& e) {
    restart_error = e.what();
  }
  const auto back = Clock::now();  // the server accepts connections again
  back_ns = ns(back);
  const bool recovered = eventually([&] { return successes_after_back >= 500; }, 15s);
  stop = true;
  io_thread.join();
  ASSERT_TRUE(finished);
  ASSERT_EQ(restart_error, "");
  EXPECT_TRUE(recovered) << successes_after_back.load() << " successes after the restart";

  int failures = 0;
  for (const Attempt& a : attempts) {
    if (a.ok) continue;
    ++failures;
    SCOPED_TRACE(describe(a, restart_begin));
    // Only work in flight while the server was away fails...
    EXPECT_LT(a.start, back) << "an attempt begun after the restart failed";
    EXPECT_GT(a.end, restart_begin) << "an attempt failed before the restart";
    // ...and only for the reasons a restart gives.
    EXPECT_TRUE(a.is_error) << "not a reservoir::Error";
    EXPECT_TRUE(a.retryable || a.code == ErrorCode::connection_lost) << "unexpected error";
    if (a.in_query) {
      EXPECT_EQ(a.code, ErrorCode::connection_lost);
    }
  }
  RecordProperty("attempts", static_cast<int>(attempts.size()));
  RecordProperty("failures", failures);

  expect_at_rest(*pool, kMax);
  // Idle connections that died with the old server are found when next used: take every
  // connection the pool may have at once.
  expect_all_usable(*pool, kMax);
  expect_server_agrees(*pool, server, app);
  const PoolStats s = pool->stats();
  EXPECT_EQ(s.busy, 0u);
  EXPECT_EQ(s.creates - s.drops, s.opened) << s.to_string();
  // The restart really ended the sessions: the pool found and replaced them (at least the min
  // it had open when the server went down).
  EXPECT_GE(s.closed_for(CloseReason::broken) + s.closed_for(CloseReason::validation_failed), o.min)
      << s.to_string();
  RecordProperty("stats", s.to_string());
  pool->close();
}

// A heterogeneous pool: async_acquire honours AcquireOptions::user.
TEST_F(PgAsyncTest, HeterogeneousUsers) {
  if (pg().other_user.empty()) GTEST_SKIP() << "no second role (RESERVOIR_PG_OTHER_DSN)";
  const std::string app = unique_name("app");
  auto o = options(app, 0, 2);
  o.homogeneous = false;
  auto pool = Pool::create(o);
  asio::io_context io;
  int checked = 0;
  spawn(io, [&]() -> asio::awaitable<void> {
    const AcquireOptions other{.user = pg().other_user, .password = pg().other_password};
    for (int i = 0; i < 3; ++i) {
      Lease mine = co_await pool->async_acquire();
      Lease theirs = co_await pool->async_acquire(other);
      EXPECT_EQ((co_await async_query(*mine, "SELECT current_user"))[0][0].as<std::string>(),
                pg().user);
      EXPECT_EQ((co_await async_query(*theirs, "SELECT current_user"))[0][0].as<std::string>(),
                pg().other_user);
      ++checked;
    }
  });
  ASSERT_TRUE(run_bounded(io, 10s));
  EXPECT_EQ(checked, 3);
  EXPECT_EQ(pool->opened(), 2u);
  EXPECT_EQ(pool->stats().creates, 2u);  // each user's session was reused
  expect_at_rest(*pool, 2);
}

// Tags through async_acquire: the session callback (on the worker pool) sets the state up once.
TEST_F(PgAsyncTest, TagsAndTheSessionCallback) {
  const std::string app = unique_name("app");
  auto o = options(app, 0, 1);
  std::atomic<int> calls{0};
  o.session_callback = [&](Connection& c, std::string_view tag) {
    ++calls;
    if (tag == "tz=utc") c.execute("SET TIME ZONE 'UTC'");
  };
  auto pool = Pool::create(o);
  asio::io_context io;
  int checked = 0;
  spawn(io, [&]() -> asio::awaitable<void> {
    const AcquireOptions utc{.tag = "tz=utc"};
    for (int i = 0; i < 3; ++i) {
      Lease c = co_await pool->async_acquire(utc);
      EXPECT_EQ((co_await async_query(*c, "SHOW TimeZone"))[0][0].as<std::string>(), "UTC");
      c.release("tz=utc");
      ++checked;
    }
  });
  ASSERT_TRUE(run_bounded(io, 10s));
  EXPECT_EQ(checked, 3);
  EXPECT_EQ(calls.load(), 1);  // new connection only; then it carried the tag
  expect_at_rest(*pool, 1);
}

}  // namespace
}  // namespace reservoir
