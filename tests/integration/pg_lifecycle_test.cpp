// tests/integration/pg_lifecycle_test.cpp: the pool's session life on a real PostgreSQL server:
// every get mode, reset on release, tags and the session callback, heterogeneous users, connection
// classes and purity, idle connections whose backends were terminated, and connect failures
// (wrong password, unknown database, a server that never answers) through the pool.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"
#include "support/postgres_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using testing::error_of;
using testing::SilentListener;
using Clock = std::chrono::steady_clock;
using testing::eventually;
using testing::PostgresTest;

std::string random_hex() {
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  unsigned char bytes[12];
  urandom.read(reinterpret_cast<char*>(bytes), sizeof bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

struct Credentials {
  std::string user;
  std::string password;
};

class PgLifecycleTest : public PostgresTest {
 protected:
  // A pool on the fixture's database; params are extra DSN parameters.
  PoolOptions options(std::uint32_t min, std::uint32_t max, const std::string& params = {}) const {
    return testing::server_pool_options(
        pg().dsn_for(pg().user, pg().password, pg().database, params), min, max, 10s);
  }

  static std::int64_t backend_pid(Lease& c) {
    return c->query("SELECT pg_backend_pid()")[0][0].as<std::int64_t>();
  }
  static std::string show(Lease& c, const std::string& setting) {
    return c->query("SHOW " + setting)[0][0].as<std::string>();
  }
  // A custom setting ('' when the session never set it or a reset cleared it).
  static std::string guc(Lease& c, const std::string& name) {
    return c->query("SELECT coalesce(current_setting($1, true), '')", name)[0][0].as<std::string>();
  }
  static bool has_temp_table(Lease& c, const std::string& name) {
    return !c->query("SELECT to_regclass($1) IS NULL", "pg_temp." + name)[0][0].as<bool>();
  }

  // Closes a pool whose min connection keeps failing and waits until its background retry, if
  // one was under way, has finished. Works around an engine bug: the process-wide background
  // threads are detached and keep running a connect attempt of a dropped pool while the
  // process exits, and libpq then uses OpenSSL after libcrypto's atexit cleanup (SIGSEGV in
  // RAND_status under PQconnectPoll, a few percent of runs). Closing stops further retries
  // (with force: close() without it refuses while an attempt is opening).
  static void close_and_settle(Pool& pool) {
    pool.close(true);
    EXPECT_TRUE(eventually([&] { return pool.stats().connecting == 0; }));
  }

  // Sessions on the server with this application_name, counted from a connection of its own.
  std::int64_t backends(const std::string& app) {
    auto conn = connect();
    return conn
        ->query("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app)[0][0]
        .as<std::int64_t>();
  }
};

// ---- get modes -------------------------------------------------------------------------------

TEST_F(PgLifecycleTest, WaitModeIgnoresTheWaitTimeoutAndGetsTheReleasedSession) {
  auto o = options(1, 1);
  o.get_mode = GetMode::wait;  // the pool's default mode, no per-call override
  o.wait_timeout = 100ms;      // wait mode must not give up after this
  auto pool = Pool::create(o);
  auto held = pool->acquire();
  const auto pid = backend_pid(held);

  std::atomic<bool> done{false};
  std::int64_t got = 0;
  std::string error;
  std::thread waiter([&] {
    try {
      auto c = pool->acquire();
      got = backend_pid(c);
    } catch (const Error& e) {
      error = e.what();
    }
    done = true;
  });
  EXPECT_TRUE(eventually([&] { return pool->waiting() == 1; }));
  const auto since = Clock::now();
  // Not synchronisation: the assertion is about time. At three times its wait_timeout, the
  // waiter is still waiting.
  eventually([&] { return done.load() || Clock::now() - since >= 3 * o.wait_timeout; });
  EXPECT_FALSE(done.load()) << error;
  EXPECT_EQ(pool->waiting(), 1u);
  held.release();
  EXPECT_TRUE(eventually([&] { return done.load(); }));
  waiter.join();
  EXPECT_EQ(error, "");
  EXPECT_EQ(got, pid);  // the one session, handed over
  EXPECT_EQ(pool->stats().timeouts, 0u);
  EXPECT_EQ(pool->stats().waits, 1u);
}

TEST_F(PgLifecycleTest, NoWaitFailsAtOnceWhateverTheWaitTimeout) {
  auto o = options(1, 1);
  o.get_mode = GetMode::no_wait;
  o.wait_timeout = 30s;
  auto pool = Pool::create(o);
  {
    auto c = pool->acquire();  // a free session is served
    EXPECT_EQ(c->query("SELECT 1")[0][0].as<int>(), 1);
    const auto start = Clock::now();
    const Error e = error_of([&] { auto again = pool->acquire(); });
    EXPECT_EQ(e.code(), ErrorCode::pool_exhausted) << e.what();
    EXPECT_LT(Clock::now() - start, 1s);
    EXPECT_TRUE(e.retryable());
  }
  // A per-call mode overrides the pool's: this one waits for a release.
  auto held = pool->acquire();
  std::thread releaser([&] {
    eventually([&] { return pool->waiting() == 1; });
    held.release();
  });
  auto c = pool->acquire({.get_mode = GetMode::timed_wait, .wait_timeout = 10s});
  releaser.join();
  EXPECT_EQ(pool->stats().exhausted, 1u);
}

TEST_F(PgLifecycleTest, ForceGetOpensARealSessionBeyondMaxAndClosesItOnRelease) {
  const std::string app = unique_name("app");
  auto pool = Pool::create(options(1, 1, "application_name=" + app));
  auto held = pool->acquire();
  EXPECT_EQ(backends(app), 1);
  {
    auto extra = pool->acquire({.get_mode = GetMode::force_get});
    EXPECT_NE(backend_pid(extra), backend_pid(held));
    EXPECT_EQ(pool->opened(), 2u);
    EXPECT_EQ(backends(app), 2);  // the server sees both
  }
  EXPECT_EQ(pool->opened(), 1u);
  EXPECT_EQ(pool->stats().closed_for(CloseReason::shrink), 1u);
  // The extra's backend goes away on the server too (its exit is asynchronous).
  EXPECT_TRUE(eventually([&] { return backends(app) == 1; }));
}

TEST_F(PgLifecycleTest, TimedWaitGivesUpAfterItsTimeoutWithTheCounters) {
  auto pool = Pool::create(options(1, 1));
  auto held = pool->acquire();
  const auto start = Clock::now();
  const Error e = error_of([&] { auto c = pool->acquire({.wait_timeout = 300ms}); });
  const auto took = Clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::pool_timeout) << e.what();
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 3s);
  EXPECT_NE(std::string(e.what()).find("busy=1"), std::string::npos) << e.what();
  EXPECT_EQ(pool->stats().timeouts, 1u);
}

// ---- reset -------------------------------------------------------------------------------------

TEST_F(PgLifecycleTest, ResetOnReleaseClearsWhatTheLastUserLeft) {
  const std::string app = unique_name("app");
  auto o = options(1, 1, "application_name=" + app);
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  std::int64_t pid = 0;
  {
    auto c = pool->acquire();
    pid = backend_pid(c);
    c->execute("SET application_name = 'dirty'");
    c->execute("SET myapp.x = '1'");
    c->execute("SET statement_timeout = 4321");
    c->execute("CREATE TEMP TABLE scratch(x int)");
    c->execute("PREPARE mine AS SELECT 1");
    c->query("SELECT pg_advisory_lock(4711)");
    c->begin();
    c->execute("INSERT INTO scratch VALUES (1)");
    ASSERT_EQ(guc(c, "myapp.x"), "1");
    ASSERT_TRUE(has_temp_table(c, "scratch"));
  }
  auto c = pool->acquire();
  EXPECT_EQ(backend_pid(c), pid);  // the same session, not a new one
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(show(c, "application_name"), app);  // back to what the DSN gave at connect time
  EXPECT_EQ(guc(c, "myapp.x"), "");
  EXPECT_EQ(show(c, "statement_timeout"), "0");
  EXPECT_FALSE(has_temp_table(c, "scratch"));
  EXPECT_EQ(
      c->query("SELECT count(*) FROM pg_prepared_statements WHERE name = 'mine'")[0][0].as<int>(),
      0);
  EXPECT_EQ(c->query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
                     "pg_backend_pid()")[0][0]
                .as<int>(),
            0);
  EXPECT_EQ(pool->stats().closed_for(CloseReason::reset_failed), 0u);
}

