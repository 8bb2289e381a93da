// tests/integration/sqlite_pool_test.cpp: the pool end to end on the real SQLite driver:
// leases released inside a transaction are rolled back, concurrent writers through the pool
// lose nothing, and the get modes behave as on the fake driver.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;

class SqlitePoolTest : public ::testing::Test {
 protected:
  std::filesystem::path dir;
  std::string dsn;

  void SetUp() override {
    dir = std::filesystem::temp_directory_path() /
          ("reservoir-pool-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    dsn = "sqlite://" + (dir / "pool.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  std::shared_ptr<Pool> make(std::uint32_t min, std::uint32_t max) {
    PoolOptions o;
    o.dsn = dsn;
    o.min = min;
    o.max = max;
    o.wait_timeout = 5s;
    return Pool::create(o);
  }
};

TEST_F(SqlitePoolTest, DefaultDriverIsFoundByScheme) {
  auto pool = make(1, 2);
  auto c = pool->acquire();
  EXPECT_EQ(c->driver_name(), "sqlite");
  EXPECT_EQ(c->query("SELECT 40 + 2")[0][0].as<int>(), 42);
}

TEST_F(SqlitePoolTest, LeaseReleasedInsideATransactionIsRolledBack) {
  auto pool = make(1, 1);  // one connection: the next lease gets the same session
  {
    auto c = pool->acquire();
    c->execute("CREATE TABLE t(x INTEGER)");
  }
  {
    auto c = pool->acquire();
    c->begin();
    c->execute("INSERT INTO t VALUES ($1)", 1);
  }  // released mid-transaction
  auto c = pool->acquire();
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(c->query("SELECT count(*) FROM t")[0][0].as<int>(), 0);
}

TEST_F(SqlitePoolTest, TransactionScopeCommitsThroughThePool) {
  auto pool = make(2, 2);
  {
    auto c = pool->acquire();
    c->execute("CREATE TABLE t(x INTEGER)");
    auto tx = c->transaction();
    c->execute("INSERT INTO t VALUES ($1)", 7);
    tx.commit();
  }
  auto a = pool->acquire();
  auto b = pool->acquire();  // the other connection sees the commit
  EXPECT_EQ(b->query("SELECT x FROM t")[0][0].as<int>(), 7);
}

TEST_F(SqlitePoolTest, ConcurrentWritersThroughThePoolLoseNothing) {
  auto pool = make(2, 4);
  {
    auto c = pool->acquire();
    c->execute("CREATE TABLE counter(n INTEGER)");
    c->execute("INSERT INTO counter VALUES (0)");
  }
  constexpr int kThreads = 6, kIncrements = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        auto c = pool->acquire();
        c->execute("UPDATE counter SET n = n + 1");
      }
    });
  }
  for (auto& t : threads) t.join();
  auto c = pool->acquire();
  EXPECT_EQ(c->query("SELECT n FROM counter")[0][0].as<int>(), kThreads * kIncrements);
  EXPECT_LE(pool->opened(), 4u);
}

TEST_F(SqlitePoolTest, GetModesAtTheCap) {
  auto pool = make(1, 1);
  auto held = pool->acquire();
  try {
    (void)pool->acquire({.get_mode = GetMode::no_wait});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_exhausted);
  }
  try {
    (void)pool->acquire({.get_mode = GetMode::timed_wait, .wait_timeout = 20ms});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_timeout);
  }
  {
    auto extra = pool->acquire({.get_mode = GetMode::force_get});
    EXPECT_EQ(pool->opened(), 2u);
    EXPECT_EQ(extra->query("SELECT 1")[0][0].as<int>(), 1);
  }
  EXPECT_EQ(pool->opened(), 1u);
}

bool has_temp_table(Connection& c) {
  return c.query("SELECT count(*) FROM sqlite_temp_master WHERE name = 'scratch'")[0][0].as<int>() == 1;
}

TEST_F(SqlitePoolTest, ResetOnReleaseDropsSessionState) {
  PoolOptions o;
  o.dsn = dsn;
  o.min = 1;
  o.max = 1;
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  {
    auto c = pool->acquire();
    c->execute("CREATE TEMP TABLE scratch(x)");
    EXPECT_TRUE(has_temp_table(*c));
  }
  auto c = pool->acquire();  // the same connection (max 1), reset
  EXPECT_FALSE(has_temp_table(*c));
}

TEST_F(SqlitePoolTest, WithoutResetSessionStateStaysButTransactionsDoNot) {
  auto pool = make(1, 1);
  {
    auto c = pool->acquire();
    c->execute("CREATE TEMP TABLE scratch(x)");
    c->begin();
    c->execute("INSERT INTO scratch VALUES (1)");
  }
  auto c = pool->acquire();
  EXPECT_TRUE(has_temp_table(*c));
  EXPECT_EQ(c->query("SELECT count(*) FROM scratch")[0][0].as<int>(), 0);
}

TEST_F(SqlitePoolTest, SessionCallbackSetsUpTaggedState) {
  PoolOptions o;
  o.dsn = dsn;
  o.min = 0;
  o.max = 2;
  int calls = 0;
  o.session_callback = [&](Connection& c, std::string_view tag) {
    ++calls;
    c.execute(tag == "fk=on" ? "PRAGMA foreign_keys = ON" : "PRAGMA foreign_keys = OFF");
  };
  auto pool = Pool::create(o);
  {
    auto c = pool->acquire({.tag = "fk=on"});
    EXPECT_EQ(c->query("PRAGMA foreign_keys")[0][0].as<int>(), 1);
  }
  {
    auto c = pool->acquire({.tag = "fk=on"});  // the tagged session again: no call
    EXPECT_EQ(c->query("PRAGMA foreign_keys")[0][0].as<int>(), 1);
    EXPECT_EQ(c.tag(), "fk=on");
  }
  EXPECT_EQ(calls, 1);
  auto c = pool->acquire({.tag = "fk=off", .match_any_tag = true});
  EXPECT_EQ(c->query("PRAGMA foreign_keys")[0][0].as<int>(), 0);
  EXPECT_EQ(calls, 2);
}

TEST_F(SqlitePoolTest, ConnectionClassesKeepTheirOwnSessionsAndOthersGetThemReset) {
  auto pool = make(1, 1);
  {
    auto c = pool->acquire({.cclass = "A"});
    c->execute("CREATE TEMP TABLE scratch(x)");
  }
  {
    auto c = pool->acquire({.cclass = "A", .purity = Purity::self});
    EXPECT_TRUE(has_temp_table(*c));  // A's own session, as A left it
  }
  {
    auto c = pool->acquire({.cclass = "B"});
    EXPECT_FALSE(has_temp_table(*c));  // A's state does not reach B
  }
  const auto st = pool->stats();
  EXPECT_EQ(st.classes.at("A").hits, 1u);
  EXPECT_EQ(st.classes.at("B").misses, 1u);
}

TEST_F(SqlitePoolTest, UnopenableDatabaseFailsCreateWhenFailFast) {
  PoolOptions o;
  o.dsn = "sqlite://" + (dir / "no" / "such" / "dir" / "x.db").string();
  o.fail_fast = true;
  try {
    Pool::create(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::connect_failed);
  }
}

}  // namespace
}  // namespace reservoir
