// tests/unit/starvation_bound_test.cpp: the engine's starvation bound (docs/pool.md, "Waiting"):
// four times a waiter's fair wait, between 1 and 10 ms; and that a release hands its connection
// straight to a waiter past it.
#include "core/engine.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using core::Engine;

TEST(StarvationBound, IsOneMillisecondWhileTheReleaseRateIsUnknown) {
  EXPECT_EQ(Engine::starvation_bound(0, 0ns), 1ms);
  EXPECT_EQ(Engine::starvation_bound(100, 0ns), 1ms);
}

TEST(StarvationBound, IsFourFairWaitsBetweenOneAndTenMilliseconds) {
  // 56 waiters ahead, a release every 20 us: a fair wait of 57 * 20 us = 1.14 ms.
  EXPECT_EQ(Engine::starvation_bound(56, 20us), 4 * 57 * 20us);
  // Short queues and fast releases: the 1 ms floor (Go's mutex bound).
  EXPECT_EQ(Engine::starvation_bound(0, 20us), 1ms);
  EXPECT_EQ(Engine::starvation_bound(7, 20us), 1ms);
  // Long queues or slow releases: the 10 ms cap.
  EXPECT_EQ(Engine::starvation_bound(1000, 20us), 10ms);
  EXPECT_EQ(Engine::starvation_bound(0, 1s), 10ms);
  // It grows with the queue in between.
  EXPECT_LT(Engine::starvation_bound(20, 50us), Engine::starvation_bound(40, 50us));
}

TEST(StarvationBound, AWaiterWithADeadlineIsHandedConnectionsFromHalfItsWaitAtTheLatest) {
  const auto since = std::chrono::steady_clock::now();
  constexpr auto never = std::chrono::steady_clock::time_point::max();
  // Without a deadline (get mode wait), and with a long one: the bound alone (10 ms here).
  EXPECT_EQ(Engine::handoff_time(since, never, 0, 1s), since + 10ms);
  EXPECT_EQ(Engine::handoff_time(since, since + 5s, 0, 1s), since + 10ms);
  // A wait_timeout of 12 ms: from 6 ms on, not 10.
  EXPECT_EQ(Engine::handoff_time(since, since + 12ms, 0, 1s), since + 6ms);
  // Below the 1 ms floor too: a 1 ms timeout is handed connections after 0.5 ms.
  EXPECT_EQ(Engine::handoff_time(since, since + 1ms, 0, 0ns), since + 500us);
}

// A waiter past its bound is handed the released connection inside release() itself: the
// releasing thread, asking again at once, finds none free although the waiter has not taken it
// yet. (Without the hand-off the released connection would be idle, and the releasing thread's
// no_wait acquire would usually get it before the woken waiter runs.)
TEST(StarvationBound, AReleaseGoesStraightToAWaiterPastItsBound) {
  auto fake = std::make_shared<testing::FakeDriver>();
  PoolOptions o;
  o.dsn = "fake://db";
  o.driver = fake;
  o.min = 1;
  o.max = 1;
  o.wait_timeout = 5s;
  auto pool = Pool::create(o);
  for (int round = 0; round < 20; ++round) {
    Lease held = pool->acquire();
    std::atomic<bool> checked{false};
    std::thread waiter([&] {
      Lease l = pool->acquire();
      EXPECT_TRUE(testing::eventually([&] { return checked.load(); }));  // keeps it till then
    });
    ASSERT_TRUE(testing::eventually([&] { return pool->waiting() == 1; }));
    // Not synchronisation: ages the waiter past the largest bound.
    std::this_thread::sleep_for(Engine::kStarvationBoundMax + 2ms);
    held.release();
    try {
      Lease again = pool->acquire({.get_mode = GetMode::no_wait});
      ADD_FAILURE() << "round " << round << ": the releasing thread took the connection back";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::pool_exhausted);
    }
    checked = true;
    waiter.join();
  }
  EXPECT_EQ(pool->stats().timeouts, 0u);
}

}  // namespace
}  // namespace reservoir
