// tests/unit/prometheus_test.cpp: PoolStats in the Prometheus text format: every family, values,
// label escaping, and lines a Prometheus parser accepts.
#include "core/prometheus.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace reservoir::core {
namespace {

// Every family with its type. The names are an interface: docs/observability.md lists them.
const std::vector<std::pair<std::string, std::string>> kFamilies = {
    {"reservoir_pool_connections", "gauge"},
    {"reservoir_pool_opened", "gauge"},
    {"reservoir_pool_waiting", "gauge"},
    {"reservoir_pool_max_waiting", "gauge"},
    {"reservoir_pool_acquires_total", "counter"},
    {"reservoir_pool_hits_total", "counter"},
    {"reservoir_pool_misses_total", "counter"},
    {"reservoir_pool_waits_total", "counter"},
    {"reservoir_pool_timeouts_total", "counter"},
    {"reservoir_pool_exhausted_total", "counter"},
    {"reservoir_pool_cancelled_total", "counter"},
    {"reservoir_pool_connections_created_total", "counter"},
    {"reservoir_pool_connect_failures_total", "counter"},
    {"reservoir_pool_drops_total", "counter"},
    {"reservoir_pool_ping_failures_total", "counter"},
    {"reservoir_pool_leaks_total", "counter"},
    {"reservoir_pool_connections_closed_total", "counter"},
    {"reservoir_pool_wait_seconds", "summary"},
    {"reservoir_pool_wait_max_seconds", "gauge"},
    {"reservoir_pool_hold_seconds", "summary"},
    {"reservoir_pool_hold_max_seconds", "gauge"},
    {"reservoir_pool_class_requests_total", "counter"},
    {"reservoir_pool_class_hits_total", "counter"},
    {"reservoir_pool_class_misses_total", "counter"},
    {"reservoir_pool_class_waits_total", "counter"},
};

PoolStats sample_stats() {
  PoolStats s;
  s.opened = 5;
  s.busy = 3;
  s.idle = 2;
  s.connecting = 1;
  s.waiting = 4;
  s.max_waiting = 9;
  s.acquires = 100;
  s.hits = 90;
  s.misses = 10;
  s.waits = 7;
  s.timeouts = 2;
  s.exhausted = 1;
  s.creates = 11;
  s.create_failures = 3;
  s.drops = 6;
  s.last_connect_error = "connection refused \"x\" {}";
  s.ping_failures = 12;
  s.leaks = 13;
  for (std::size_t r = 0; r < kCloseReasons; ++r) s.closed[r] = 20 + r;
  s.wait_time = {.count = 100, .p50_us = 0, .p99_us = 1500, .max_us = 2000000};
  s.hold_time = {.count = 98, .p50_us = 250, .p99_us = 12345, .max_us = 1};
  s.classes[""] = {.requests = 60, .hits = 50, .misses = 10, .waits = 3};
  s.classes["reporting"] = {.requests = 40, .hits = 30, .misses = 10, .waits = 4};
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

TEST(PrometheusTest, EveryFamilyHasHelpAndType) {
  for (const PoolStats& st : {sample_stats(), PoolStats{}}) {
    const std::string text = to_prometheus(st, "p");
    for (const auto& [name, type] : kFamilies) {
      EXPECT_NE(text.find("# HELP " + name + " "), std::string::npos) << name;
      EXPECT_TRUE(has_line(text, "# TYPE " + name + " " + type)) << name;
    }
  }
}

TEST(PrometheusTest, NoOtherFamilies) {
  const std::string text = to_prometheus(sample_stats(), "p");
  std::size_t types = 0;
  for (const std::string& line : lines_of(text)) types += line.rfind("# TYPE ", 0) == 0;
  EXPECT_EQ(types, kFamilies.size());
}

TEST(PrometheusTest, Values) {
  const std::string t = to_prometheus(sample_stats(), "main");
  for (const char* line : {
           R"(reservoir_pool_connections{pool="main",state="busy"} 3)",
           R"(reservoir_pool_connections{pool="main",state="idle"} 2)",
           R"(reservoir_pool_connections{pool="main",state="connecting"} 1)",
           R"(reservoir_pool_opened{pool="main"} 5)",
           R"(reservoir_pool_waiting{pool="main"} 4)",
           R"(reservoir_pool_max_waiting{pool="main"} 9)",
           R"(reservoir_pool_acquires_total{pool="main"} 100)",
           R"(reservoir_pool_hits_total{pool="main"} 90)",
           R"(reservoir_pool_misses_total{pool="main"} 10)",
           R"(reservoir_pool_waits_total{pool="main"} 7)",
           R"(reservoir_pool_timeouts_total{pool="main"} 2)",
           R"(reservoir_pool_exhausted_total{pool="main"} 1)",
           R"(reservoir_pool_connections_created_total{pool="main"} 11)",
           R"(reservoir_pool_connect_failures_total{pool="main"} 3)",
           R"(reservoir_pool_drops_total{pool="main"} 6)",
           R"(reservoir_pool_ping_failures_total{pool="main"} 12)",
           R"(reservoir_pool_leaks_total{pool="main"} 13)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="idle_timeout"} 20)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="lifetime"} 21)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="broken"} 22)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="validation_failed"} 23)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="reset_failed"} 24)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="shrink"} 25)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="dropped"} 26)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="session_callback"} 27)",
           R"(reservoir_pool_connections_closed_total{pool="main",reason="pool_closed"} 28)",
           R"(reservoir_pool_wait_seconds{pool="main",quantile="0.5"} 0)",
           R"(reservoir_pool_wait_seconds{pool="main",quantile="0.99"} 0.0015)",
           R"(reservoir_pool_wait_seconds_count{pool="main"} 100)",
           R"(reservoir_pool_wait_max_seconds{pool="main"} 2)",
           R"(reservoir_pool_hold_seconds{pool="main",quantile="0.5"} 0.00025)",
           R"(reservoir_pool_hold_seconds{pool="main",quantile="0.99"} 0.012345)",
           R"(reservoir_pool_hold_seconds_count{pool="main"} 98)",
           R"(reservoir_pool_hold_max_seconds{pool="main"} 0.000001)",
       }) {
    EXPECT_TRUE(has_line(t, line)) << line;
  }
  // Free text never becomes a label.
  EXPECT_EQ(t.find("connection refused"), std::string::npos);
}

TEST(PrometheusTest, ClassLabels) {
  const std::string t = to_prometheus(sample_stats(), "main");
  for (const char* line : {
           R"(reservoir_pool_class_requests_total{pool="main",cclass=""} 60)",
           R"(reservoir_pool_class_requests_total{pool="main",cclass="reporting"} 40)",
           R"(reservoir_pool_class_hits_total{pool="main",cclass=""} 50)",
           R"(reservoir_pool_class_hits_total{pool="main",cclass="reporting"} 30)",
           R"(reservoir_pool_class_misses_total{pool="main",cclass="reporting"} 10)",
           R"(reservoir_pool_class_waits_total{pool="main",cclass=""} 3)",
           R"(reservoir_pool_class_waits_total{pool="main",cclass="reporting"} 4)",
       }) {
    EXPECT_TRUE(has_line(t, line)) << line;
  }

  PoolStats st;
  st.classes["a\"b"] = {.requests = 1};
  EXPECT_TRUE(has_line(to_prometheus(st, "p"),
                       R"(reservoir_pool_class_requests_total{pool="p",cclass="a\"b"} 1)"));
}

TEST(PrometheusTest, NoQuantilesBeforeTheFirstSample) {
  const std::string t = to_prometheus(PoolStats{}, "p");
  EXPECT_EQ(t.find("quantile="), std::string::npos);
  EXPECT_TRUE(has_line(t, R"(reservoir_pool_wait_seconds_count{pool="p"} 0)"));
  EXPECT_TRUE(has_line(t, R"(reservoir_pool_hold_max_seconds{pool="p"} 0)"));
  EXPECT_EQ(t.find("cclass="), std::string::npos);
}

TEST(PrometheusTest, PoolNameIsEscaped) {
  const std::string t = to_prometheus(PoolStats{}, "a\"b\\c\nd");
  EXPECT_TRUE(has_line(t, R"(reservoir_pool_opened{pool="a\"b\\c\nd"} 0)"));
  // The raw line feed must not split a sample.
  for (const std::string& line : lines_of(t)) EXPECT_NE(line, "d\"} 0");
}

TEST(PrometheusTest, EndsWithANewline) {
  for (const PoolStats& st : {sample_stats(), PoolStats{}}) {
    const std::string t = to_prometheus(st, "p");
    ASSERT_FALSE(t.empty());
    EXPECT_EQ(t.back(), '\n');
    EXPECT_EQ(t.find("\n\n"), std::string::npos);
  }
}

// Every line is a comment (# HELP / # TYPE) or a sample a Prometheus parser accepts, and every
// sample belongs to the family whose # TYPE came last (a summary's _count included).
TEST(PrometheusTest, EveryLineParses) {
  const std::regex sample_re(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [0-9.eE+-]+$)");
  for (const char* pool : {"main", "we\"ird\\na\nme"}) {
    const std::string t = to_prometheus(sample_stats(), pool);
    std::string family;
    std::size_t samples = 0;
    for (const std::string& line : lines_of(t)) {
      if (line.rfind("# HELP ", 0) == 0) continue;
      if (line.rfind("# TYPE ", 0) == 0) {
        family = line.substr(7, line.find(' ', 7) - 7);
        continue;
      }
      ++samples;
      EXPECT_TRUE(std::regex_match(line, sample_re)) << line;
      const std::string name = line.substr(0, line.find('{'));
      EXPECT_TRUE(name == family || name == family + "_count") << line;
    }
    // 3 + 3 + 11 + 9 closed + 2 * (2 quantiles + count + max) + 4 * 2 classes
    EXPECT_EQ(samples, 3u + 3 + 12 + kCloseReasons + 2 * 4 + 4 * 2);
  }
}

}  // namespace
}  // namespace reservoir::core
