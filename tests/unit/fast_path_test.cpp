// tests/unit/fast_path_test.cpp: the acquire/release fast path allocates nothing and takes no
// lock. Allocation is counted by replacing the global operator new in this test program.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace reservoir {
namespace {

using namespace std::chrono_literals;

TEST(FastPathTest, AcquireAndReleaseOfAnIdleConnectionAllocateNothing) {
  auto fake = std::make_shared<testing::FakeDriver>();
  PoolOptions o;
  o.dsn = "fake://db";
  o.driver = fake;
  o.min = 2;
  o.max = 2;
  o.ping_interval = 1h;  // a ping would be the driver's business, not the pool's
  auto pool = Pool::create(o);
  { auto warm = pool->acquire(); }
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < 1000; ++i) {
    auto c = pool->acquire();
    c.release();
  }
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0);
  EXPECT_EQ(pool->stats().hits, 1001u);
}

TEST(FastPathTest, TaggedAndClassedAcquiresOfAMatchingConnectionAllocateNothing) {
  auto fake = std::make_shared<testing::FakeDriver>();
  PoolOptions o;
  o.dsn = "fake://db";
  o.driver = fake;
  o.min = 1;
  o.max = 1;
  o.ping_interval = 1h;
  auto pool = Pool::create(o);
  const AcquireOptions want{.tag = "tz=utc-and-a-long-tag-beyond-sso", .cclass = "REPORTING"};
  { auto c = pool->acquire(want); c.release(want.tag); }
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < 1000; ++i) {
    auto c = pool->acquire(want);
    c.release(want.tag);  // retagging with the tag it already has
  }
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0);
}

}  // namespace
}  // namespace reservoir
