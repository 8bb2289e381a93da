// tests/unit/lifecycle_test.cpp: the pool's lifecycle against the fake driver and a manual
// clock: validation, idle and lifetime expiry, maintenance, connection storms, session reset,
// tags and the session callback, connection classes and purity, heterogeneous users, leak
// detection and observability.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
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

class LifecycleTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeDriver> fake = std::make_shared<FakeDriver>();
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  // Shared with the pool's log hook: background tasks may still log after a test body ends.
  struct LogSink {
    std::mutex mutex;
    std::vector<std::pair<LogLevel, std::string>> lines;
  };
  std::shared_ptr<LogSink> sink = std::make_shared<LogSink>();

  PoolOptions options(std::uint32_t min, std::uint32_t max) {
    PoolOptions o;
    o.dsn = "fake://app:s3cret-pw@db/shop";
    o.driver = fake;
    o.clock = clock;
    o.min = min;
    o.max = max;
    o.wait_timeout = 5s;
    o.maintenance_interval = 1h;  // the tests run maintenance themselves
    o.log = [sink = sink](LogLevel level, std::string_view msg) {
      std::lock_guard lk(sink->mutex);
      sink->lines.emplace_back(level, std::string(msg));
    };
    return o;
  }

  static std::uint64_t id_of(Lease& l) { return static_cast<FakeConnection&>(*l).id(); }
  static FakeConnection& fc(Lease& l) { return static_cast<FakeConnection&>(*l); }

  std::vector<std::string> messages(LogLevel at_least) {
    std::lock_guard lk(sink->mutex);
    std::vector<std::string> out;
    for (auto& [level, msg] : sink->lines)
      if (level >= at_least) out.push_back(msg);
    return out;
  }
};

// ---- health ------------------------------------------------------------------------------------

TEST_F(LifecycleTest, ConnectionIdleLongerThanPingIntervalIsPingedBeforeHandOut) {
  auto o = options(1, 1);
  o.ping_interval = 10s;
  auto pool = Pool::create(o);
  { auto c = pool->acquire(); }
  EXPECT_EQ(fake->pings(), 0);  // idle for no time at all: no ping
  clock->advance(11s);
  { auto c = pool->acquire(); }
  EXPECT_EQ(fake->pings(), 1);
}

TEST_F(LifecycleTest, PingIntervalZeroPingsAlwaysAndNegativeNever) {
  auto o = options(1, 1);
  o.ping_interval = 0ms;
  auto always = Pool::create(o);
  for (int i = 0; i < 3; ++i) auto c = always->acquire();
  EXPECT_EQ(fake->pings(), 3);
  o.ping_interval = -1ms;
  auto never = Pool::create(o);
  clock->advance(24h);
  for (int i = 0; i < 3; ++i) auto c = never->acquire();
  EXPECT_EQ(fake->pings(), 3);
}

TEST_F(LifecycleTest, FailedValidationIsDiscardedAndTheAcquirerGetsAnotherWithoutError) {
  auto o = options(0, 3);  // min 0: nothing reopens in the background meanwhile
  o.ping_interval = 0ms;
  auto pool = Pool::create(o);
  {
    auto a = pool->acquire();
    auto b = pool->acquire();
  }
  fake->break_all();  // both idle connections died while idle
  auto c = pool->acquire();
  EXPECT_FALSE(c->broken());
  auto st = pool->stats();
  EXPECT_EQ(st.ping_failures, 2u);
  EXPECT_EQ(st.closed_for(CloseReason::validation_failed), 2u);
  EXPECT_EQ(fake->live(), static_cast<int>(pool->opened()));
}

TEST_F(LifecycleTest, WaiterKeepsItsPlaceWhenTheConnectionItIsHandedFailsValidation) {
  auto o = options(1, 1);
  o.ping_interval = 0ms;
  o.get_mode = GetMode::wait;
  auto pool = Pool::create(o);
  auto held = pool->acquire();
  std::atomic<bool> served{false};
  std::thread waiter([&] {
    auto c = pool->acquire();
    EXPECT_FALSE(c->broken());
    served = true;
  });
  ASSERT_TRUE(eventually([&] { return pool->waiting() == 1u; }));
  fake->break_all();
  held.release();  // broken: closed on release; the waiter gets a new one, no error
  waiter.join();
  EXPECT_TRUE(served);
}

