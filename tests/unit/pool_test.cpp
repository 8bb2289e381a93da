// tests/unit/pool_test.cpp: the pool engine against the fault-injecting fake driver: sizing,
// get modes, FIFO waiting, leases, close, reconfigure and exact accounting.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::FakeConnection;
using testing::FakeDriver;

class PoolTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeDriver> fake = std::make_shared<FakeDriver>();

  PoolOptions options(std::uint32_t min, std::uint32_t max, std::uint32_t increment = 1) {
    PoolOptions o;
    o.dsn = "fake://db";
    o.driver = fake;
    o.min = min;
    o.max = max;
    o.increment = increment;
    o.wait_timeout = 5s;
    return o;
  }

  static std::uint64_t id_of(Lease& l) {
    return static_cast<FakeConnection&>(*l).id();
  }

  // Accounting is exact once nothing is in flight: every open connection is the pool's.
  void expect_quiet_accounting(Pool& pool) {
    ASSERT_TRUE(eventually([&] { return pool.stats().connecting == 0; }));
    EXPECT_EQ(pool.opened(), static_cast<std::uint32_t>(fake->live()));
    EXPECT_EQ(pool.opened(), pool.busy() + pool.idle());
  }
};

TEST_F(PoolTest, CreateOpensMinConnections) {
  auto pool = Pool::create(options(3, 5));
  EXPECT_EQ(pool->opened(), 3u);
  EXPECT_EQ(pool->idle(), 3u);
  EXPECT_EQ(pool->busy(), 0u);
  EXPECT_EQ(fake->live(), 3);
  EXPECT_EQ(pool->stats().creates, 3u);
}

