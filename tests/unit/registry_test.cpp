// tests/unit/registry_test.cpp: named pools (get_pool) and shared per-instance pools
// (shared_pool): keys, settings warnings, linger and revival, limits, and concurrent use.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::FakeDriver;

// Collects what a log hook receives. Thread-safe: hooks run on background threads too. The hook
// shares the collected state, so a pool that lingers past the test still logs into live memory.
class LogCapture {
 public:
  LogHook hook() {
    return [state = state_](LogLevel level, std::string_view message) {
      std::lock_guard lk(state->mutex);
      state->messages.emplace_back(level, std::string(message));
    };
  }
  std::vector<std::string> warnings() const {
    std::lock_guard lk(state_->mutex);
    std::vector<std::string> out;
    for (const auto& [level, text] : state_->messages) {
      if (level == LogLevel::warning) out.push_back(text);
    }
    return out;
  }
  bool any_contains(std::string_view needle) const {
    std::lock_guard lk(state_->mutex);
    return std::any_of(state_->messages.begin(), state_->messages.end(),
                       [&](const auto& m) { return m.second.find(needle) != std::string::npos; });
  }

 private:
  struct State {
    std::mutex mutex;
    std::vector<std::pair<LogLevel, std::string>> messages;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

class RegistryTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeDriver> fake = std::make_shared<FakeDriver>();

  void SetUp() override {
    // Short enough that linger tests finish fast; tests that need a pool to stay set their own.
    set_shared_pool_limits({.linger_time = 20ms});
    baseline_ = shared_pool_count();  // 0 unless a test before this one failed
  }

  void TearDown() override {
    // Every handle is gone by now: a zero linger closes whatever is still lingering, so the next
    // test starts with an empty registry.
    set_shared_pool_limits({.linger_time = 0ms});
    EXPECT_EQ(shared_pool_count(), 0u);
    for (const auto& name : pool_names()) get_pool(name)->close(true);
    set_shared_pool_limits({});
  }

  PoolOptions options(const std::string& dsn = "fake://host/db") {
    PoolOptions o;
    o.dsn = dsn;
    o.driver = fake;
    o.min = 1;
    o.max = 4;
    o.wait_timeout = 5s;
    return o;
  }

  static void expect_error(const std::function<void()>& f, ErrorCode code,
                           const std::vector<std::string>& fragments) {
    try {
      f();
      ADD_FAILURE() << "expected " << to_string(code);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      for (const auto& fragment : fragments) {
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
            << "'" << fragment << "' not in: " << e.what();
      }
    }
  }

  std::size_t baseline_ = 0;
};

// --- Named pools ---------------------------------------------------------------------------------

TEST_F(RegistryTest, GetPoolFindsANamedPool) {
  auto o = options();
  o.name = "orders";
  auto pool = Pool::create(o);
  EXPECT_EQ(get_pool("orders"), pool);
  auto names = pool_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "orders"), names.end());
  pool->close();
}

TEST_F(RegistryTest, UnknownNameErrorListsTheNamedPools) {
  auto a = options();
  a.name = "alpha";
  auto b = options();
  b.name = "beta";
  auto pa = Pool::create(a);
  auto pb = Pool::create(b);
  expect_error([] { (void)get_pool("gamma"); }, ErrorCode::invalid_argument,
               {"no pool named 'gamma'", "(named pools: ", "alpha, beta"});
  pa->close();
  pb->close();
}

TEST_F(RegistryTest, UnknownNameWithNoNamedPoolsSaysNone) {
  ASSERT_TRUE(pool_names().empty());
  expect_error([] { (void)get_pool("x"); }, ErrorCode::invalid_argument,
               {"no pool named 'x' (named pools: none)"});
}

TEST_F(RegistryTest, DuplicateNameIsRefusedAndTheSecondPoolClosed) {
  auto o = options();
  o.name = "dup";
  auto first = Pool::create(o);

  auto other = std::make_shared<FakeDriver>();
  auto o2 = options();
  o2.name = "dup";
  o2.driver = other;
  expect_error([&] { (void)Pool::create(o2); }, ErrorCode::invalid_argument,
               {"pool name 'dup' is already in use"});
  EXPECT_TRUE(eventually([&] { return other->live() == 0; }));  // nothing of it stays open
  EXPECT_EQ(get_pool("dup"), first);
  EXPECT_FALSE(first->closed());
  first->close();
}