TEST_F(LifecycleTest, ConnectionReportedLostIsDiscardedOnRelease) {
  auto pool = Pool::create(options(1, 1));
  {
    auto c = pool->acquire();
    EXPECT_THROW(c->execute("BREAK"), Error);
  }
  EXPECT_EQ(pool->stats().closed_for(CloseReason::broken), 1u);
}

TEST_F(LifecycleTest, ReconfigureChangesPingIntervalIdleTimeoutAndLifetime) {
  auto o = options(0, 2);
  o.ping_interval = -1ms;
  auto pool = Pool::create(o);
  { auto c = pool->acquire(); }
  pool->reconfigure({.ping_interval = 0ms, .idle_timeout = 5s, .max_lifetime = 60s});
  { auto c = pool->acquire(); }
  EXPECT_EQ(fake->pings(), 1);
  clock->advance(6s);
  pool->run_maintenance();
  EXPECT_EQ(pool->opened(), 0u);  // idle past the new idle_timeout, min is 0
  EXPECT_EQ(pool->options().idle_timeout, 5s);
  EXPECT_EQ(pool->options().max_lifetime, 60s);
  EXPECT_THROW(pool->reconfigure({.idle_timeout = -1ms}), Error);
}

// ---- expiry and maintenance ---------------------------------------------------------------------

TEST_F(LifecycleTest, IdleConnectionsAboveMinCloseAfterIdleTimeout) {
  auto o = options(1, 4);
  o.idle_timeout = 60s;
  auto pool = Pool::create(o);
  {
    std::vector<Lease> leases;
    for (int i = 0; i < 4; ++i) leases.push_back(pool->acquire());
  }
  EXPECT_EQ(pool->opened(), 4u);
  clock->advance(30s);
  pool->run_maintenance();
  EXPECT_EQ(pool->opened(), 4u);  // not yet
  clock->advance(31s);
  pool->run_maintenance();
  EXPECT_EQ(pool->opened(), 1u);  // min is kept
  EXPECT_EQ(pool->stats().closed_for(CloseReason::idle_timeout), 3u);
  EXPECT_EQ(fake->live(), 1);
}

TEST_F(LifecycleTest, ExpiredConnectionIsClosedWhenNextIdleAndMinIsRestored) {
  auto o = options(1, 2);
  o.max_lifetime = 100s;
  o.lifetime_jitter = 1s;
  auto pool = Pool::create(o);
  std::uint64_t first;
  {
    auto c = pool->acquire();
    first = id_of(c);
    clock->advance(101s);
  }  // expired while in use: closed on release, not handed on
  EXPECT_EQ(pool->stats().closed_for(CloseReason::lifetime), 1u);
  ASSERT_TRUE(eventually([&] { return pool->opened() == 1u; }));  // min restored
  auto c = pool->acquire();
  EXPECT_NE(id_of(c), first);
}

TEST_F(LifecycleTest, MaintenanceClosesIdleExpiredConnections) {
  auto o = options(2, 2);
  o.max_lifetime = 100s;
  o.lifetime_jitter = 1s;
  auto pool = Pool::create(o);
  clock->advance(101s);
  pool->run_maintenance();
  EXPECT_EQ(pool->stats().closed_for(CloseReason::lifetime), 2u);
  ASSERT_TRUE(eventually([&] { return pool->opened() == 2u; }));
}

TEST_F(LifecycleTest, LifetimeJitterSpreadsReplacements) {
  auto o = options(20, 20);
  o.max_lifetime = 100s;
  o.lifetime_jitter = 50s;
  auto pool = Pool::create(o);
  clock->advance(75s);  // each expires somewhere in (50 s, 100 s]
  pool->run_maintenance();
  const auto closed = pool->stats().closed_for(CloseReason::lifetime);
  EXPECT_GT(closed, 0u);
  EXPECT_LT(closed, 20u);
}

TEST_F(LifecycleTest, BackgroundMaintenanceRunsByItself) {
  auto o = options(1, 3);
  o.idle_timeout = 1ms;
  o.clock = nullptr;  // real time
  o.maintenance_interval = 10ms;
  auto pool = Pool::create(o);
  {
    std::vector<Lease> leases;
    for (int i = 0; i < 3; ++i) leases.push_back(pool->acquire());
  }
  ASSERT_TRUE(eventually([&] { return pool->opened() == 1u; }));
}