TEST_F(PoolTest, BadOptionsAreRejectedNamingTheField) {
  auto expect_invalid = [&](PoolOptions o, const std::string& field) {
    try {
      Pool::create(o);
      FAIL() << "expected invalid_argument for " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_invalid(options(5, 3), "min");
  expect_invalid(options(0, 0), "max");
  auto o = options(1, 2);
  o.wait_timeout = -1ms;
  expect_invalid(o, "wait_timeout");
  o = options(1, 2);
  o.dsn = "nonsense";
  expect_invalid(o, "dsn");
  o = options(1, 2);
  o.driver = nullptr;
  o.dsn = "nosuchdb://host/db";
  expect_invalid(o, "nosuchdb");
  EXPECT_EQ(fake->attempts(), 0);  // nothing was opened for a pool that was refused
}

TEST_F(PoolTest, IdleConnectionIsAHitAndIsReused) {
  auto pool = Pool::create(options(1, 2));
  std::uint64_t first;
  {
    auto c = pool->acquire();
    first = id_of(c);
    EXPECT_EQ(pool->busy(), 1u);
  }
  {
    auto c = pool->acquire();
    EXPECT_EQ(id_of(c), first);
  }
  auto st = pool->stats();
  EXPECT_EQ(st.hits, 2u);
  EXPECT_EQ(st.misses, 0u);
  EXPECT_EQ(st.acquires, 2u);
  EXPECT_EQ(fake->connects(), 1);
}

TEST_F(PoolTest, MissOpensOneForTheCallerAndTheIncrementRestInTheBackground) {
  auto pool = Pool::create(options(0, 10, 3));
  EXPECT_EQ(pool->opened(), 0u);
  auto c = pool->acquire();
  EXPECT_EQ(pool->stats().misses, 1u);
  ASSERT_TRUE(eventually([&] { return pool->opened() == 3u && pool->idle() == 2u; }));
  EXPECT_EQ(fake->live(), 3);
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, CallerDoesNotWaitForTheBackgroundPartOfGrowth) {
  auto pool = Pool::create(options(0, 10, 4));
  // The caller's own connect goes through; then hold every further connect. If acquire waited
  // for the background ones, it would time out below.
  fake->set_connect_delay(0ms);
  std::atomic<bool> done{false};
  std::thread t([&] {
    auto c = pool->acquire();
    done = true;
  });
  t.join();
  EXPECT_TRUE(done);
  fake->hold_connects();
  auto c2 = pool->acquire();  // served by a background connection or its own: never blocked
  fake->release_connects();
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, GrowthIsCappedAtMax) {
  auto pool = Pool::create(options(0, 4, 3));
  std::vector<Lease> leases;
  for (int i = 0; i < 4; ++i) leases.push_back(pool->acquire());
  EXPECT_LE(pool->opened(), 4u);
  expect_quiet_accounting(*pool);
  EXPECT_EQ(pool->opened(), 4u);
  EXPECT_EQ(fake->live(), 4);
}

TEST_F(PoolTest, NoWaitAtTheCapFailsAtOnceWithPoolExhausted) {
  auto pool = Pool::create(options(1, 1));
  auto held = pool->acquire();
  try {
    (void)pool->acquire({.get_mode = GetMode::no_wait});
    FAIL() << "expected pool_exhausted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_exhausted);
    EXPECT_TRUE(e.retryable());
    EXPECT_NE(std::string(e.what()).find("busy=1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pool->stats().exhausted, 1u);
}

TEST_F(PoolTest, TimedWaitTimesOutWithLiveCounters) {
  auto o = options(2, 2);
  o.wait_timeout = 30ms;
  auto pool = Pool::create(o);
  auto a = pool->acquire();
  auto b = pool->acquire();
  try {
    (void)pool->acquire();
    FAIL() << "expected pool_timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_timeout);
    EXPECT_TRUE(e.retryable());
    const std::string msg = e.what();
    EXPECT_NE(msg.find("opened=2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("busy=2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("waiting="), std::string::npos) << msg;
  }
  auto st = pool->stats();
  EXPECT_EQ(st.timeouts, 1u);
  EXPECT_EQ(st.waits, 1u);
  EXPECT_EQ(st.waiting, 0u);
}

TEST_F(PoolTest, WhileConnectsFailWaitersTimeOutWithTheLastConnectError) {
  auto o = options(0, 1);
  o.wait_timeout = 300ms;
  o.backoff_initial = 5ms;
  o.backoff_max = 20ms;
  auto pool = Pool::create(o);
  fake->fail_all_connects(true);
  try {
    (void)pool->acquire();
    FAIL() << "expected pool_timeout";
  } catch (const Error& e) {
    // Not the bare connect error at once, and not a bare timeout: a timeout that says why.
    EXPECT_EQ(e.code(), ErrorCode::pool_timeout);
    EXPECT_NE(std::string(e.what()).find("Connection refused"), std::string::npos) << e.what();
  }
  EXPECT_GE(fake->attempts(), 2);  // it retried with backoff within the deadline
  EXPECT_NE(pool->stats().last_connect_error.find("Connection refused"), std::string::npos);
}

TEST_F(PoolTest, PerCallWaitTimeoutOverridesThePool) {
  auto pool = Pool::create(options(1, 1));  // pool's wait_timeout is 5 s
  auto held = pool->acquire();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW((void)pool->acquire({.wait_timeout = 10ms}), Error);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
}

TEST_F(PoolTest, WaiterIsServedWhenAConnectionIsReleased) {
  for (GetMode mode : {GetMode::wait, GetMode::timed_wait}) {
    auto o = options(1, 1);
    o.get_mode = mode;
    auto pool = Pool::create(o);
    const int connects_before = fake->connects();
    auto held = pool->acquire();
    const auto id = id_of(held);
    std::atomic<std::uint64_t> got{0};
    std::thread waiter([&] {
      auto c = pool->acquire();
      got = id_of(c);
    });
    ASSERT_TRUE(eventually([&] { return pool->waiting() == 1u; }));
    held.release();
    waiter.join();
    EXPECT_EQ(got.load(), id);
    EXPECT_EQ(pool->stats().waits, 1u);
    EXPECT_EQ(fake->connects(), connects_before);  // served by the released one, no new connect
    expect_quiet_accounting(*pool);
  }
}

TEST_F(PoolTest, WaitersAreServedFirstComeFirstServed) {
  auto pool = Pool::create(options(1, 1));
  auto held = pool->acquire();
  constexpr int kWaiters = 6;
  std::mutex m;
  std::vector<int> order;
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&, i] {
      auto c = pool->acquire();
      std::lock_guard lk(m);
      order.push_back(i);
    });
    // Let waiter i queue up before waiter i+1 starts.
    ASSERT_TRUE(eventually([&] { return pool->waiting() == static_cast<std::uint32_t>(i + 1); }));
  }
  held.release();
  for (auto& t : threads) t.join();
  std::vector<int> expected;
  for (int i = 0; i < kWaiters; ++i) expected.push_back(i);
  EXPECT_EQ(order, expected);
}

TEST_F(PoolTest, ForceGetOpensBeyondMaxAndClosesTheExtraOnRelease) {
  auto pool = Pool::create(options(0, 2));  // min 0: nothing reopens behind the test's back
  auto a = pool->acquire();
  auto b = pool->acquire();
  {
    auto extra = pool->acquire({.get_mode = GetMode::force_get});
    EXPECT_EQ(pool->opened(), 3u);
    EXPECT_EQ(fake->live(), 3);
  }
  EXPECT_EQ(pool->opened(), 2u);
  EXPECT_EQ(fake->live(), 2);
  EXPECT_EQ(pool->stats().drops, 1u);
  // Below max, a force_get connection is an ordinary one and is kept.
  a.release();
  b.drop();
  EXPECT_EQ(pool->opened(), 1u);
  {
    auto x = pool->acquire({.get_mode = GetMode::force_get});
    auto y = pool->acquire({.get_mode = GetMode::force_get});
  }
  EXPECT_EQ(pool->opened(), 2u);
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, ReleaseInsideATransactionRollsBack) {
  auto pool = Pool::create(options(1, 1));
  {
    auto c = pool->acquire();
    c->begin();
    EXPECT_TRUE(c->in_transaction());
  }
  EXPECT_EQ(fake->rollbacks(), 1);
  auto c = pool->acquire();
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(fake->connects(), 1);  // the same connection, rolled back and kept
}

TEST_F(PoolTest, FailedRollbackDiscardsTheConnection) {
  auto pool = Pool::create(options(1, 2));
  std::uint64_t dirty;
  {
    auto c = pool->acquire();
    dirty = id_of(c);
    c->execute("BEGIN");
    fake->fail_rollbacks(true);
  }
  fake->fail_rollbacks(false);
  EXPECT_EQ(pool->stats().drops, 1u);
  auto c = pool->acquire();
  EXPECT_NE(id_of(c), dirty);
  EXPECT_FALSE(c->in_transaction());
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, BrokenConnectionIsDiscardedOnRelease) {
  auto pool = Pool::create(options(1, 1));
  std::uint64_t broken;
  {
    auto c = pool->acquire();
    broken = id_of(c);
    EXPECT_THROW(c->execute("BREAK"), Error);
  }
  auto c = pool->acquire();
  EXPECT_NE(id_of(c), broken);
  EXPECT_EQ(pool->stats().drops, 1u);
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, DropClosesInsteadOfReturning) {
  auto pool = Pool::create(options(0, 1));
  auto c = pool->acquire();
  c.drop();
  EXPECT_FALSE(c);
  EXPECT_EQ(fake->live(), 0);
  c.drop();  // idempotent
  c.release();
  EXPECT_EQ(pool->stats().drops, 1u);
}

TEST_F(PoolTest, MinIsRestoredAfterADrop) {
  auto pool = Pool::create(options(2, 3));
  auto c = pool->acquire();
  c.drop();
  ASSERT_TRUE(eventually([&] { return pool->opened() == 2u; }));
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, LeaseIsMoveOnlyAndAnEmptyLeaseThrows) {
  auto pool = Pool::create(options(1, 1));
  Lease a = pool->acquire();
  Lease b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_TRUE(b);
  try {
    (void)a->ping();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::lease_invalid);
  }
  Lease c;
  c = std::move(b);
  EXPECT_EQ(pool->busy(), 1u);
  c = Lease();  // move-assigning releases what c held
  EXPECT_EQ(pool->busy(), 0u);
}

TEST_F(PoolTest, ConnectErrorOfTheCallersOwnConnectIsThrown) {
  auto pool = Pool::create(options(0, 2));
  fake->fail_with_auth(true);
  fake->fail_next_connects(1);
  try {
    (void)pool->acquire();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::auth_failed);
    EXPECT_EQ(e.sqlstate(), "28P01");
  }
  auto st = pool->stats();
  EXPECT_EQ(st.create_failures, 1u);
  EXPECT_EQ(st.opened, 0u);
  EXPECT_EQ(st.acquires, 1u);
  auto c = pool->acquire();  // the database is back
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, CreateSurvivesADownDatabaseAndFillsMinLater) {
  fake->fail_all_connects(true);
  auto pool = Pool::create(options(2, 4));
  EXPECT_EQ(pool->opened(), 0u);
  EXPECT_FALSE(pool->stats().last_connect_error.empty());
  fake->fail_all_connects(false);
  ASSERT_TRUE(eventually([&] { return pool->opened() == 2u; }));
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, FailFastCreateThrowsTheConnectError) {
  fake->fail_all_connects(true);
  auto o = options(2, 4);
  o.fail_fast = true;
  try {
    Pool::create(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::connect_failed);
    EXPECT_EQ(e.sqlstate(), "08001");
  }
  EXPECT_EQ(fake->live(), 0);
}

TEST_F(PoolTest, CloseWithoutForceFailsWhileLeasesAreOut) {
  auto pool = Pool::create(options(2, 2));
  auto c = pool->acquire();
  try {
    pool->close();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_busy);
  }
  EXPECT_FALSE(pool->closed());
  EXPECT_EQ(pool->opened(), 2u);
  auto d = pool->acquire();  // still fully usable
  c.release();
  d.release();
  pool->close();
  EXPECT_TRUE(pool->closed());
  EXPECT_EQ(fake->live(), 0);
  try {
    (void)pool->acquire();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_closed);
  }
  pool->close();  // twice is harmless
}