TEST_F(RegistryTest, CloseRemovesTheNameAndFreesItForReuse) {
  auto o = options();
  o.name = "reused";
  auto first = Pool::create(o);
  first->close();
  expect_error([] { (void)get_pool("reused"); }, ErrorCode::invalid_argument,
               {"no pool named 'reused'"});
  auto second = Pool::create(o);
  EXPECT_EQ(get_pool("reused"), second);
  second->close();
}

TEST_F(RegistryTest, TheRegistryKeepsANamedPoolAliveUntilClosed) {
  auto o = options();
  o.name = "kept";
  std::weak_ptr<Pool> weak = Pool::create(o);
  ASSERT_FALSE(weak.expired());  // only the registry holds it now
  EXPECT_EQ(fake->live(), 1);
  get_pool("kept")->close();
  EXPECT_TRUE(weak.expired());
  EXPECT_TRUE(eventually([&] { return fake->live() == 0; }));
}

// --- Shared pools: keys -------------------------------------------------------------------------

TEST_F(RegistryTest, SameInstanceGetsTheSamePool) {
  SharedPool a = shared_pool(options("fake://app@host:7000/db"));
  SharedPool b = shared_pool(options("fake://app@host:7000/db"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a.pool(), b.pool());
  EXPECT_EQ(&*a, b.operator->());
  EXPECT_EQ(shared_pool_count(), baseline_ + 1);
  EXPECT_EQ(fake->live(), 1);
  auto lease = a->acquire();
  EXPECT_EQ(b->busy(), 1u);
}

TEST_F(RegistryTest, DifferentUserDatabaseOrPortGetDifferentPools) {
  SharedPool base = shared_pool(options("fake://app@host:7000/db"));
  SharedPool other_user = shared_pool(options("fake://admin@host:7000/db"));
  SharedPool other_db = shared_pool(options("fake://app@host:7000/db2"));
  SharedPool other_port = shared_pool(options("fake://app@host:7001/db"));
  SharedPool other_host = shared_pool(options("fake://app@host2:7000/db"));
  std::vector<Pool*> pools = {&*base, &*other_user, &*other_db, &*other_port, &*other_host};
  std::sort(pools.begin(), pools.end());
  EXPECT_EQ(std::unique(pools.begin(), pools.end()), pools.end());
  EXPECT_EQ(shared_pool_count(), baseline_ + 5);
}

TEST_F(RegistryTest, DefaultPortsAndOdbcAttributeOrderNameTheSameInstance) {
  SharedPool pg1 = shared_pool(options("postgresql://app@db1/shop"));
  SharedPool pg2 = shared_pool(options("postgres://app@db1:5432/shop"));
  EXPECT_EQ(pg1.pool(), pg2.pool());

  SharedPool odbc1 = shared_pool(options("odbc:DSN=shop;UID=app"));
  SharedPool odbc2 = shared_pool(options("odbc:uid=app; dsn=shop;"));
  EXPECT_EQ(odbc1.pool(), odbc2.pool());
  SharedPool odbc3 = shared_pool(options("odbc:DSN=shop;UID=other"));
  EXPECT_NE(odbc1.pool(), odbc3.pool());
}

// --- Shared pools: settings ---------------------------------------------------------------------

TEST_F(RegistryTest, DifferentSettingsWarnThroughTheCallersOwnHookWithoutThePassword) {
  LogCapture first_log, second_log;
  auto first = options("fake://app:first-secret-1@host/db");
  first.log = first_log.hook();
  auto second = options("fake://app:second-secret-2@host/db");
  second.max = 3;
  second.wait_timeout = 1s;
  second.log = second_log.hook();

  SharedPool a = shared_pool(first);
  SharedPool b = shared_pool(second);
  EXPECT_EQ(a.pool(), b.pool());  // the existing pool, with the first caller's settings
  EXPECT_EQ(b->options().max, 4u);

  EXPECT_TRUE(first_log.warnings().empty());
  auto warnings = second_log.warnings();
  ASSERT_EQ(warnings.size(), 1u);
  const std::string& w = warnings[0];
  EXPECT_NE(w.find("max (pool 4, requested 3)"), std::string::npos) << w;
  EXPECT_NE(w.find("wait_timeout (pool 5000 ms, requested 1000 ms)"), std::string::npos) << w;
  EXPECT_NE(w.find("password"), std::string::npos) << w;
  EXPECT_EQ(w.find("min"), std::string::npos) << w;  // only the fields that differ
  EXPECT_FALSE(first_log.any_contains("secret"));
  EXPECT_FALSE(second_log.any_contains("first-secret-1"));
  EXPECT_FALSE(second_log.any_contains("second-secret-2"));
}

TEST_F(RegistryTest, OdbcPasswordIsNotPartOfTheKeyButIsCompared) {
  LogCapture log;
  SharedPool a = shared_pool(options("odbc:DSN=shop;UID=app;PWD=one-secret"));
  auto o = options("odbc:DSN=shop;UID=app;PWD={two;secret}");
  o.log = log.hook();
  SharedPool b = shared_pool(o);
  EXPECT_EQ(a.pool(), b.pool());
  auto warnings = log.warnings();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("password"), std::string::npos) << warnings[0];
  EXPECT_FALSE(log.any_contains("secret"));
}