TEST_F(PgLifecycleTest, WithoutResetSessionStateStaysButAnOpenTransactionIsRolledBack) {
  auto pool = Pool::create(options(1, 1));  // reset_on_release is off by default
  std::int64_t pid = 0;
  {
    auto c = pool->acquire();
    pid = backend_pid(c);
    c->execute("SET myapp.x = 'kept'");
    c->execute("CREATE TEMP TABLE scratch(x int)");
    c->begin();
    c->execute("INSERT INTO scratch VALUES (1)");
    c->execute("SET myapp.y = 'in-transaction'");
    ASSERT_TRUE(c->in_transaction());
  }  // released inside the transaction
  {
    // The server agrees the session is out of the transaction, before anyone uses it again.
    auto observer = connect();
    const auto state =
        observer->query("SELECT state FROM pg_stat_activity WHERE pid = $1::int", pid)[0][0];
    EXPECT_EQ(state, Value("idle"));
  }
  auto c = pool->acquire();
  EXPECT_EQ(backend_pid(c), pid);
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(guc(c, "myapp.x"), "kept");  // no reset: session settings survive
  EXPECT_TRUE(has_temp_table(c, "scratch"));
  EXPECT_EQ(c->query("SELECT count(*) FROM scratch")[0][0].as<int>(), 0);  // rolled back
  EXPECT_EQ(guc(c, "myapp.y"), "");  // set inside the transaction: rolled back with it
}

