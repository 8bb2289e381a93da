// tests/unit/options_test.cpp: get mode names, and check_options() / check_settings() /
// resolve_driver(): each bad field is an invalid_argument naming that field.
#include "reservoir/options.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "core/options_check.hpp"
#include "reservoir/driver.hpp"
#include "reservoir/error.hpp"

namespace reservoir {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// Registered under "optionstest"; never asked to connect.
class StubDriver : public Driver {
 public:
  explicit StubDriver(std::string scheme) : scheme_(std::move(scheme)) {}
  std::string_view scheme() const noexcept override { return scheme_; }
  std::unique_ptr<Connection> connect(const Dsn&, std::chrono::milliseconds) override {
    throw Error(ErrorCode::unsupported, "stub driver does not connect");
  }

 private:
  std::string scheme_;
};

const std::shared_ptr<Driver> kRegistered = [] {
  auto d = std::make_shared<StubDriver>("optionstest");
  register_driver(d);
  return d;
}();

PoolOptions good_options() {
  PoolOptions o;
  o.dsn = "optionstest://app:Sup3rS3cret@h:1234/db";
  o.min = 2;
  o.max = 5;
  return o;
}

// The message of the invalid_argument Error that check_options(o) throws; fails otherwise.
std::string options_error(const PoolOptions& o) {
  try {
    core::check_options(o);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_THAT(e.what(), Not(HasSubstr("Sup3rS3cret")));
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return {};
}

std::string settings_error(const PoolSettings& s, std::uint32_t min, std::uint32_t max) {
  try {
    core::check_settings(s, min, max);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return {};
}

TEST(GetModeTest, Names) {
  EXPECT_STREQ(to_string(GetMode::wait), "wait");
  EXPECT_STREQ(to_string(GetMode::no_wait), "no_wait");
  EXPECT_STREQ(to_string(GetMode::force_get), "force_get");
  EXPECT_STREQ(to_string(GetMode::timed_wait), "timed_wait");
  EXPECT_STREQ(to_string(static_cast<GetMode>(9)), "unknown");
  for (GetMode m : {GetMode::wait, GetMode::no_wait, GetMode::force_get, GetMode::timed_wait}) {
    EXPECT_EQ(parse_get_mode(to_string(m)), m);
  }
}

TEST(GetModeTest, ParseAcceptsAliasesInAnyCase) {
  EXPECT_EQ(parse_get_mode("wait"), GetMode::wait);
  EXPECT_EQ(parse_get_mode("WAIT"), GetMode::wait);
  EXPECT_EQ(parse_get_mode("nowait"), GetMode::no_wait);
  EXPECT_EQ(parse_get_mode("No_Wait"), GetMode::no_wait);
  EXPECT_EQ(parse_get_mode("forceget"), GetMode::force_get);
  EXPECT_EQ(parse_get_mode("FORCE_GET"), GetMode::force_get);
  EXPECT_EQ(parse_get_mode("timedwait"), GetMode::timed_wait);
  EXPECT_EQ(parse_get_mode("Timed_Wait"), GetMode::timed_wait);
}

TEST(GetModeTest, ParseRejectsOthers) {
  for (const char* text : {"", "waiting", "no-wait", " wait", "timed"}) {
    try {
      parse_get_mode(text);
      ADD_FAILURE() << "no error for '" << text << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      const std::string msg = e.what();
      EXPECT_THAT(msg, HasSubstr("get_mode"));
      EXPECT_THAT(msg, HasSubstr("'" + std::string(text) + "'"));
      for (const char* name :
           {"wait", "no_wait", "force_get", "timed_wait", "nowait", "forceget", "timedwait"}) {
        EXPECT_THAT(msg, HasSubstr(name));
      }
    }
  }
}

TEST(CheckOptionsTest, GoodOptionsReturnTheParsedDsn) {
  const Dsn dsn = core::check_options(good_options());
  EXPECT_EQ(dsn.scheme, "optionstest");
  EXPECT_EQ(dsn.user, "app");
  EXPECT_EQ(dsn.host, "h");
  EXPECT_EQ(dsn.port, 1234);
  EXPECT_EQ(dsn.database, "db");
}

TEST(CheckOptionsTest, BoundaryValuesAreAccepted) {
  PoolOptions o = good_options();
  o.min = 0;
  o.max = 1;
  o.increment = 1;
  o.wait_timeout = 0ms;
  o.connect_timeout = 0ms;
  EXPECT_NO_THROW(core::check_options(o));
  o.min = 1;  // min == max
  EXPECT_NO_THROW(core::check_options(o));
  o.increment = 100;  // more than max: the pool just caps growth
  EXPECT_NO_THROW(core::check_options(o));
}

TEST(CheckOptionsTest, Dsn) {
  PoolOptions o = good_options();
  o.dsn = "";
  EXPECT_EQ(options_error(o), "dsn: empty");
  o.dsn = "localhost:5432";
  EXPECT_THAT(options_error(o), HasSubstr("dsn: missing scheme"));
  o.dsn = "optionstest://u:Sup3rS3cret@h:abc/db";
  EXPECT_EQ(options_error(o), "dsn: port 'abc' is not a number in 1..65535");
}

TEST(CheckOptionsTest, Max) {
  PoolOptions o = good_options();
  o.min = 0;
  o.max = 0;
  EXPECT_EQ(options_error(o), "max: must be at least 1");
}

TEST(CheckOptionsTest, MinAboveMax) {
  PoolOptions o = good_options();
  o.min = 5;
  o.max = 3;
  EXPECT_EQ(options_error(o), "min (5) is greater than max (3)");
}

TEST(CheckOptionsTest, Increment) {
  PoolOptions o = good_options();
  o.increment = 0;
  EXPECT_THAT(options_error(o), HasSubstr("increment: must be at least 1"));
}

TEST(CheckOptionsTest, GetMode) {
  PoolOptions o = good_options();
  o.get_mode = static_cast<GetMode>(7);
  EXPECT_EQ(options_error(o), "get_mode: unknown value 7");
}

TEST(CheckOptionsTest, NegativeTimeouts) {
  PoolOptions o = good_options();
  o.wait_timeout = -1ms;
  EXPECT_EQ(options_error(o), "wait_timeout: must not be negative (got -1 ms)");
  o = good_options();
  o.connect_timeout = -250ms;
  EXPECT_EQ(options_error(o), "connect_timeout: must not be negative (got -250 ms)");
}

TEST(CheckOptionsTest, TheFirstBadFieldIsNamed) {
  PoolOptions o = good_options();
  o.max = 0;
  o.increment = 0;
  o.wait_timeout = -1ms;
  EXPECT_THAT(options_error(o), HasSubstr("max"));
  o.dsn = "";
  EXPECT_THAT(options_error(o), HasSubstr("dsn"));
}

TEST(CheckOptionsTest, NoDriverForScheme) {
  PoolOptions o = good_options();
  o.dsn = "nosuchdb://u:Sup3rS3cret@h/db";
  const std::string msg = options_error(o);
  EXPECT_THAT(msg, HasSubstr("dsn: no driver for scheme 'nosuchdb' (available: "));
  EXPECT_THAT(msg, HasSubstr("optionstest"));  // lists what is registered
}

TEST(CheckOptionsTest, SchemeIsMatchedAfterFolding) {
  PoolOptions o = good_options();
  o.dsn = "OptionsTest://h";
  EXPECT_NO_THROW(core::check_options(o));
}

TEST(CheckOptionsTest, AnExplicitDriverNeedNotMatchTheScheme) {
  PoolOptions o = good_options();
  o.dsn = "fake://x";
  o.driver = std::make_shared<StubDriver>("something_else");
  const Dsn dsn = core::check_options(o);
  EXPECT_EQ(dsn.scheme, "fake");
  EXPECT_EQ(dsn.host, "x");
}

TEST(ResolveDriverTest, PrefersTheExplicitDriver) {
  PoolOptions o = good_options();
  auto mine = std::make_shared<StubDriver>("optionstest");
  o.driver = mine;
  EXPECT_EQ(core::resolve_driver(o, Dsn::parse(o.dsn)), mine);
  o.driver = nullptr;
  EXPECT_EQ(core::resolve_driver(o, Dsn::parse(o.dsn)), kRegistered);
}

TEST(ResolveDriverTest, ThrowsWhenThereIsNone) {
  PoolOptions o = good_options();
  o.dsn = "nosuchdb://h";
  try {
    core::resolve_driver(o, Dsn::parse(o.dsn));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_THAT(e.what(), HasSubstr("no driver for scheme 'nosuchdb'"));
  }
}

TEST(CheckSettingsTest, EmptySettingsAreFine) { EXPECT_NO_THROW(core::check_settings({}, 2, 5)); }

TEST(CheckSettingsTest, GoodSettings) {
  PoolSettings s;
  s.min = 4;
  s.max = 4;
  s.increment = 3;
  s.get_mode = GetMode::no_wait;
  s.wait_timeout = 0ms;
  EXPECT_NO_THROW(core::check_settings(s, 1, 2));
}

TEST(CheckSettingsTest, Max) {
  PoolSettings s;
  s.max = 0;
  EXPECT_EQ(settings_error(s, 0, 5), "max: must be at least 1");
}

TEST(CheckSettingsTest, MinAboveMaxInTheResultingCombination) {
  PoolSettings s;
  s.min = 6;  // against the current max
  EXPECT_EQ(settings_error(s, 2, 5), "min (6) is greater than max (5)");
  s = {};
  s.max = 1;  // against the current min
  EXPECT_EQ(settings_error(s, 2, 5), "min (2) is greater than max (1)");
  s.min = 1;  // lowering both together is fine
  EXPECT_NO_THROW(core::check_settings(s, 2, 5));
  s = {};
  s.min = 8;
  s.max = 10;  // raising both together is fine
  EXPECT_NO_THROW(core::check_settings(s, 2, 5));
}

TEST(CheckSettingsTest, Increment) {
  PoolSettings s;
  s.increment = 0;
  EXPECT_THAT(settings_error(s, 1, 5), HasSubstr("increment"));
}

TEST(CheckSettingsTest, WaitTimeout) {
  PoolSettings s;
  s.wait_timeout = -5ms;
  EXPECT_EQ(settings_error(s, 1, 5), "wait_timeout: must not be negative (got -5 ms)");
}

TEST(CheckSettingsTest, GetMode) {
  PoolSettings s;
  s.get_mode = static_cast<GetMode>(4);
  EXPECT_THAT(settings_error(s, 1, 5), HasSubstr("get_mode"));
}

}  // namespace
}  // namespace reservoir