TEST_F(RegistryTest, SameSettingsDoNotWarn) {
  LogCapture log;
  auto o = options();
  o.log = log.hook();
  SharedPool a = shared_pool(o);
  SharedPool b = shared_pool(o);
  EXPECT_TRUE(log.warnings().empty());
}

// --- Shared pools: linger -----------------------------------------------------------------------

TEST_F(RegistryTest, LastHandleGoneThePoolLingersThenCloses) {
  SharedPool a = shared_pool(options());
  SharedPool copy = a;  // a copy is one more reference
  std::shared_ptr<Pool> pool = a.pool();
  a.reset();
  EXPECT_FALSE(a);
  EXPECT_FALSE(pool->closed());  // copy still holds it
  copy = SharedPool();
  ASSERT_TRUE(eventually([&] { return pool->closed(); }));
  EXPECT_TRUE(eventually([&] { return shared_pool_count() == baseline_; }));
  EXPECT_TRUE(eventually([&] { return fake->live() == 0; }));
}

TEST_F(RegistryTest, ACallDuringTheLingerRevivesThePool) {
  set_shared_pool_limits({.linger_time = 300ms});
  std::shared_ptr<Pool> pool;
  const auto dropped_at = std::chrono::steady_clock::now();
  {
    SharedPool a = shared_pool(options());
    pool = a.pool();
  }
  SharedPool revived = shared_pool(options());
  if (std::chrono::steady_clock::now() - dropped_at > 250ms) {
    GTEST_SKIP() << "the machine is too slow to revive within the linger time";
  }
  EXPECT_EQ(revived.pool(), pool);
  // The timer of the first linger must not close the revived pool. Nothing signals "the timer
  // ran and did nothing", so let the time pass.
  eventually([&] { return std::chrono::steady_clock::now() > dropped_at + 600ms; }, 2s);
  EXPECT_FALSE(pool->closed());
  EXPECT_EQ(revived->opened(), 1u);

  revived.reset();  // a new linger, with its own timer
  EXPECT_TRUE(eventually([&] { return pool->closed(); }));
}

TEST_F(RegistryTest, ALeaseHeldPastTheLingerIsRevokedWithAWarning) {
  LogCapture log;
  auto o = options();
  o.log = log.hook();
  SharedPool a = shared_pool(o);
  std::shared_ptr<Pool> pool = a.pool();
  Lease lease = a->acquire();
  a.reset();
  ASSERT_TRUE(eventually([&] { return pool->closed(); }));
  EXPECT_TRUE(log.any_contains("revoked"));
  expect_error([&] { (void)lease->execute("SELECT 1"); }, ErrorCode::pool_closed, {});
  lease.release();
  EXPECT_TRUE(eventually([&] { return fake->live() == 0; }));
}

