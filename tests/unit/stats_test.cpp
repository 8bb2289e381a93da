// tests/unit/stats_test.cpp: PoolStats::to_string(), one line of key=value pairs.
#include "reservoir/stats.hpp"

#include <gtest/gtest.h>

#include <iterator>

namespace reservoir {
namespace {

TEST(StatsTest, AllCountersInOrder) {
  PoolStats s;
  s.opened = 3;
  s.busy = 1;
  s.idle = 2;
  s.connecting = 4;
  s.waiting = 5;
  s.max_waiting = 6;
  s.acquires = 7;
  s.hits = 8;
  s.misses = 9;
  s.waits = 10;
  s.timeouts = 11;
  s.exhausted = 12;
  s.creates = 13;
  s.create_failures = 14;
  s.drops = 18446744073709551615ull;
  EXPECT_EQ(s.to_string(),
            "opened=3 busy=1 idle=2 connecting=4 waiting=5 max_waiting=6 acquires=7 hits=8 "
            "misses=9 waits=10 timeouts=11 exhausted=12 creates=13 create_failures=14 "
            "drops=18446744073709551615");
}

TEST(StatsTest, Zero) {
  EXPECT_EQ(PoolStats().to_string(),
            "opened=0 busy=0 idle=0 connecting=0 waiting=0 max_waiting=0 acquires=0 hits=0 "
            "misses=0 waits=0 timeouts=0 exhausted=0 creates=0 create_failures=0 drops=0");
}

TEST(StatsTest, LastConnectErrorIsQuotedOnOneLine) {
  PoolStats s;
  s.last_connect_error = "connection refused\nDETAIL: \"db1\" \\ down";
  const std::string line = s.to_string();
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const std::string suffix =
      R"( drops=0 last_connect_error="connection refused\nDETAIL: \"db1\" \\ down")";
  ASSERT_GE(line.size(), suffix.size());
  EXPECT_EQ(line.substr(line.size() - suffix.size()), suffix);
}

TEST(StatsTest, CloseReasonNames) {
  const char* names[] = {"idle_timeout",      "lifetime",         "broken",
                         "validation_failed", "reset_failed",     "shrink",
                         "dropped",           "session_callback", "pool_closed"};
  static_assert(std::size(names) == kCloseReasons);
  for (std::size_t r = 0; r < kCloseReasons; ++r) {
    EXPECT_STREQ(to_string(static_cast<CloseReason>(r)), names[r]);
  }
  EXPECT_STREQ(to_string(static_cast<CloseReason>(200)), "unknown");
}

TEST(StatsTest, NewerFieldsOnlyWhenNonzeroBeforeTheConnectError) {
  PoolStats s;
  s.ping_failures = 2;
  s.leaks = 1;
  s.cancelled = 6;
  s.closed[static_cast<std::size_t>(CloseReason::idle_timeout)] = 3;
  s.closed[static_cast<std::size_t>(CloseReason::pool_closed)] = 4;
  s.wait_time = {.count = 10, .p50_us = 0, .p99_us = 120, .max_us = 450};
  s.classes[""] = {.requests = 5, .hits = 3, .misses = 2, .waits = 1};
  s.classes["re port"] = {.requests = 1, .hits = 0, .misses = 1, .waits = 0};
  s.last_connect_error = "refused";
  EXPECT_EQ(s.to_string(),
            "opened=0 busy=0 idle=0 connecting=0 waiting=0 max_waiting=0 acquires=0 hits=0 "
            "misses=0 waits=0 timeouts=0 exhausted=0 creates=0 create_failures=0 drops=0 "
            "ping_failures=2 leaks=1 cancelled=6 closed=idle_timeout:3,pool_closed:4 "
            "wait_us=p50:0,p99:120,max:450 "
            "class[\"\"]=requests:5,hits:3,misses:2,waits:1 "
            "class[\"re port\"]=requests:1,hits:0,misses:1,waits:0 "
            "last_connect_error=\"refused\"");

  s = PoolStats();
  s.hold_time = {.count = 1, .p50_us = 7, .p99_us = 8, .max_us = 9};
  const std::string line = s.to_string();
  EXPECT_NE(line.find(" hold_us=p50:7,p99:8,max:9"), std::string::npos) << line;
  EXPECT_EQ(line.find("wait_us"), std::string::npos) << line;
}

}  // namespace
}  // namespace reservoir