// ---- connection storms ------------------------------------------------------------------------

TEST_F(LifecycleTest, AtMostMaxConnectingAttemptsRunAtOnce) {
  auto o = options(0, 10);
  o.max_connecting = 2;
  o.increment = 5;
  auto pool = Pool::create(o);
  fake->hold_connects();
  std::atomic<int> most{0};
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    while (!stop) {
      int n = fake->in_connect();
      int m = most.load();
      while (n > m && !most.compare_exchange_weak(m, n)) {
      }
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> acquirers;
  for (int i = 0; i < 6; ++i) acquirers.emplace_back([&] { auto c = pool->acquire(); });
  ASSERT_TRUE(eventually([&] { return fake->in_connect() == 2; }));
  fake->release_connects();
  for (auto& t : acquirers) t.join();
  stop = true;
  watcher.join();
  EXPECT_LE(most.load(), 2);
  EXPECT_GE(pool->opened(), 2u);
}

TEST_F(LifecycleTest, AcquireFailsFastWhenTheBackoffLeavesNoAttemptBeforeItsDeadline) {
  auto o = options(0, 2);
  o.backoff_initial = 2s;
  o.backoff_max = 2s;
  o.wait_timeout = 100ms;
  auto pool = Pool::create(o);
  fake->fail_all_connects(true);
  EXPECT_THROW((void)pool->acquire(), Error);  // one real attempt fails; backoff is now 2 s
  const int attempts = fake->attempts();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    (void)pool->acquire();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::pool_timeout);
    EXPECT_NE(std::string(e.what()).find("unreachable"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Connection refused"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 90ms);  // did not sit out its deadline
  EXPECT_EQ(fake->attempts(), attempts);                  // and did not hammer the database
}

TEST_F(LifecycleTest, NonRetryableConnectErrorsReachTheCallerAtOnce) {
  auto pool = Pool::create(options(0, 2));
  fake->fail_with_auth(true);
  fake->fail_all_connects(true);
  try {
    (void)pool->acquire();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::auth_failed);
    EXPECT_FALSE(e.retryable());
  }
}

TEST_F(LifecycleTest, PoolRefillsWithinOneBackoffStepOnceTheDatabaseIsBack) {
  fake->fail_all_connects(true);
  auto o = options(3, 3);
  o.backoff_initial = 20ms;
  o.backoff_max = 40ms;
  auto pool = Pool::create(o);
  ASSERT_TRUE(eventually([&] { return fake->attempts() >= 3; }));  // it keeps trying
  fake->fail_all_connects(false);
  ASSERT_TRUE(eventually([&] { return pool->opened() == 3u && pool->idle() == 3u; }, 2s));
}

// ---- session reset ------------------------------------------------------------------------------

TEST_F(LifecycleTest, ResetOnReleaseClearsSessionState) {
  auto o = options(1, 1);
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  {
    auto c = pool->acquire();
    c->execute("SET search_path=evil");
  }
  auto c = pool->acquire();
  EXPECT_EQ(c->query("SHOW")[0][0].as<std::string>(), "");
  EXPECT_EQ(fake->resets(), 1);
}

TEST_F(LifecycleTest, WithoutResetOnlyAnOpenTransactionIsRolledBack) {
  auto pool = Pool::create(options(1, 1));
  {
    auto c = pool->acquire();
    c->execute("SET tz=utc");
    c->begin();
  }
  auto c = pool->acquire();
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(c->query("SHOW")[0][0].as<std::string>(), "tz=utc");
  EXPECT_EQ(fake->resets(), 0);
}

TEST_F(LifecycleTest, FailedResetDiscardsTheConnection) {
  auto o = options(1, 2);
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  fake->fail_resets(true);
  { auto c = pool->acquire(); }
  fake->fail_resets(false);
  EXPECT_EQ(pool->stats().closed_for(CloseReason::reset_failed), 1u);
}

// ---- tags and the session callback ------------------------------------------------------------

TEST_F(LifecycleTest, SessionCallbackRunsForNewConnectionsAndOnTagMismatch) {
  std::vector<std::string> calls;
  auto o = options(0, 2);
  o.session_callback = [&](Connection& c, std::string_view tag) {
    calls.emplace_back(tag);
    c.execute("SET " + std::string(tag));
  };
  auto pool = Pool::create(o);
  {
    auto c = pool->acquire({.tag = "tz=utc"});
    EXPECT_EQ(c.tag(), "tz=utc");
    EXPECT_EQ(fc(c).session_var(), "tz=utc");
  }
  { auto c = pool->acquire({.tag = "tz=utc"}); }  // exact match: no call
  EXPECT_EQ(calls, std::vector<std::string>{"tz=utc"});
  {
    auto c = pool->acquire({.tag = "tz=cet"});  // only a differently tagged one: callback fixes it
    EXPECT_EQ(c.tag(), "tz=cet");
  }
  EXPECT_EQ(calls, (std::vector<std::string>{"tz=utc", "tz=cet"}));
}

TEST_F(LifecycleTest, SessionCallbackRunsForConnectionsOpenedAhead) {
  std::atomic<int> calls{0};
  auto o = options(2, 4);  // two opened by create(), before anyone asked
  o.increment = 2;
  o.session_callback = [&](Connection& c, std::string_view) {
    ++calls;
    c.execute("SET initialised");
  };
  auto pool = Pool::create(o);
  std::vector<Lease> all;
  for (int i = 0; i < 4; ++i) {
    all.push_back(pool->acquire());
    EXPECT_EQ(fc(all.back()).session_var(), "initialised") << "lease " << i;
  }
  EXPECT_EQ(calls.load(), 4);
}

TEST_F(LifecycleTest, AcquireByTagPrefersAnIdleConnectionWithExactlyThatTag) {
  auto pool = Pool::create(options(0, 3));
  std::uint64_t a, b;
  {
    auto x = pool->acquire();
    auto y = pool->acquire();
    a = id_of(x);
    b = id_of(y);
    x.release("role=a");
    y.release("role=b");
  }
  auto c = pool->acquire({.tag = "role=b"});
  EXPECT_EQ(id_of(c), b);
  EXPECT_EQ(c.tag(), "role=b");
  auto d = pool->acquire({.tag = "role=a"});
  EXPECT_EQ(id_of(d), a);
}

TEST_F(LifecycleTest, UntaggedConnectionsAreEligibleAndOtherTagsOnlyWithMatchAnyTag) {
  auto pool = Pool::create(options(0, 2));
  std::uint64_t tagged;
  {
    auto x = pool->acquire();
    tagged = id_of(x);
    x.release("role=a");
  }
  {
    // Room to grow: a new (untagged) connection rather than another tag's.
    auto c = pool->acquire({.tag = "role=b"});
    EXPECT_NE(id_of(c), tagged);
    EXPECT_EQ(c.tag(), "");  // no callback: the tag is what the session carries
  }
  auto any = pool->acquire({.tag = "role=c", .match_any_tag = true});
  (void)any;
  auto plain = pool->acquire();  // no tag asked: anything idle is fine
  (void)plain;
  EXPECT_EQ(pool->opened(), 2u);
}

TEST_F(LifecycleTest, AtTheCapAnotherTagBeatsWaiting) {
  auto o = options(1, 1);
  o.wait_timeout = 50ms;
  auto pool = Pool::create(o);
  { auto x = pool->acquire(); x.release("role=a"); }
  auto c = pool->acquire({.tag = "role=b"});  // nothing else can be had
  EXPECT_EQ(c.tag(), "role=a");
}

TEST_F(LifecycleTest, ThrowingSessionCallbackClosesTheConnectionAndPropagates) {
  auto o = options(0, 1);
  o.session_callback = [](Connection&, std::string_view) { throw std::runtime_error("nope"); };
  auto pool = Pool::create(o);
  EXPECT_THROW((void)pool->acquire({.tag = "x"}), std::runtime_error);
  EXPECT_EQ(pool->opened(), 0u);
  EXPECT_EQ(fake->live(), 0);
  EXPECT_EQ(pool->stats().closed_for(CloseReason::session_callback), 1u);
}

TEST_F(LifecycleTest, ResetOnReleaseDropsTags) {
  auto o = options(1, 1);
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  { auto x = pool->acquire(); x.release("role=a"); }
  auto c = pool->acquire({.tag = "role=a"});
  EXPECT_EQ(c.tag(), "");
}

// ---- connection classes and purity -----------------------------------------------------------

TEST_F(LifecycleTest, PuritySelfGetsTheClassesOwnSessionUnreset) {
  auto pool = Pool::create(options(0, 2));
  std::uint64_t id;
  {
    auto c = pool->acquire({.cclass = "REPORTING"});
    id = id_of(c);
    c->execute("SET work_mem=1GB");
  }
  auto c = pool->acquire({.cclass = "REPORTING", .purity = Purity::self});
  EXPECT_EQ(id_of(c), id);
  EXPECT_EQ(c->query("SHOW")[0][0].as<std::string>(), "work_mem=1GB");
  EXPECT_EQ(fake->resets(), 0);
  const auto st = pool->stats();
  ASSERT_EQ(st.classes.count("REPORTING"), 1u);
  EXPECT_EQ(st.classes.at("REPORTING").requests, 2u);
  EXPECT_EQ(st.classes.at("REPORTING").hits, 1u);
  EXPECT_EQ(st.classes.at("REPORTING").misses, 1u);  // the first one was opened
}

TEST_F(LifecycleTest, AnotherClassOrPurityNewGetsAResetSession) {
  auto pool = Pool::create(options(1, 1));
  {
    auto c = pool->acquire({.cclass = "A"});
    c->execute("SET secret=a");
  }
  {
    auto c = pool->acquire({.cclass = "B"});
    EXPECT_EQ(c->query("SHOW")[0][0].as<std::string>(), "");  // A's state never reaches B
    c->execute("SET secret=b");
  }
  {
    auto c = pool->acquire({.cclass = "B", .purity = Purity::new_});
    EXPECT_EQ(c->query("SHOW")[0][0].as<std::string>(), "");
  }
  EXPECT_EQ(fake->resets(), 2);
  const auto st = pool->stats();
  EXPECT_EQ(st.classes.at("A").misses, 1u);
  EXPECT_EQ(st.classes.at("B").misses, 1u);
}

TEST_F(LifecycleTest, ClassWaitsAreCounted) {
  auto o = options(1, 1);
  o.wait_timeout = 10ms;
  auto pool = Pool::create(o);
  auto held = pool->acquire();
  EXPECT_THROW((void)pool->acquire({.cclass = "BATCH"}), Error);
  EXPECT_EQ(pool->stats().classes.at("BATCH").waits, 1u);
}

// ---- heterogeneous pools -----------------------------------------------------------------------

TEST_F(LifecycleTest, HeterogeneousPoolAuthenticatesEachUser) {
  auto o = options(0, 4);
  o.homogeneous = false;
  auto pool = Pool::create(o);
  auto a = pool->acquire({.user = "alice", .password = "pa"});
  auto b = pool->acquire({.user = "bob", .password = "pb"});
  EXPECT_EQ(fc(a).user(), "alice");
  EXPECT_EQ(fc(b).user(), "bob");
  auto d = pool->acquire();  // the DSN's user
  EXPECT_EQ(fc(d).user(), "app");
}

TEST_F(LifecycleTest, HomogeneousPoolRefusesPerCallUsers) {
  auto pool = Pool::create(options(0, 1));
  try {
    (void)pool->acquire({.user = "alice", .password = "x"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  }
}

TEST_F(LifecycleTest, AConnectionIsReusedOnlyWithTheSameUserAndPassword) {
  auto o = options(0, 4);
  o.homogeneous = false;
  auto pool = Pool::create(o);
  std::uint64_t id;
  {
    auto a = pool->acquire({.user = "alice", .password = "right"});
    id = id_of(a);
  }
  {
    auto again = pool->acquire({.user = "alice", .password = "right"});
    EXPECT_EQ(id_of(again), id);
  }
  auto wrong = pool->acquire({.user = "alice", .password = "guess"});
  EXPECT_NE(id_of(wrong), id);  // authenticated anew, never handed alice's session
}

TEST_F(LifecycleTest, AtMaxTheLeastRecentlyUsedIdleConnectionOfAnotherUserMakesRoom) {
  auto o = options(0, 2);
  o.homogeneous = false;
  auto pool = Pool::create(o);
  std::uint64_t alice_id, bob_id;
  {
    auto a = pool->acquire({.user = "alice", .password = "pa"});
    alice_id = id_of(a);
  }
  clock->advance(1s);
  {
    auto b = pool->acquire({.user = "bob", .password = "pb"});
    bob_id = id_of(b);
  }
  auto c = pool->acquire({.user = "carol", .password = "pc"});
  EXPECT_EQ(fc(c).user(), "carol");
  EXPECT_EQ(pool->opened(), 2u);
  auto b = pool->acquire({.user = "bob", .password = "pb"});
  EXPECT_EQ(id_of(b), bob_id);  // bob's (more recent) survived; alice's was evicted
  EXPECT_EQ(pool->stats().closed_for(CloseReason::shrink), 1u);
  (void)alice_id;
}

TEST_F(LifecycleTest, UsersNeverShareSessionsUnderConcurrency) {
  auto o = options(0, 4);
  o.homogeneous = false;
  o.clock = nullptr;
  auto pool = Pool::create(o);
  std::atomic<int> wrong{0}, ok{0};
  std::vector<std::thread> threads;
  const std::vector<std::string> users = {"u0", "u1", "u2", "u3", "u4", "u5"};
  for (const auto& user : users) {
    threads.emplace_back([&, user] {
      for (int i = 0; i < 300; ++i) {
        try {
          auto c = pool->acquire({.user = user, .password = "pw-" + user});
          if (fc(c).user() != user) ++wrong;
          ++ok;
        } catch (const Error& e) {
          ASSERT_EQ(e.code(), ErrorCode::pool_timeout) << e.what();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_LE(pool->opened(), 4u);
  EXPECT_EQ(static_cast<int>(pool->opened()), fake->live());
}

// ---- leaks and observability -------------------------------------------------------------------

TEST_F(LifecycleTest, LeakedLeaseIsReportedOnceWithWhereItWasAcquired) {
  auto o = options(1, 1);
  o.leak_threshold = 10s;
  auto pool = Pool::create(o);
  auto c = pool->acquire();
  const int line = __LINE__ - 1;
  clock->advance(11s);
  pool->run_maintenance();
  pool->run_maintenance();
  auto warnings = messages(LogLevel::warning);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("lifecycle_test.cpp:" + std::to_string(line)), std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find("11000 ms"), std::string::npos) << warnings[0];
  EXPECT_EQ(pool->stats().leaks, 1u);
}

TEST_F(LifecycleTest, StatsReportHoldAndWaitTimes) {
  auto pool = Pool::create(options(1, 1));
  for (int i = 0; i < 10; ++i) {
    auto c = pool->acquire();
    clock->advance(5ms);
  }
  const auto st = pool->stats();
  EXPECT_EQ(st.hold_time.count, 10u);
  EXPECT_GE(st.hold_time.p50_us, 5000u);
  EXPECT_LE(st.hold_time.p50_us, 6500u);
  EXPECT_EQ(st.wait_time.count, 10u);
  EXPECT_EQ(st.wait_time.p99_us, 0u);  // all served at once
}

TEST_F(LifecycleTest, PrometheusExpositionNamesThePool) {
  auto o = options(1, 1);
  o.name = "";  // the redacted DSN names it
  auto pool = Pool::create(o);
  const std::string text = pool->to_prometheus();
  EXPECT_NE(text.find("reservoir_pool_opened{pool=\"fake://app:***@db/shop\"} 1"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("s3cret"), std::string::npos);
}

TEST_F(LifecycleTest, LogHookNeverSeesThePassword) {
  auto o = options(2, 2);
  o.backoff_initial = 1ms;
  o.backoff_max = 2ms;
  fake->fail_all_connects(true);
  auto pool = Pool::create(o);
  ASSERT_TRUE(eventually([&] { return fake->attempts() >= 3; }));
  fake->fail_all_connects(false);
  pool->close(true);
  const auto all = messages(LogLevel::debug);
  EXPECT_FALSE(all.empty());
  for (const auto& m : all) EXPECT_EQ(m.find("s3cret"), std::string::npos) << m;
}

}  // namespace
}  // namespace reservoir
