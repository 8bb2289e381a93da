// tests/integration/pg_restart_test.cpp: the pool across a PostgreSQL restart (pg_ctl restart -m
// fast, every session ended), under load and idle. Each test restarts a server of its own
// (OwnPostgresServer), never the one the other pg_* tests share.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"
#include "support/postgres_fixture.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::eventually;
using testing::OwnPostgresServer;
using testing::PostgresServer;
using testing::PostgresTest;

class PgRestartTest : public PostgresTest {
 protected:
  // A pool on server whose sessions carry application_name app.
  static PoolOptions options(const PostgresServer& server, const std::string& app,
                             std::uint32_t min, std::uint32_t max) {
    PoolOptions o;
    o.dsn =
        server.dsn_for(server.user, server.password, server.database, "application_name=" + app);
    o.min = min;
    o.max = max;
    o.fail_fast = true;
    o.connect_timeout = 2s;
    o.wait_timeout = 3s;
    // Quick retries while the server is away, so that recovery is measured in fractions of a
    // second rather than in the default backoff's seconds.
    o.backoff_initial = 20ms;
    o.backoff_max = 300ms;
    return o;
  }

  static std::int64_t backend_pid(Lease& c) {
    return c->query("SELECT pg_backend_pid()")[0][0].as<std::int64_t>();
  }

  // Sessions on server with application_name app, counted from a new connection of its own.
  std::int64_t backends(const PostgresServer& server, const std::string& app) {
    auto conn = connect(server.dsn, 5s);
    return conn
        ->query("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app)[0][0]
        .as<std::int64_t>();
  }
};

// What one acquire + SELECT 1 of a load thread came to.
struct Attempt {
  Clock::time_point start;
  Clock::time_point end;
  bool ok = false;
  bool in_query = false;  // failed after the acquire succeeded
  ErrorCode code = ErrorCode::internal;
  std::string message;
};

std::string describe(const Attempt& a, Clock::time_point origin) {
  std::ostringstream out;
  out << "[" << std::chrono::duration_cast<std::chrono::milliseconds>(a.start - origin).count()
      << " ms .. " << std::chrono::duration_cast<std::chrono::milliseconds>(a.end - origin).count()
      << " ms] " << (a.in_query ? "query" : "acquire") << ": " << to_string(a.code) << ": "
      << a.message;
  return out.str();
}

TEST_F(PgRestartTest, PoolRecoversFromARestartUnderLoad) {
  auto own = start_own_server();
  if (!own) return;
  const PostgresServer& server = own->server();
  const std::string app = unique_name("app");
  auto o = options(server, app, 2, 4);
  o.ping_interval = 0ms;  // every idle connection is validated before it is handed out
  auto pool = Pool::create(o);

  constexpr int kThreads = 4;
  std::atomic<bool> stop{false};
  std::vector<std::vector<Attempt>> attempts(kThreads);  // each written by its thread only
  // Per thread: successes so far, and the start (steady ns) of the latest success.
  std::vector<std::atomic<int>> successes(kThreads);
  std::vector<std::atomic<std::int64_t>> last_ok_start(kThreads);
  const auto ns = [](Clock::time_point t) { return t.time_since_epoch().count(); };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!stop.load()) {
        Attempt a;
        a.start = Clock::now();
        try {
          auto c = pool->acquire();
          a.in_query = true;
          a.ok = c->query("SELECT 1")[0][0].as<int>() == 1;
        } catch (const Error& e) {
          a.code = e.code();
          a.message = e.what();
        }
        a.end = Clock::now();
        if (a.ok) {
          last_ok_start[t].store(ns(a.start));
          successes[t].fetch_add(1);
        }
        attempts[t].push_back(std::move(a));
      }
    });
  }
  const auto all_threads = [&](const auto& pred) {
    for (int t = 0; t < kThreads; ++t)
      if (!pred(t)) return false;
    return true;
  };

  // Warm: every thread is getting through.
  EXPECT_TRUE(eventually([&] { return all_threads([&](int t) { return successes[t] >= 20; }); }));

  const auto restart_begin = Clock::now();
  std::string restart_error;
  try {
    own->restart();
  } catch (const std::exception& e) {
    restart_error = e.what();
  }
  const auto back = Clock::now();  // the server accepts connections again

  // The pool recovers: every thread succeeds again, with an attempt begun after the restart.
  const bool recovered = eventually(
      [&] { return all_threads([&](int t) { return last_ok_start[t].load() > ns(back); }); }, 15s);
  // Then some more load on the recovered pool.
  std::vector<int> at_recovery(kThreads);
  for (int t = 0; t < kThreads; ++t) at_recovery[t] = successes[t].load();
  eventually(
      [&] { return all_threads([&](int t) { return successes[t] >= at_recovery[t] + 50; }); }, 15s);
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_EQ(restart_error, "");
  EXPECT_TRUE(recovered);

  int failures = 0, failures_in_query = 0, after_back = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (const Attempt& a : attempts[t]) {
      if (a.start >= back) ++after_back;
      if (a.ok) continue;
      ++failures;
      if (a.in_query) ++failures_in_query;
      SCOPED_TRACE("thread " + std::to_string(t) + " " + describe(a, restart_begin));
      // Only work in flight while the server was away fails...
      EXPECT_LT(a.start, back) << "an attempt begun after the restart failed";
      EXPECT_GT(a.end, restart_begin) << "an attempt failed before the restart";
      // ...and only for the reasons a restart gives.
      EXPECT_TRUE(a.code == ErrorCode::connection_lost || a.code == ErrorCode::connect_failed ||
                  a.code == ErrorCode::pool_timeout)
          << "unexpected error code";
      // After the acquire, only the link can have failed (SELECT 1 is never the problem).
      if (a.in_query) {
        EXPECT_EQ(a.code, ErrorCode::connection_lost);
      }
    }
  }
  EXPECT_GT(after_back, kThreads * 50);
  RecordProperty("failures", failures);
  RecordProperty("failures_in_query", failures_in_query);

  // Accounting. Idle connections that died with the old server are found only when next used:
  // take every connection the pool may have at once, so that each one is validated or opened.
  const std::uint32_t max = pool->options().max;
  {
    std::vector<Lease> all;
    std::set<std::int64_t> pids;
    for (std::uint32_t i = 0; i < max; ++i) {
      all.push_back(pool->acquire());
      pids.insert(backend_pid(all.back()));
    }
    EXPECT_EQ(pids.size(), max);
    EXPECT_EQ(pool->opened(), max);
  }
  // The pool's count and the server's agree (a closed session's backend exits asynchronously).
  std::int64_t on_server = -1;
  EXPECT_TRUE(eventually([&] {
    on_server = backends(server, app);
    return on_server == static_cast<std::int64_t>(pool->opened());
  })) << "pool opened "
      << pool->opened() << ", server has " << on_server;
  const auto st = pool->stats();
  EXPECT_EQ(st.busy, 0u);
  EXPECT_EQ(st.connecting, 0u);
  EXPECT_GE(st.opened, o.min);
  EXPECT_EQ(st.creates - st.drops, st.opened) << st.to_string();
  pool->close();
  EXPECT_TRUE(eventually([&] { return backends(server, app) == 0; }));
}