TEST_F(RegistryTest, ZeroLingerClosesWhenTheLastHandleGoes) {
  set_shared_pool_limits({.linger_time = 0ms});
  SharedPool a = shared_pool(options());
  auto pool = a.pool();
  a.reset();
  EXPECT_TRUE(pool->closed());
  EXPECT_EQ(shared_pool_count(), baseline_);
}

TEST_F(RegistryTest, ANewLingerTimeAppliesToPoolsAlreadyLingering) {
  set_shared_pool_limits({.linger_time = 1h});
  SharedPool a = shared_pool(options("fake://host/a"));
  SharedPool b = shared_pool(options("fake://host/b"));
  auto pool_a = a.pool();
  auto pool_b = b.pool();
  a.reset();
  b.reset();
  set_shared_pool_limits({.linger_time = 1h + 1min});  // still lingering: a new timer
  EXPECT_FALSE(pool_a->closed());
  EXPECT_EQ(shared_pool_count(), baseline_ + 2);
  set_shared_pool_limits({.linger_time = 0ms});  // both are past it: closed in the call
  EXPECT_TRUE(pool_a->closed());
  EXPECT_TRUE(pool_b->closed());
  EXPECT_EQ(shared_pool_count(), baseline_);
}

TEST_F(RegistryTest, ASharedPoolClosedByHandLeavesTheRegistry) {
  SharedPool a = shared_pool(options());
  a->close();
  EXPECT_EQ(shared_pool_count(), baseline_);
  SharedPool b = shared_pool(options());
  EXPECT_NE(a.pool(), b.pool());
  EXPECT_FALSE(b->closed());
  a.reset();  // the old handle going does not touch the new pool
  EXPECT_FALSE(b->closed());
  EXPECT_EQ(shared_pool_count(), baseline_ + 1);
}

TEST_F(RegistryTest, ANamedSharedPoolIsFoundByNameUntilItLingersOut) {
  auto o = options("fake://host/named-db");
  o.name = "shared-and-named";
  SharedPool a = shared_pool(o);
  EXPECT_EQ(get_pool("shared-and-named"), a.pool());
  a.reset();
  EXPECT_TRUE(eventually([] {
    auto names = pool_names();
    return std::find(names.begin(), names.end(), "shared-and-named") == names.end();
  }));
}

// --- Shared pools: limits -----------------------------------------------------------------------

TEST_F(RegistryTest, MaxPoolsRefusesANewInstanceWhenAllHaveHandles) {
  set_shared_pool_limits(
      {.linger_time = 1h, .max_pools = static_cast<std::uint32_t>(baseline_ + 2)});
  SharedPool a = shared_pool(options("fake://host/a"));
  SharedPool b = shared_pool(options("fake://host/b"));
  expect_error([&] { (void)shared_pool(options("fake://host/c")); }, ErrorCode::pool_exhausted,
               {"fake://host/c", "max_pools = " + std::to_string(baseline_ + 2)});
  SharedPool again = shared_pool(options("fake://host/a"));  // existing instances still work
  EXPECT_EQ(again.pool(), a.pool());

  // A lingering pool makes room: the one that lingered longest is closed.
  auto pool_b = b.pool();
  b.reset();
  EXPECT_FALSE(pool_b->closed());  // lingering, for an hour
  SharedPool c = shared_pool(options("fake://host/c"));
  EXPECT_TRUE(pool_b->closed());
  EXPECT_FALSE(a->closed());
  EXPECT_EQ(shared_pool_count(), baseline_ + 2);
}

TEST_F(RegistryTest, MaxConnectionsPerPoolIsEnforcedNamingMax) {
  set_shared_pool_limits({.linger_time = 20ms, .max_connections_per_pool = 5});
  auto o = options();
  o.max = 6;
  expect_error([&] { (void)shared_pool(o); }, ErrorCode::invalid_argument,
               {"max: 6", "max_connections_per_pool = 5"});
  EXPECT_EQ(fake->attempts(), 0);
  o.max = 5;
  SharedPool ok = shared_pool(o);
  EXPECT_EQ(ok->options().max, 5u);
}

