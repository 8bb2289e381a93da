// tests/integration/pg_pool_test.cpp: the pool end to end on PostgreSQL: leases, get modes at
// the cap, rollback on release, reset on release, concurrent writers, heterogeneous users, and
// a backend killed while its connection sat idle in the pool.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"
#include "support/postgres_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using testing::PostgresTest;

class PgPoolTest : public PostgresTest {
 protected:
  PoolOptions options(std::uint32_t min, std::uint32_t max) const {
    return testing::server_pool_options(pg().dsn, min, max, 10s);
  }

  static std::int64_t backend_pid(Lease& c) {
    return c->query("SELECT pg_backend_pid()")[0][0].as<std::int64_t>();
  }

  // Ends backend pid from a connection outside the pool, waiting until it is gone.
  void terminate(std::int64_t pid) {
    auto killer = connect();
    ASSERT_TRUE(killer->query("SELECT pg_terminate_backend($1::int, 5000)", pid)[0][0].as<bool>());
  }
};

TEST_F(PgPoolTest, AcquireAndRelease) {
  auto pool = Pool::create(options(2, 4));
  EXPECT_EQ(pool->opened(), 2u);
  {
    auto c = pool->acquire();
    EXPECT_EQ(c->driver_name(), "postgresql");
    EXPECT_EQ(c->query("SELECT $1::int + 1", 41)[0][0].as<int>(), 42);
    EXPECT_EQ(pool->busy(), 1u);
  }
  EXPECT_EQ(pool->busy(), 0u);
  EXPECT_EQ(pool->idle(), 2u);
  pool->close();
}

TEST_F(PgPoolTest, GetModesAtTheCap) {
  auto pool = Pool::create(options(1, 1));
  auto held = pool->acquire();
  const auto held_pid = backend_pid(held);

  const Error exhausted = [&] {
    try {
      auto c = pool->acquire({.get_mode = GetMode::no_wait});
    } catch (const Error& e) {
      return e;
    }
    return Error(ErrorCode::internal, "acquired");
  }();
  EXPECT_EQ(exhausted.code(), ErrorCode::pool_exhausted) << exhausted.what();

  const auto start = std::chrono::steady_clock::now();
  const Error timeout = [&] {
    try {
      auto c = pool->acquire({.get_mode = GetMode::timed_wait, .wait_timeout = 200ms});
    } catch (const Error& e) {
      return e;
    }
    return Error(ErrorCode::internal, "acquired");
  }();
  EXPECT_EQ(timeout.code(), ErrorCode::pool_timeout) << timeout.what();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 190ms);

  {
    auto extra = pool->acquire({.get_mode = GetMode::force_get});
    EXPECT_NE(backend_pid(extra), held_pid);  // a second session beyond max
    EXPECT_EQ(pool->opened(), 2u);
  }
  EXPECT_EQ(pool->opened(), 1u);  // the extra is closed on release, not kept
  held.release();
  pool->close();
}

TEST_F(PgPoolTest, WaiterGetsTheReleasedConnection) {
  auto pool = Pool::create(options(1, 1));
  auto held = pool->acquire();
  const auto pid = backend_pid(held);
  std::thread releaser([&] {
    // Released only once the acquire below is waiting for it.
    EXPECT_TRUE(testing::eventually([&] { return pool->waiting() == 1; }));
    held.release();
  });
  auto c = pool->acquire({.get_mode = GetMode::timed_wait, .wait_timeout = 5s});
  EXPECT_EQ(backend_pid(c), pid);
  releaser.join();
  EXPECT_EQ(pool->stats().waits, 1u);
}

TEST_F(PgPoolTest, ReleaseInsideATransactionRollsBack) {
  const std::string table = unique_name();
  auto pool = Pool::create(options(1, 1));  // one session: the next lease gets the same one
  {
    auto c = pool->acquire();
    c->execute("CREATE TABLE " + table + "(x int)");
  }
  {
    auto c = pool->acquire();
    c->begin();
    c->execute("INSERT INTO " + table + " VALUES ($1)", 1);
  }  // released mid-transaction
  {
    auto c = pool->acquire();
    EXPECT_FALSE(c->in_transaction());
    EXPECT_EQ(c->query("SELECT count(*) FROM " + table)[0][0].as<int>(), 0);
    c->begin();
    EXPECT_ANY_THROW(c->query("SELECT 1/0"));  // and a failed transaction
  }
  {
    auto c = pool->acquire();
    EXPECT_FALSE(c->in_transaction());
    EXPECT_EQ(c->query("SELECT 1")[0][0].as<int>(), 1);
    c->execute("DROP TABLE " + table);
  }
  pool->close();
}