TEST_F(PgRestartTest, IdleConnectionsThatDiedInARestartAreReplacedBeforeHandOut) {
  auto own = start_own_server();
  if (!own) return;
  const PostgresServer& server = own->server();
  const std::string app = unique_name("app");
  auto o = options(server, app, 3, 3);
  o.ping_interval = 0ms;
  auto pool = Pool::create(o);
  std::set<std::int64_t> old_pids;
  {
    std::vector<Lease> all;
    for (int i = 0; i < 3; ++i) all.push_back(pool->acquire());
    for (auto& c : all) old_pids.insert(backend_pid(c));
  }
  ASSERT_EQ(old_pids.size(), 3u);

  own->restart();

  std::vector<Lease> all;
  std::set<std::int64_t> new_pids;
  for (int i = 0; i < 3; ++i) {
    all.push_back(pool->acquire());
    new_pids.insert(backend_pid(all.back()));  // the first statement after acquire works
  }
  EXPECT_EQ(new_pids.size(), 3u);
  for (const auto pid : new_pids) EXPECT_EQ(old_pids.count(pid), 0u) << pid;
  const auto st = pool->stats();
  EXPECT_EQ(st.closed_for(CloseReason::validation_failed), 3u) << st.to_string();
  EXPECT_EQ(st.opened, 3u);
  EXPECT_EQ(backends(server, app), 3);
}

TEST_F(PgRestartTest, WithoutPingTheFirstUseAfterARestartIsConnectionLostThenReplaced) {
  auto own = start_own_server();
  if (!own) return;
  const PostgresServer& server = own->server();
  const std::string app = unique_name("app");
  auto o = options(server, app, 1, 1);
  o.ping_interval = -1ms;  // never validate: the application meets the dead connection
  auto pool = Pool::create(o);
  std::int64_t old_pid = 0;
  {
    auto c = pool->acquire();
    old_pid = backend_pid(c);
  }

  own->restart();

  {
    auto c = pool->acquire();  // handed out unchecked
    const auto e = [&]() -> std::optional<Error> {
      try {
        c->query("SELECT 1");
      } catch (const Error& e) {
        return e;
      }
      return std::nullopt;
    }();
    ASSERT_TRUE(e.has_value()) << "a query on a session of the old server worked";
    EXPECT_EQ(e->code(), ErrorCode::connection_lost) << e->what();
    EXPECT_TRUE(e->retryable());
    EXPECT_TRUE(c->broken());
  }  // dropped, not kept
  EXPECT_EQ(pool->stats().closed_for(CloseReason::broken), 1u);
  auto c = pool->acquire();
  EXPECT_NE(backend_pid(c), old_pid);
  EXPECT_EQ(c->query("SELECT 1")[0][0].as<int>(), 1);
}

}  // namespace
}  // namespace reservoir