// ---- tags and the session callback --------------------------------------------------------

// A session callback that sets the time zone a tag names, and records its calls.
struct TimeZoneCallback {
  struct Calls {
    std::mutex mutex;
    std::vector<std::string> tags;
    std::vector<std::string> snapshot() {
      std::lock_guard lk(mutex);
      return tags;
    }
  };
  std::shared_ptr<Calls> calls = std::make_shared<Calls>();

  static std::string zone_of(std::string_view tag) {
    if (tag == "tz=utc") return "UTC";
    if (tag == "tz=tokyo") return "Asia/Tokyo";
    if (tag == "tz=berlin") return "Europe/Berlin";
    throw Error(ErrorCode::invalid_argument, "no zone for tag '" + std::string(tag) + "'");
  }

  SessionCallback callback() const {
    return [calls = calls](Connection& c, std::string_view tag) {
      {
        std::lock_guard lk(calls->mutex);
        calls->tags.emplace_back(tag);
      }
      if (tag.empty()) {
        c.execute("SET TIME ZONE DEFAULT");
      } else {
        c.execute("SET TIME ZONE '" + zone_of(tag) + "'");
      }
    };
  }
};

TEST_F(PgLifecycleTest, SessionCallbackSetsTheTimeZoneOfTheRequestedTag) {
  const std::string server_default = connect()->query("SHOW TimeZone")[0][0].as<std::string>();
  TimeZoneCallback tz;
  auto o = options(0, 1);  // one session: every acquire below gets the same backend
  o.session_callback = tz.callback();
  auto pool = Pool::create(o);
  std::int64_t pid = 0;
  {
    auto c = pool->acquire({.tag = "tz=tokyo"});
    pid = backend_pid(c);
    EXPECT_EQ(c.tag(), "tz=tokyo");
    EXPECT_EQ(show(c, "TimeZone"), "Asia/Tokyo");
  }
  {
    auto c = pool->acquire({.tag = "tz=utc"});
    EXPECT_EQ(backend_pid(c), pid);
    EXPECT_EQ(c.tag(), "tz=utc");
    EXPECT_EQ(show(c, "TimeZone"), "UTC");  // moved from Tokyo by the callback
  }
  EXPECT_EQ(tz.calls->snapshot(), (std::vector<std::string>{"tz=tokyo", "tz=utc"}));
  {
    // The session already carries the tag: no callback, same state.
    auto c = pool->acquire({.tag = "tz=utc"});
    EXPECT_EQ(backend_pid(c), pid);
    EXPECT_EQ(show(c, "TimeZone"), "UTC");
  }
  EXPECT_EQ(tz.calls->snapshot().size(), 2u);
  {
    // release(tag) retags: the application set the state itself and says so.
    auto c = pool->acquire({.tag = "tz=utc"});
    c->execute("SET TIME ZONE 'Europe/Berlin'");
    c.release("tz=berlin");
  }
  {
    auto c = pool->acquire({.tag = "tz=berlin"});
    EXPECT_EQ(backend_pid(c), pid);
    EXPECT_EQ(c.tag(), "tz=berlin");
    EXPECT_EQ(show(c, "TimeZone"), "Europe/Berlin");
  }
  EXPECT_EQ(tz.calls->snapshot().size(), 2u);  // the retagged session needed no callback
  {
    // No tag asked for: the callback brings the tagged session back to the default.
    auto c = pool->acquire();
    EXPECT_EQ(backend_pid(c), pid);
    EXPECT_EQ(c.tag(), "");
    EXPECT_EQ(show(c, "TimeZone"), server_default);
  }
  EXPECT_EQ(tz.calls->snapshot(), (std::vector<std::string>{"tz=tokyo", "tz=utc", ""}));
}