TEST_F(PgPoolTest, ResetOnReleaseClearsTheSession) {
  auto o = options(1, 1);
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  {
    auto c = pool->acquire();
    c->execute("SET statement_timeout = 4321");
    c->execute("CREATE TEMP TABLE scratch(x int)");
  }
  auto c = pool->acquire();
  EXPECT_EQ(c->query("SHOW statement_timeout")[0][0], Value("0"));
  EXPECT_EQ(c->query("SELECT to_regclass('pg_temp.scratch') IS NULL")[0][0], Value(true));
}

TEST_F(PgPoolTest, ConcurrentWritersLoseNothing) {
  const std::string table = unique_name();
  auto pool = Pool::create(options(2, 4));
  {
    auto c = pool->acquire();
    c->execute("CREATE TABLE " + table + "(id int PRIMARY KEY, n int NOT NULL)");
    c->execute("INSERT INTO " + table + " VALUES (1, 0)");
    c->execute("CREATE TABLE " + table + "_log(v int NOT NULL)");
  }
  constexpr int kThreads = 8;
  constexpr int kIncrements = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        try {
          auto c = pool->acquire();
          auto tx = c->transaction();
          c->execute("UPDATE " + table + " SET n = n + $1 WHERE id = 1", 1);
          c->execute("INSERT INTO " + table + "_log(v) VALUES ($1)", i);
          tx.commit();
        } catch (const Error& e) {
          ADD_FAILURE() << e.what();
          failures.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto c = pool->acquire();
  EXPECT_EQ(c->query("SELECT n FROM " + table + " WHERE id = 1")[0][0].as<int>(),
            kThreads * kIncrements);
  EXPECT_EQ(c->query("SELECT count(*) FROM " + table + "_log")[0][0].as<int>(),
            kThreads * kIncrements);
  EXPECT_LE(pool->stats().opened, 4u);
  c->execute("DROP TABLE " + table + ", " + table + "_log");
}

TEST_F(PgPoolTest, IdleConnectionKilledOnTheServerIsNotHandedOut) {
  auto o = options(1, 1);
  o.ping_interval = 0ms;  // validate every connection before it is handed out
  auto pool = Pool::create(o);
  std::int64_t pid = 0;
  {
    auto c = pool->acquire();
    pid = backend_pid(c);
  }
  terminate(pid);
  auto c = pool->acquire();  // the dead one fails its ping and is replaced
  EXPECT_NE(backend_pid(c), pid);
  EXPECT_EQ(c->query("SELECT 1")[0][0].as<int>(), 1);
  EXPECT_EQ(pool->opened(), 1u);
}

TEST_F(PgPoolTest, BrokenConnectionIsDroppedOnRelease) {
  auto pool = Pool::create(options(1, 1));
  std::int64_t pid = 0;
  {
    auto c = pool->acquire();
    pid = backend_pid(c);
    terminate(pid);
    EXPECT_THROW(c->query("SELECT 1"), Error);
    EXPECT_TRUE(c->broken());
  }
  auto c = pool->acquire();
  EXPECT_NE(backend_pid(c), pid);
}

TEST_F(PgPoolTest, HeterogeneousUsersShareOneCap) {
  if (pg().other_user.empty()) GTEST_SKIP() << "no second role (RESERVOIR_PG_OTHER_DSN)";
  auto o = options(0, 2);
  o.homogeneous = false;
  auto pool = Pool::create(o);
  auto mine = pool->acquire();
  EXPECT_EQ(mine->query("SELECT current_user")[0][0].as<std::string>(), pg().user);
  auto other = pool->acquire({.user = pg().other_user, .password = pg().other_password});
  EXPECT_EQ(other->query("SELECT current_user")[0][0].as<std::string>(), pg().other_user);
  EXPECT_EQ(pool->opened(), 2u);
}

TEST_F(PgPoolTest, WrongPasswordFailsCreateWithAuthFailed) {
  auto o = options(1, 1);
  o.dsn = pg().dsn_for(pg().user, "not-the-password", pg().database);
  try {
    auto pool = Pool::create(o);
    FAIL() << "created";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
    EXPECT_EQ(std::string(e.what()).find("not-the-password"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace reservoir