TEST_F(PoolTest, CloseIsNotHeldUpByBackgroundConnects) {
  auto pool = Pool::create(options(0, 4));
  fake->hold_connects();
  pool->reconfigure({.min = 2});  // two background attempts, held
  ASSERT_TRUE(eventually([&] { return fake->in_connect() == 2; }));
  EXPECT_NO_THROW(pool->close());
  fake->release_connects();
  ASSERT_TRUE(eventually([&] { return fake->in_connect() == 0 && fake->live() == 0; }));
  EXPECT_EQ(pool->opened(), 0u);
}

TEST_F(PoolTest, ForcedCloseRevokesOutstandingLeases) {
  auto pool = Pool::create(options(2, 2));
  auto c = pool->acquire();
  pool->close(true);
  EXPECT_EQ(fake->live(), 1);  // the leased one is closed when its lease ends
  try {
    c->execute("SELECT 1");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_closed);
  }
  c.release();
  EXPECT_EQ(fake->live(), 0);
  EXPECT_EQ(pool->opened(), 0u);
}

TEST_F(PoolTest, ForcedCloseFailsWaitersWithPoolClosed) {
  auto o = options(1, 1);
  o.get_mode = GetMode::wait;
  auto pool = Pool::create(o);
  auto held = pool->acquire();
  std::atomic<int> code{-1};
  std::thread waiter([&] {
    try {
      (void)pool->acquire();
    } catch (const Error& e) {
      code = static_cast<int>(e.code());
    }
  });
  ASSERT_TRUE(eventually([&] { return pool->waiting() == 1u; }));
  pool->close(true);
  waiter.join();
  EXPECT_EQ(code.load(), static_cast<int>(ErrorCode::pool_closed));
}