TEST_F(PgLifecycleTest, SessionCallbackRunsForConnectionsOpenedAhead) {
  // Connections the pool opens before anyone asks (min at create, increment in the background)
  // are new connections too: the first acquire of each runs the callback.
  std::atomic<int> calls{0};
  auto o = options(2, 4);
  o.increment = 2;
  o.session_callback = [&](Connection& c, std::string_view) {
    calls.fetch_add(1);
    c.execute("SET myapp.initialised = 'yes'");
  };
  auto pool = Pool::create(o);
  EXPECT_EQ(pool->opened(), 2u);
  std::vector<Lease> all;
  for (int i = 0; i < 4; ++i) {  // 2 opened by create, then growth by 2 (one in the background)
    all.push_back(pool->acquire());
    EXPECT_EQ(guc(all.back(), "myapp.initialised"), "yes") << "lease " << i;
  }
  EXPECT_EQ(calls.load(), 4);
}

TEST_F(PgLifecycleTest, MatchAnyTagTakesAnotherTagsSessionInsteadOfOpeningOne) {
  auto pool = Pool::create(options(0, 3));  // no callback: tags come from release(tag)
  std::int64_t tokyo_pid = 0;
  {
    auto c = pool->acquire();
    tokyo_pid = backend_pid(c);
    c->execute("SET TIME ZONE 'Asia/Tokyo'");
    c.release("tz=tokyo");
  }
  {
    auto c = pool->acquire({.tag = "tz=tokyo"});
    EXPECT_EQ(backend_pid(c), tokyo_pid);
    EXPECT_EQ(c.tag(), "tz=tokyo");
  }  // release() without a tag keeps it
  // Without match_any_tag, with room to grow, a session tagged otherwise is not taken.
  auto utc = pool->acquire({.tag = "tz=utc"});
  EXPECT_NE(backend_pid(utc), tokyo_pid);
  EXPECT_EQ(utc.tag(), "");  // a new session; nothing set its state
  EXPECT_EQ(show(utc, "TimeZone"), connect()->query("SHOW TimeZone")[0][0].as<std::string>());
  const auto creates = pool->stats().creates;
  // With it, the Tokyo session is taken as it is, with its tag, and nothing is opened.
  auto any = pool->acquire({.tag = "tz=utc", .match_any_tag = true});
  EXPECT_EQ(backend_pid(any), tokyo_pid);
  EXPECT_EQ(any.tag(), "tz=tokyo");
  EXPECT_EQ(show(any, "TimeZone"), "Asia/Tokyo");
  EXPECT_EQ(pool->stats().creates, creates);
}

TEST_F(PgLifecycleTest, MatchAnyTagWithACallbackRetagsTheSessionItTakes) {
  TimeZoneCallback tz;
  auto o = options(0, 2);
  o.session_callback = tz.callback();
  auto pool = Pool::create(o);
  std::int64_t pid = 0;
  {
    auto c = pool->acquire({.tag = "tz=utc"});
    pid = backend_pid(c);
  }
  {
    auto c = pool->acquire({.tag = "tz=berlin", .match_any_tag = true});
    EXPECT_EQ(backend_pid(c), pid);  // taken, not opened
    EXPECT_EQ(c.tag(), "tz=berlin");
    EXPECT_EQ(show(c, "TimeZone"), "Europe/Berlin");
  }
  EXPECT_EQ(pool->stats().creates, 1u);
  {
    // Without match_any_tag and with room, a new session is opened for the tag.
    auto c = pool->acquire({.tag = "tz=tokyo"});
    EXPECT_NE(backend_pid(c), pid);
    EXPECT_EQ(c.tag(), "tz=tokyo");
    EXPECT_EQ(show(c, "TimeZone"), "Asia/Tokyo");
  }
  EXPECT_EQ(pool->stats().creates, 2u);
  EXPECT_EQ(tz.calls->snapshot(), (std::vector<std::string>{"tz=utc", "tz=berlin", "tz=tokyo"}));
}

TEST_F(PgLifecycleTest, ResetOnReleaseDropsTheTag) {
  TimeZoneCallback tz;
  auto o = options(0, 1);
  o.session_callback = tz.callback();
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  { auto c = pool->acquire({.tag = "tz=tokyo"}); }
  auto c = pool->acquire({.tag = "tz=tokyo"});
  EXPECT_EQ(show(c, "TimeZone"), "Asia/Tokyo");  // reset cleared it; the callback set it again
  EXPECT_EQ(tz.calls->snapshot(), (std::vector<std::string>{"tz=tokyo", "tz=tokyo"}));
}

