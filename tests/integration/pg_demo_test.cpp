// tests/integration/pg_demo_test.cpp: the reservoir_demo program (apps/demo) run against the
// fixture's PostgreSQL server: the lab fetches from a real sequence (nextval) and exits 0.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_driver.hpp"
#include "support/postgres_fixture.hpp"

// Set by tests/CMakeLists.txt to $<TARGET_FILE:reservoir_demo>; empty when the apps are not built.
#ifndef RESERVOIR_DEMO_BINARY
#define RESERVOIR_DEMO_BINARY ""
#endif

namespace reservoir {
namespace {

using testing::PostgresTest;

struct DemoRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs the demo with args (each single-quoted for the shell), stdin from /dev/null.
DemoRun run_demo(const std::vector<std::string>& args) {
  std::string command = "'" RESERVOIR_DEMO_BINARY "'";
  for (const std::string& a : args) command += " '" + a + "'";
  command += " </dev/null 2>&1";
  DemoRun run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) run.output.append(buffer, n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

// The "Thread #i fetched sequence = v" lines: values by thread, in the order printed.
std::map<int, std::vector<std::int64_t>> fetches(const std::string& output) {
  static const std::regex kLine(R"(^Thread #(\d+) fetched sequence = (\d+)$)");
  std::map<int, std::vector<std::int64_t>> out;
  std::istringstream in(output);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, kLine)) {
      out[std::stoi(m[1].str())].push_back(std::stoll(m[2].str()));
    }
  }
  return out;
}

class PgDemoTest : public PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (std::string(RESERVOIR_DEMO_BINARY).empty()) {
      GTEST_SKIP() << "reservoir_demo is not built (RESERVOIR_BUILD_APPS=OFF)";
    }
  }

  // Checks a run: exit 0, `threads` threads with 4 fetches each, values distinct across all
  // threads and increasing within each; no password in the output. Returns the largest value.
  std::int64_t check(const DemoRun& run, int threads) {
    EXPECT_EQ(run.exit_code, 0) << run.output;
    EXPECT_EQ(run.output.find(pg().password), std::string::npos) << "the password was printed";
    EXPECT_NE(run.output.find("Pool postgresql://" + pg().user + ":***@"), std::string::npos)
        << run.output;
    EXPECT_NE(run.output.find("Pool statistics"), std::string::npos) << run.output;
    EXPECT_EQ(run.output.find(" failed: "), std::string::npos) << run.output;
    const auto by_thread = fetches(run.output);
    EXPECT_EQ(by_thread.size(), static_cast<std::size_t>(threads)) << run.output;
    std::set<std::int64_t> all;
    std::size_t lines = 0;
    for (const auto& [thread, values] : by_thread) {
      EXPECT_GE(thread, 1);
      EXPECT_LE(thread, threads);
      EXPECT_EQ(values.size(), 4u) << "thread " << thread << "\n" << run.output;
      for (std::size_t i = 1; i < values.size(); ++i) {
        EXPECT_LT(values[i - 1], values[i]) << "thread " << thread << "\n" << run.output;
      }
      lines += values.size();
      all.insert(values.begin(), values.end());
    }
    EXPECT_EQ(lines, static_cast<std::size_t>(threads) * 4);
    EXPECT_EQ(all.size(), lines) << "a value was fetched twice\n" << run.output;
    return all.empty() ? 0 : *all.rbegin();
  }
};

TEST_F(PgDemoTest, LabRunsOnARealSequence) {
  const DemoRun run = run_demo({"--dsn", pg().dsn});
  const std::int64_t last = check(run, 2);  // the default: 2 threads, 8 fetches
  // The sequence is the server's: it is there after the run and went at least as far.
  auto conn = connect();
  EXPECT_GE(conn->query("SELECT last_value FROM reservoir_demo_seq")[0][0].as<std::int64_t>(),
            last);
}

TEST_F(PgDemoTest, MoreThreadsThanConnectionsWaitTheirTurn) {
  const DemoRun first = run_demo({"--dsn", pg().dsn});
  const std::int64_t before = check(first, 2);
  const DemoRun run = run_demo(
      {"--dsn", pg().dsn, "--threads", "4", "--max", "2", "--get-mode", "wait", "--hold-ms", "20"});
  check(run, 4);
  // A sequence keeps counting across runs.
  for (const auto& [thread, values] : fetches(run.output)) {
    for (const auto v : values) EXPECT_GT(v, before) << "thread " << thread;
  }
  EXPECT_NE(run.output.find("get mode wait"), std::string::npos) << run.output;
}

// Demos that create the sequence at the same moment: each runs CREATE SEQUENCE IF NOT EXISTS,
// which PostgreSQL does not guard against a concurrent creator (the loser gets 23505 or 42P07).
// The test makes the race certain: it creates the sequence in a transaction of its own, lets
// every demo block on that uncommitted name, then commits; each demo's CREATE then fails with
// 23505, and the demo must still run. A schema of the test's own (search_path in the DSN's
// options) keeps other tests' demos out of it.
TEST_F(PgDemoTest, DemosCreatingTheSequenceAtOnceAllRun) {
  const std::string schema = unique_name("demo");
  connect()->execute("CREATE SCHEMA " + schema);
  const std::string dsn =
      pg().dsn_for(pg().user, pg().password, pg().database,
                   "application_name=" + schema + "&options=-c%20search_path%3D" + schema);
  auto creator = connect();
  creator->begin();
  creator->execute("CREATE SEQUENCE " + schema + ".reservoir_demo_seq");
  constexpr int kDemos = 4;
  std::vector<DemoRun> runs(kDemos);
  std::vector<std::thread> threads;
  for (int i = 0; i < kDemos; ++i)
    threads.emplace_back([&, i] { runs[i] = run_demo({"--dsn", dsn, "--hold-ms", "0"}); });
  auto watcher = connect();
  const bool all_blocked = testing::eventually(
      [&] {
        return watcher
                   ->query("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                           "AND wait_event_type = 'Lock'",
                           schema)[0][0]
                   .as<std::int64_t>() == kDemos;
      },
      std::chrono::seconds(30));
  creator->commit();
  for (auto& t : threads) t.join();
  ASSERT_TRUE(all_blocked) << "the demos did not all wait for the test's CREATE SEQUENCE";
  std::set<std::int64_t> all;
  for (const DemoRun& run : runs) {
    check(run, 2);
    for (const auto& [thread, values] : fetches(run.output)) all.insert(values.begin(), values.end());
  }
  // One sequence served them all: no value twice across the runs.
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kDemos) * 2 * 4);
  connect()->execute("DROP SCHEMA " + schema + " CASCADE");
}

}  // namespace
}  // namespace reservoir