TEST_F(PoolTest, ForcedCloseRacingWithAcquirersLeavesNothingOpen) {
  for (int round = 0; round < 20; ++round) {
    auto pool = Pool::create(options(2, 4));
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&] {
        while (!stop) {
          try {
            auto c = pool->acquire({.wait_timeout = 50ms});
            c->execute("SELECT 1");
          } catch (const Error& e) {
            ASSERT_TRUE(e.code() == ErrorCode::pool_closed || e.code() == ErrorCode::pool_timeout)
                << e.what();
            if (e.code() == ErrorCode::pool_closed) return;
          }
        }
      });
    }
    pool->close(true);
    stop = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(pool->opened(), 0u);
    EXPECT_EQ(fake->live(), 0);
  }
}

TEST_F(PoolTest, LeaseOutlivesItsPool) {
  auto pool = Pool::create(options(2, 2));
  auto c = pool->acquire();
  pool.reset();  // the last handle: idle connections close, the lease keeps working
  EXPECT_EQ(fake->live(), 1);
  EXPECT_NO_THROW(c->execute("SELECT 1"));
  c.release();
  EXPECT_EQ(fake->live(), 0);
}

TEST_F(PoolTest, RevokedLeaseOutlivesItsPool) {
  auto pool = Pool::create(options(1, 1));
  auto c = pool->acquire();
  pool->close(true);
  pool.reset();
  EXPECT_THROW(c->execute("SELECT 1"), Error);
  c.release();
  EXPECT_EQ(fake->live(), 0);
}