TEST_F(RegistryTest, LimitsAreCheckedAndReadBack) {
  expect_error([] { set_shared_pool_limits({.max_pools = 0}); }, ErrorCode::invalid_argument,
               {"max_pools"});
  expect_error([] { set_shared_pool_limits({.max_connections_per_pool = 0}); },
               ErrorCode::invalid_argument, {"max_connections_per_pool"});
  expect_error([] { set_shared_pool_limits({.linger_time = -1ms}); }, ErrorCode::invalid_argument,
               {"linger_time"});
  set_shared_pool_limits({.linger_time = 7ms, .max_pools = 3, .max_connections_per_pool = 9});
  const SharedPoolLimits l = shared_pool_limits();
  EXPECT_EQ(l.linger_time, 7ms);
  EXPECT_EQ(l.max_pools, 3u);
  EXPECT_EQ(l.max_connections_per_pool, 9u);
}

TEST_F(RegistryTest, BadOptionsAreRejectedAsByPoolCreate) {
  auto o = options();
  o.min = 5;
  o.max = 2;
  expect_error([&] { (void)shared_pool(o); }, ErrorCode::invalid_argument, {"min"});
  EXPECT_EQ(shared_pool_count(), baseline_);
}

TEST_F(RegistryTest, AFailedCreateLeavesNothingBehind) {
  auto o = options();
  o.fail_fast = true;
  fake->fail_all_connects(true);
  EXPECT_THROW((void)shared_pool(o), Error);
  EXPECT_EQ(shared_pool_count(), baseline_);
  fake->fail_all_connects(false);
  SharedPool a = shared_pool(o);
  EXPECT_FALSE(a->closed());
}

TEST_F(RegistryTest, AnEmptyHandleThrowsOnUse) {
  SharedPool empty;
  EXPECT_FALSE(empty);
  EXPECT_EQ(empty.pool(), nullptr);
  expect_error([&] { (void)empty->opened(); }, ErrorCode::invalid_argument, {"empty handle"});
  empty.reset();  // harmless
}

// --- Concurrency --------------------------------------------------------------------------------

TEST_F(RegistryTest, ConcurrentFirstCallsCreateOnePool) {
  constexpr int kThreads = 8;
  fake->set_connect_delay(5ms);  // widen the window in which creators could race
  std::latch start(kThreads);
  std::latch hold(kThreads);
  std::vector<std::shared_ptr<Pool>> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      SharedPool h = shared_pool(options("fake://host/race"));
      got[i] = h.pool();
      hold.arrive_and_wait();  // all handles alive at once: no linger can separate them
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& p : got) EXPECT_EQ(p, got[0]);
  EXPECT_EQ(fake->connects(), 1);
}

TEST_F(RegistryTest, ManyThreadsSharingLookingUpAndDroppingHandles) {
  set_shared_pool_limits({.linger_time = 2ms});
  auto named = options("fake://host/named");
  named.name = "concurrent";
  auto named_pool = Pool::create(named);

  constexpr int kThreads = 8;
  constexpr int kRounds = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int r = 0; r < kRounds; ++r) {
          const std::string dsn = "fake://host/db" + std::to_string((t + r) % 3);
          SharedPool h = shared_pool(options(dsn));
          SharedPool copy = h;
          if (r % 4 == 0) {
            auto lease = copy->acquire({.wait_timeout = 5s});
          }
          if (get_pool("concurrent") != named_pool) failures.fetch_add(1);
          (void)pool_names();
          (void)shared_pool_count();
          if (r % 50 == 0) std::this_thread::yield();
        }
      } catch (const std::exception& e) {
        // Every acquire goes through a live handle, so its pool cannot have lingered out.
        ADD_FAILURE() << e.what();
        failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  named_pool->close();
  EXPECT_TRUE(eventually([&] { return shared_pool_count() == baseline_; }));
  EXPECT_TRUE(eventually([&] { return fake->live() == 0; }));
}

}  // namespace
}  // namespace reservoir
