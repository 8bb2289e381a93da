// tests/integration/mariadb_pool_test.cpp: the pool end to end on MariaDB: leases, get modes at the
// cap, rollback on release, reset on release, concurrent writers, a connection killed while it
// sat idle, and a wrong password failing Pool::create at once.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"
#include "support/mariadb_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using testing::MariaDbTest;

class MariaDbPoolTest : public MariaDbTest {
 protected:
  PoolOptions options(std::uint32_t min, std::uint32_t max) const {
    return testing::server_pool_options(maria().dsn, min, max, 10s);
  }

  static std::int64_t connection_id(Lease& c) {
    return c->query("SELECT CONNECTION_ID()")[0][0].as<std::int64_t>();
  }

  // Ends session id from a connection outside the pool, waiting until it is gone.
  void kill(std::int64_t id) {
    auto killer = connect();
    killer->execute("KILL " + std::to_string(id));
    EXPECT_TRUE(testing::eventually(
        [&] {
          return killer
                     ->query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?",
                             id)[0][0]
                     .as<std::int64_t>() == 0;
        },
        5s));
  }
};

TEST_F(MariaDbPoolTest, AcquireAndRelease) {
  auto pool = Pool::create(options(2, 4));
  EXPECT_EQ(pool->opened(), 2u);
  {
    auto c = pool->acquire();
    EXPECT_EQ(c->driver_name(), "mariadb");
    EXPECT_EQ(c->query("SELECT ? + 1", 41)[0][0].as<int>(), 42);
    EXPECT_EQ(pool->busy(), 1u);
  }
  EXPECT_EQ(pool->busy(), 0u);
  EXPECT_EQ(pool->idle(), 2u);
  pool->close();
}

TEST_F(MariaDbPoolTest, GetModesAtTheCap) {
  auto pool = Pool::create(options(1, 1));
  auto held = pool->acquire();
  const auto held_id = connection_id(held);

  try {
    auto c = pool->acquire({.get_mode = GetMode::no_wait});
    FAIL() << "acquired";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_exhausted) << e.what();
  }

  const auto start = std::chrono::steady_clock::now();
  try {
    auto c = pool->acquire({.get_mode = GetMode::timed_wait, .wait_timeout = 200ms});
    FAIL() << "acquired";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_timeout) << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 190ms);

  std::thread releaser([&] {
    EXPECT_TRUE(testing::eventually([&] { return pool->waiting() == 1; }));
    held.release();
  });
  auto c = pool->acquire({.get_mode = GetMode::timed_wait, .wait_timeout = 5s});
  EXPECT_EQ(connection_id(c), held_id);
  releaser.join();
}

TEST_F(MariaDbPoolTest, ReleaseInsideATransactionRollsBack) {
  const std::string table = unique_name();
  auto pool = Pool::create(options(1, 1));  // one session: the next lease gets the same one
  {
    auto c = pool->acquire();
    c->execute("CREATE TABLE " + table + "(x INT) ENGINE=InnoDB");
  }
  {
    auto c = pool->acquire();
    c->begin();
    c->execute("INSERT INTO " + table + " VALUES (?)", 1);
    EXPECT_TRUE(c->in_transaction());
  }  // released mid-transaction
  {
    auto c = pool->acquire();
    EXPECT_FALSE(c->in_transaction());
    EXPECT_EQ(c->query("SELECT COUNT(*) FROM " + table)[0][0].as<int>(), 0);
    c->execute("DROP TABLE " + table);
  }
  pool->close();
}

TEST_F(MariaDbPoolTest, ResetOnReleaseClearsTheSession) {
  auto o = options(1, 1);
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  std::int64_t id = 0;
  {
    auto c = pool->acquire();
    id = connection_id(c);
    c->execute("SET @x = 1");
    c->execute("CREATE TEMPORARY TABLE scratch(x INT)");
  }
  auto c = pool->acquire();
  EXPECT_EQ(connection_id(c), id);
  EXPECT_TRUE(c->query("SELECT @x")[0][0].is_null());
  EXPECT_THROW(c->query("SELECT * FROM scratch"), Error);
}

TEST_F(MariaDbPoolTest, ConcurrentWritersLoseNothing) {
  const std::string table = unique_name();
  auto pool = Pool::create(options(2, 4));
  {
    auto c = pool->acquire();
    c->execute("CREATE TABLE " + table + "(id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB");
    c->execute("INSERT INTO " + table + " VALUES (1, 0)");
    c->execute("CREATE TABLE " + table + "_log(v INT NOT NULL) ENGINE=InnoDB");
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
          c->execute("UPDATE " + table + " SET n = n + ? WHERE id = 1", 1);
          c->execute("INSERT INTO " + table + "_log(v) VALUES (?)", i);
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
  EXPECT_EQ(c->query("SELECT COUNT(*) FROM " + table + "_log")[0][0].as<int>(),
            kThreads * kIncrements);
  EXPECT_LE(pool->stats().opened, 4u);
  c->execute("DROP TABLE " + table + ", " + table + "_log");
}

TEST_F(MariaDbPoolTest, IdleConnectionKilledOnTheServerIsNotHandedOut) {
  auto o = options(1, 1);
  o.ping_interval = 0ms;  // validate every connection before it is handed out
  auto pool = Pool::create(o);
  std::int64_t id = 0;
  {
    auto c = pool->acquire();
    id = connection_id(c);
  }
  kill(id);
  auto c = pool->acquire();  // the dead one fails its ping and is replaced
  EXPECT_NE(connection_id(c), id);
  EXPECT_EQ(c->query("SELECT 1")[0][0].as<int>(), 1);
  EXPECT_EQ(pool->opened(), 1u);
}

TEST_F(MariaDbPoolTest, WrongPasswordFailsCreateWithAuthFailed) {
  auto o = options(1, 1);
  o.dsn = maria().dsn_for(maria().user, "not-the-password", maria().database);
  const auto start = std::chrono::steady_clock::now();
  try {
    auto pool = Pool::create(o);
    FAIL() << "created";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
    EXPECT_EQ(std::string(e.what()).find("not-the-password"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);  // at once, no retries
}

TEST_F(MariaDbPoolTest, UnknownDatabaseFailsCreateAtOnce) {
  auto o = options(1, 1);
  o.dsn = maria().dsn_for(maria().user, maria().password, "reservoir_no_such_db_4711");
  const auto start = std::chrono::steady_clock::now();
  try {
    auto pool = Pool::create(o);
    FAIL() << "created";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
    EXPECT_EQ(e.sqlstate(), "3D000");
    EXPECT_FALSE(e.retryable());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

}  // namespace
}  // namespace reservoir