// ---- heterogeneous users ---------------------------------------------------------------------

// Login roles made for one test over the admin connection, dropped again at the end.
class TemporaryRoles {
 public:
  TemporaryRoles(std::unique_ptr<Connection> admin, const std::vector<std::string>& names)
      : admin_(std::move(admin)) {
    for (const std::string& name : names) {
      Credentials c{name, random_hex()};
      admin_->execute("CREATE ROLE " + c.user + " LOGIN PASSWORD '" + c.password + "'");
      roles_.push_back(c);
    }
  }
  ~TemporaryRoles() {
    for (const Credentials& c : roles_) {
      try {
        admin_->execute("DROP ROLE IF EXISTS " + c.user);
      } catch (const Error& e) {
        ADD_FAILURE() << "could not drop role " << c.user << ": " << e.what();
      }
    }
  }
  TemporaryRoles(const TemporaryRoles&) = delete;
  TemporaryRoles& operator=(const TemporaryRoles&) = delete;
  const std::vector<Credentials>& roles() const { return roles_; }

 private:
  std::unique_ptr<Connection> admin_;
  std::vector<Credentials> roles_;
};

class PgUsersTest : public PgLifecycleTest {
 protected:
  // The fixture's two roles, plus `extra` roles of this test's own when the admin DSN is known.
  std::vector<Credentials> users(int extra) {
    std::vector<Credentials> out{{pg().user, pg().password}};
    if (!pg().other_user.empty()) out.push_back({pg().other_user, pg().other_password});
    if (!pg().admin_dsn.empty() && extra > 0) {
      std::vector<std::string> names;
      for (int i = 0; i < extra; ++i) names.push_back(unique_name("r"));
      roles_ = std::make_unique<TemporaryRoles>(connect(pg().admin_dsn), names);
      for (const Credentials& c : roles_->roles()) out.push_back(c);
    }
    return out;
  }
  // Pools are closed by then (each test's pools are locals), so the roles have no sessions.
  void TearDown() override { roles_.reset(); }

  std::unique_ptr<TemporaryRoles> roles_;
};