TEST_F(PoolTest, ReconfigureRaisingMaxWakesAWaiter) {
  auto o = options(1, 1);
  o.get_mode = GetMode::wait;
  auto pool = Pool::create(o);
  auto held = pool->acquire();
  std::thread waiter([&] { auto c = pool->acquire(); });
  ASSERT_TRUE(eventually([&] { return pool->waiting() == 1u; }));
  pool->reconfigure({.max = 2});
  waiter.join();
  EXPECT_EQ(pool->opened(), 2u);
}

TEST_F(PoolTest, ReconfigureLoweringMaxClosesIdleNowAndBusyOnRelease) {
  auto pool = Pool::create(options(4, 4));
  auto a = pool->acquire();
  auto b = pool->acquire();
  pool->reconfigure({.min = 1, .max = 1});
  EXPECT_EQ(pool->idle(), 0u);
  EXPECT_EQ(pool->opened(), 2u);
  a.release();
  EXPECT_EQ(pool->opened(), 1u);
  b.release();
  EXPECT_EQ(pool->opened(), 1u);
  EXPECT_EQ(pool->options().max, 1u);
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, ReconfigureRaisingMinOpensInTheBackground) {
  auto pool = Pool::create(options(0, 5));
  pool->reconfigure({.min = 3});
  ASSERT_TRUE(eventually([&] { return pool->opened() == 3u; }));
  expect_quiet_accounting(*pool);
}

TEST_F(PoolTest, BadReconfigureChangesNothing) {
  auto pool = Pool::create(options(1, 3));
  try {
    pool->reconfigure({.min = 4});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  }
  EXPECT_EQ(pool->options().min, 1u);
  EXPECT_EQ(pool->options().max, 3u);
  pool->reconfigure({.get_mode = GetMode::no_wait, .wait_timeout = 1s});
  EXPECT_EQ(pool->options().get_mode, GetMode::no_wait);
}

TEST_F(PoolTest, StatsToStringNamesEveryCounter) {
  auto pool = Pool::create(options(1, 2));
  { auto c = pool->acquire(); }
  const std::string s = pool->stats().to_string();
  for (const char* key : {"opened=1", "busy=0", "idle=1", "hits=1", "misses=0", "creates=1"})
    EXPECT_NE(s.find(key), std::string::npos) << s;
}

}  // namespace
}  // namespace reservoir