TEST_F(PgUsersTest, EachLeaseIsTheUserItAskedForUnderConcurrencyWithEviction) {
  const auto creds = users(2);
  if (creds.size() < 2) GTEST_SKIP() << "no second role (RESERVOIR_PG_OTHER_DSN)";
  const std::uint32_t max = static_cast<std::uint32_t>(creds.size()) - 1;  // fewer than users
  auto o = options(0, max);
  o.homogeneous = false;
  o.wait_timeout = 30s;
  auto pool = Pool::create(o);

  const int threads = static_cast<int>(creds.size()) * 2;
  constexpr int kIterations = 25;
  std::atomic<int> wrong_user{0}, foreign_state{0}, errors{0}, over_max{0};
  std::mutex first_mutex;
  std::string first_problem;
  auto note = [&](std::atomic<int>& counter, const std::string& what) {
    if (counter.fetch_add(1) == 0) {
      std::lock_guard lk(first_mutex);
      if (first_problem.empty()) first_problem = what;
    }
  };
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const Credentials& me = creds[static_cast<std::size_t>(t) % creds.size()];
      for (int i = 0; i < kIterations; ++i) {
        try {
          auto c = pool->acquire({.user = me.user, .password = me.password});
          if (pool->opened() > max) over_max.fetch_add(1);
          const auto row = c->query(
              "SELECT current_user::text, session_user::text, "
              "coalesce(current_setting('myapp.owner', true), '')")[0];
          if (row[0].as<std::string>() != me.user || row[1].as<std::string>() != me.user) {
            note(wrong_user, me.user + " got a session of " + row[0].as<std::string>());
          }
          // Whatever an earlier lease left in this session was left by the same user.
          const auto owner = row[2].as<std::string>();
          if (!owner.empty() && owner != me.user) {
            note(foreign_state, me.user + " saw state left by " + owner);
          }
          c->query("SELECT set_config('myapp.owner', $1, false)", me.user);
        } catch (const Error& e) {
          note(errors, me.user + ": " + e.what());
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(wrong_user.load(), 0) << first_problem;
  EXPECT_EQ(foreign_state.load(), 0) << first_problem;
  EXPECT_EQ(errors.load(), 0) << first_problem;
  EXPECT_EQ(over_max.load(), 0);
  const auto st = pool->stats();
  EXPECT_LE(st.opened, max);
  // More users than connections: some user's idle session was closed to make room.
  EXPECT_GT(st.closed_for(CloseReason::shrink), 0u) << st.to_string();
  pool->close();
}

TEST_F(PgUsersTest, WrongPasswordForASecondUserIsAuthFailedAndNeverAnotherUsersSession) {
  if (pg().other_user.empty()) GTEST_SKIP() << "no second role (RESERVOIR_PG_OTHER_DSN)";
  for (const std::uint32_t max : {3u, 2u}) {  // with room, and at the cap (eviction first)
    SCOPED_TRACE("max " + std::to_string(max));
    auto o = options(0, max);
    o.homogeneous = false;
    o.wait_timeout = 30s;
    auto pool = Pool::create(o);
    {
      // Idle sessions of both users, the second one's with the right password.
      auto mine = pool->acquire();
      auto other = pool->acquire({.user = pg().other_user, .password = pg().other_password});
      EXPECT_EQ(other->query("SELECT current_user::text")[0][0].as<std::string>(), pg().other_user);
    }
    for (const Credentials& wrong : std::vector<Credentials>{
             {pg().other_user, "not-the-password"},
             {pg().other_user, ""},
             {pg().user, "not-the-password"},  // the pool's own user, with the wrong password
         }) {
      SCOPED_TRACE(wrong.user + " with password '" + wrong.password + "'");
      const auto start = Clock::now();
      const Error e = error_of([&] {
        auto c = pool->acquire({.user = wrong.user, .password = wrong.password});
        ADD_FAILURE() << "got a session of "
                      << c->query("SELECT current_user::text")[0][0].as<std::string>();
      });
      EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
      EXPECT_LT(Clock::now() - start, 5s);  // at once, not after the 30 s wait_timeout
      if (!wrong.password.empty()) {
        EXPECT_EQ(std::string(e.what()).find(wrong.password), std::string::npos) << e.what();
      }
    }
    // The right credentials still work.
    auto other = pool->acquire({.user = pg().other_user, .password = pg().other_password});
    EXPECT_EQ(other->query("SELECT current_user::text")[0][0].as<std::string>(), pg().other_user);
    EXPECT_LE(pool->opened(), max);
  }
}

// ---- connection classes and purity ----------------------------------------------------------

TEST_F(PgLifecycleTest, PuritySelfGetsTheClassesOwnBackendWithItsState) {
  auto pool = Pool::create(options(0, 2));
  std::int64_t pid_a = 0, pid_b = 0;
  {
    auto a = pool->acquire({.cclass = "A"});
    auto b = pool->acquire({.cclass = "B"});
    pid_a = backend_pid(a);
    pid_b = backend_pid(b);
    a->execute("SET myapp.x = 'a'");
    a->execute("CREATE TEMP TABLE a_scratch(x int)");
    b->execute("SET myapp.x = 'b'");
  }
  ASSERT_NE(pid_a, pid_b);
  for (int round = 0; round < 2; ++round) {  // both orders: not just the thread's last session
    for (const char* cls :
         round == 0 ? std::vector<const char*>{"B", "A"} : std::vector<const char*>{"A", "B"}) {
      SCOPED_TRACE(std::string("class ") + cls);
      auto c = pool->acquire({.cclass = cls, .purity = Purity::self});
      const bool is_a = std::string(cls) == "A";
      EXPECT_EQ(backend_pid(c), is_a ? pid_a : pid_b);
      EXPECT_EQ(guc(c, "myapp.x"), is_a ? "a" : "b");
      EXPECT_EQ(has_temp_table(c, "a_scratch"), is_a);
    }
  }
  const auto st = pool->stats();
  ASSERT_EQ(st.classes.count("A"), 1u);
  ASSERT_EQ(st.classes.count("B"), 1u);
  EXPECT_EQ(st.classes.at("A").requests, 3u);
  EXPECT_EQ(st.classes.at("A").misses, 1u);  // opened for it
  EXPECT_EQ(st.classes.at("A").hits, 2u);
  EXPECT_EQ(st.classes.at("B").requests, 3u);
  EXPECT_EQ(st.classes.at("B").misses, 1u);
  EXPECT_EQ(st.classes.at("B").hits, 2u);
}

TEST_F(PgLifecycleTest, AnotherClassOrPurityNewGetsTheSessionReset) {
  auto pool = Pool::create(options(1, 1));  // one backend for everyone
  std::int64_t pid = 0;
  {
    auto c = pool->acquire({.cclass = "A"});
    pid = backend_pid(c);
    c->execute("SET myapp.x = 'a'");
    c->execute("CREATE TEMP TABLE a_scratch(x int)");
  }
  {
    auto c = pool->acquire({.cclass = "B"});
    EXPECT_EQ(backend_pid(c), pid);  // the same backend, DISCARD ALLed
    EXPECT_EQ(guc(c, "myapp.x"), "");
    EXPECT_FALSE(has_temp_table(c, "a_scratch"));
    c->execute("SET myapp.x = 'b'");
  }
  {
    auto c = pool->acquire({.cclass = "B", .purity = Purity::new_});
    EXPECT_EQ(backend_pid(c), pid);
    EXPECT_EQ(guc(c, "myapp.x"), "");  // its own class's state, reset all the same
    c->execute("SET myapp.x = 'b2'");
  }
  {
    auto c = pool->acquire();  // the default class is another class too
    EXPECT_EQ(backend_pid(c), pid);
    EXPECT_EQ(guc(c, "myapp.x"), "");
    c->execute("SET myapp.x = 'default'");
  }
  {
    auto c = pool->acquire({.cclass = "A"});
    EXPECT_EQ(guc(c, "myapp.x"), "");  // B's and the default class's state never reach A
  }
  const auto st = pool->stats();
  EXPECT_EQ(st.classes.at("A").requests, 2u);
  EXPECT_EQ(st.classes.at("A").misses, 2u);
  EXPECT_EQ(st.classes.at("A").hits, 0u);
  EXPECT_EQ(st.classes.at("B").requests, 2u);
  EXPECT_EQ(st.classes.at("B").misses, 1u);
  EXPECT_EQ(st.classes.at("B").hits + st.classes.at("B").misses, 2u);
  EXPECT_EQ(st.closed_for(CloseReason::reset_failed), 0u);
  EXPECT_EQ(st.creates, 1u);
}

TEST_F(PgLifecycleTest, ClassWaitsAreCounted) {
  auto pool = Pool::create(options(1, 1));
  auto held = pool->acquire({.cclass = "OLTP"});
  const Error e =
      error_of([&] { auto c = pool->acquire({.wait_timeout = 50ms, .cclass = "BATCH"}); });
  EXPECT_EQ(e.code(), ErrorCode::pool_timeout);
  const auto st = pool->stats();
  EXPECT_EQ(st.classes.at("BATCH").requests, 1u);
  EXPECT_EQ(st.classes.at("BATCH").waits, 1u);
  EXPECT_EQ(st.classes.at("OLTP").waits, 0u);
}

// ---- health: backends terminated while idle ---------------------------------------------------

TEST_F(PgLifecycleTest, TerminatedIdleBackendsAreFoundAndReplacedBeforeHandOut) {
  const std::string app = unique_name("app");
  auto o = options(3, 3, "application_name=" + app);
  o.ping_interval = 0ms;  // validate every idle connection before it is handed out
  auto pool = Pool::create(o);
  std::set<std::int64_t> old_pids;
  {
    std::vector<Lease> all;
    for (int i = 0; i < 3; ++i) all.push_back(pool->acquire());
    for (auto& c : all) old_pids.insert(backend_pid(c));
  }
  ASSERT_EQ(old_pids.size(), 3u);
  ASSERT_EQ(pool->idle(), 3u);
  {
    // Every pooled backend, from a separate connection; each call waits for its backend's end.
    auto admin = connect();
    const auto killed = admin->query(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
        "WHERE application_name = $1",
        app);
    EXPECT_EQ(killed[0][0].as<int>(), 3);
  }
  EXPECT_EQ(backends(app), 0);

  std::vector<Lease> all;
  for (int i = 0; i < 3; ++i) {
    auto c = pool->acquire();
    EXPECT_EQ(c->query("SELECT 1")[0][0].as<int>(), 1);  // never a dead one
    all.push_back(std::move(c));
  }
  std::set<std::int64_t> new_pids;
  for (auto& c : all) new_pids.insert(backend_pid(c));
  EXPECT_EQ(new_pids.size(), 3u);
  for (const auto pid : new_pids) EXPECT_EQ(old_pids.count(pid), 0u) << pid;
  const auto st = pool->stats();
  EXPECT_EQ(st.closed_for(CloseReason::validation_failed), 3u) << st.to_string();
  EXPECT_EQ(st.ping_failures, 3u);
  EXPECT_EQ(st.opened, 3u);
  EXPECT_EQ(backends(app), 3);
}

// ---- connect failures through the pool -----------------------------------------------------

TEST_F(PgLifecycleTest, WrongPasswordThroughCreateAndAcquireIsAuthFailedAtOnce) {
  const std::string dsn = pg().dsn_for(pg().user, "not-the-password", pg().database);
  {
    auto o = options(1, 2);
    o.dsn = dsn;
    o.wait_timeout = 30s;
    const auto start = Clock::now();
    const Error e = error_of([&] { Pool::create(o); });  // fail_fast
    EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
    EXPECT_EQ(e.sqlstate(), "28P01");
    EXPECT_LT(Clock::now() - start, 5s);
  }
  // Through acquire: with nothing opened yet (min 0), and with a pool whose min connection
  // failed at create (fail_fast off) and is being retried in the background.
  for (const std::uint32_t min : {0u, 1u}) {
    SCOPED_TRACE("min " + std::to_string(min));
    auto o = options(min, 2);
    o.dsn = dsn;
    o.fail_fast = false;
    o.wait_timeout = 30s;
    auto pool = Pool::create(o);
    const auto start = Clock::now();
    const Error e = error_of([&] { auto c = pool->acquire(); });
    EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
    EXPECT_LT(Clock::now() - start, 5s);  // not the 30 s wait_timeout
    EXPECT_EQ(std::string(e.what()).find("not-the-password"), std::string::npos) << e.what();
    close_and_settle(*pool);
  }
}

TEST_F(PgLifecycleTest, UnknownDatabaseThroughCreateAndAcquireIsConnectFailed3D000AtOnce) {
  const std::string dsn = pg().dsn_for(pg().user, pg().password, "no_such_db_4711");
  {
    auto o = options(1, 2);
    o.dsn = dsn;
    o.wait_timeout = 30s;
    const auto start = Clock::now();
    const Error e = error_of([&] { Pool::create(o); });
    EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
    EXPECT_EQ(e.sqlstate(), "3D000");
    EXPECT_FALSE(e.retryable());
    EXPECT_LT(Clock::now() - start, 5s);
  }
  for (const std::uint32_t min : {0u, 1u}) {
    SCOPED_TRACE("min " + std::to_string(min));
    auto o = options(min, 2);
    o.dsn = dsn;
    o.fail_fast = false;
    o.wait_timeout = 30s;
    auto pool = Pool::create(o);
    const auto start = Clock::now();
    const Error e = error_of([&] { auto c = pool->acquire(); });
    EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
    EXPECT_EQ(e.sqlstate(), "3D000");
    EXPECT_LT(Clock::now() - start, 5s);
    close_and_settle(*pool);
  }
}

TEST_F(PgLifecycleTest, UnansweringServerFailsCreateWithinTheConnectTimeout) {
  SilentListener silent(64);
  auto o = options(1, 2);
  o.dsn = "postgresql://u:pw@127.0.0.1:" + std::to_string(silent.port()) + "/db";
  o.connect_timeout = 500ms;
  o.wait_timeout = 30s;
  const auto start = Clock::now();
  const Error e = error_of([&] { Pool::create(o); });
  const auto took = Clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  EXPECT_GE(took, 450ms);
  EXPECT_LT(took, 2s);
}

TEST_F(PgLifecycleTest, UnansweringServerFailsAcquireWithinItsDeadline) {
  SilentListener silent(64);
  const std::string dsn = "postgresql://u:pw@127.0.0.1:" + std::to_string(silent.port()) + "/db";
  {
    // Attempts of connect_timeout each, with backoff, until the wait_timeout.
    auto o = options(0, 2);
    o.dsn = dsn;
    o.connect_timeout = 400ms;
    o.wait_timeout = 1500ms;
    auto pool = Pool::create(o);
    const auto start = Clock::now();
    const Error e = error_of([&] { auto c = pool->acquire(); });
    const auto took = Clock::now() - start;
    EXPECT_TRUE(e.code() == ErrorCode::pool_timeout || e.code() == ErrorCode::connect_failed)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos) << e.what();
    EXPECT_GE(took, 350ms);                                    // at least one whole attempt
    EXPECT_LT(took, o.wait_timeout + o.connect_timeout + 1s);  // about the deadline
    EXPECT_GE(pool->stats().create_failures, 1u);
  }
  {
    // A wait_timeout shorter than connect_timeout cuts the attempt short.
    auto o = options(0, 2);
    o.dsn = dsn;
    o.connect_timeout = 10s;
    o.wait_timeout = 400ms;
    auto pool = Pool::create(o);
    const auto start = Clock::now();
    const Error e = error_of([&] { auto c = pool->acquire(); });
    const auto took = Clock::now() - start;
    EXPECT_TRUE(e.code() == ErrorCode::pool_timeout || e.code() == ErrorCode::connect_failed)
        << e.what();
    EXPECT_GE(took, 350ms);
    EXPECT_LT(took, 2s);
  }
}

}  // namespace
}  // namespace reservoir
