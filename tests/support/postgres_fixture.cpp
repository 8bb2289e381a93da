// tests/support/postgres_fixture.cpp: finds the ctest fixture's PostgreSQL server, or starts one
// for this process with pg_fixture.sh and stops it when the tests end.
#include "support/postgres_fixture.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "reservoir/driver.hpp"
#include "reservoir/dsn.hpp"
#include "reservoir/error.hpp"
#include "support/fixture_util.hpp"

// Set by tests/support/CMakeLists.txt.
#ifndef RESERVOIR_PG_FIXTURE_SCRIPT
#define RESERVOIR_PG_FIXTURE_SCRIPT "tests/support/pg_fixture.sh"
#endif
#ifndef RESERVOIR_PG_STATE_FILE
#define RESERVOIR_PG_STATE_FILE ""
#endif

namespace reservoir::testing {
namespace {

using fixture::env;
using fixture::kNoBinariesExit;
using fixture::read_state;

std::optional<PostgresServer> from_state(const std::map<std::string, std::string>& s) {
  const auto get = [&](const char* key) {
    const auto it = s.find(key);
    return it != s.end() ? it->second : std::string();
  };
  PostgresServer server;
  server.dsn = get("RESERVOIR_PG_DSN");
  if (server.dsn.empty()) return std::nullopt;
  server.other_dsn = get("RESERVOIR_PG_OTHER_DSN");
  server.admin_dsn = get("RESERVOIR_PG_ADMIN_DSN");
  server.host = get("RESERVOIR_PG_HOST");
  server.port = static_cast<std::uint16_t>(std::atoi(get("RESERVOIR_PG_PORT").c_str()));
  server.database = get("RESERVOIR_PG_DATABASE");
  server.user = get("RESERVOIR_PG_USER");
  server.password = get("RESERVOIR_PG_PASSWORD");
  server.other_user = get("RESERVOIR_PG_OTHER_USER");
  server.other_password = get("RESERVOIR_PG_OTHER_PASSWORD");
  return server;
}

// RESERVOIR_PG_DSN names a server someone else runs; its parts fill the rest.
PostgresServer from_environment(const std::string& dsn_text) {
  PostgresServer server;
  server.dsn = dsn_text;
  server.other_dsn = env("RESERVOIR_PG_OTHER_DSN");
  server.admin_dsn = env("RESERVOIR_PG_ADMIN_DSN");
  const Dsn dsn = Dsn::parse(dsn_text);
  server.host = dsn.host;
  server.port = dsn.port;
  server.database = dsn.database;
  server.user = dsn.user;
  server.password = dsn.password;
  if (!server.other_dsn.empty()) {
    const Dsn other = Dsn::parse(server.other_dsn);
    server.other_user = other.user;
    server.other_password = other.password;
  }
  return server;
}

bool answers(const std::string& dsn) { return fixture::answers("postgresql", dsn); }

// Runs pg_fixture.sh with args; returns its exit status and puts its output in *output.
int run_script(const std::string& args, std::string* output) {
  return fixture::run_script(RESERVOIR_PG_FIXTURE_SCRIPT, args, output);
}

struct State {
  std::once_flag once;
  std::optional<PostgresServer> server;
  std::string why;
  bool hard_failure = false;  // the server should have started but did not
  std::string own_state;      // the state file of the server this process started
};

State& state() {
  static State s;
  return s;
}

// Stops the server this process started, after the last test.
class StopOwnServer : public ::testing::Environment {
 public:
  void TearDown() override {
    State& s = state();
    if (s.own_state.empty()) return;
    run_script("stop '" + s.own_state + "'", nullptr);
    s.own_state.clear();
  }
};

[[maybe_unused]] ::testing::Environment* const kStopOwnServer =
    ::testing::AddGlobalTestEnvironment(new StopOwnServer);

void find_or_start(State& s) {
  if (!find_driver("postgresql")) {
    s.why = "reservoir was built without the PostgreSQL driver (libpq-dev not found)";
    return;
  }
  if (const std::string dsn = env("RESERVOIR_PG_DSN"); !dsn.empty()) {
    s.server = from_environment(dsn);
    return;
  }
  std::string state_file = env("RESERVOIR_PG_STATE_FILE");
  if (state_file.empty()) state_file = RESERVOIR_PG_STATE_FILE;
  if (!state_file.empty() && std::filesystem::exists(state_file)) {
    auto server = from_state(read_state(state_file));
    if (server && answers(server->dsn)) {
      s.server = std::move(server);
      return;
    }
  }

  // Our own server, watched by the script's watchdog in case this process dies (the watchdog
  // then deletes the state file too).
  const std::string state_path = (std::filesystem::temp_directory_path() /
                                  ("reservoir-pgtest-" + std::to_string(::getpid()) + ".env"))
                                     .string();
  std::string output;
  const int rc = run_script("start '" + state_path + "' " + std::to_string(::getpid()), &output);
  if (rc != 0) {
    s.why = rc == kNoBinariesExit
                ? "no PostgreSQL server binaries (apt-get install postgresql)"
                : "pg_fixture.sh start failed (exit " + std::to_string(rc) + "): " + output;
    s.hard_failure = rc != kNoBinariesExit;
    return;
  }
  s.own_state = state_path;
  s.server = from_state(read_state(state_path));
  if (!s.server) {
    s.why = "pg_fixture.sh wrote no DSN to " + state_path;
    s.hard_failure = true;
  }
}

}  // namespace

std::string PostgresServer::dsn_for(std::string_view u, std::string_view pw, std::string_view db,
                                    std::string_view params) const {
  // Test credentials are hex and names are plain, so nothing needs percent-encoding.
  std::string out = "postgresql://" + std::string(u);
  if (!pw.empty()) out += ":" + std::string(pw);
  out += "@" + host;
  if (port != 0) out += ":" + std::to_string(port);
  out += "/" + std::string(db);
  if (!params.empty()) out += "?" + std::string(params);
  return out;
}

const PostgresServer* postgres_server(std::string* why) {
  State& s = state();
  std::call_once(s.once, [&] { find_or_start(s); });
  if (why != nullptr) *why = s.why;
  return s.server ? &*s.server : nullptr;
}

std::unique_ptr<OwnPostgresServer> OwnPostgresServer::start(std::string* why, bool* no_binaries) {
  static std::atomic<int> started{0};
  *no_binaries = false;
  if (!find_driver("postgresql")) {
    *why = "reservoir was built without the PostgreSQL driver (libpq-dev not found)";
    return nullptr;
  }
  const std::string state_path =
      (std::filesystem::temp_directory_path() /
       ("reservoir-pgown-" + std::to_string(::getpid()) + "-" + std::to_string(++started) + ".env"))
          .string();
  std::string output;
  const int rc = run_script("start '" + state_path + "' " + std::to_string(::getpid()), &output);
  if (rc != 0) {
    *no_binaries = rc == kNoBinariesExit;
    *why = *no_binaries ? "no PostgreSQL server binaries (apt-get install postgresql)"
                        : "pg_fixture.sh start failed (exit " + std::to_string(rc) + "): " + output;
    return nullptr;
  }
  auto server = from_state(read_state(state_path));
  if (!server) {
    run_script("stop '" + state_path + "'", nullptr);
    *why = "pg_fixture.sh wrote no DSN to " + state_path;
    return nullptr;
  }
  return std::unique_ptr<OwnPostgresServer>(new OwnPostgresServer(std::move(*server), state_path));
}

OwnPostgresServer::~OwnPostgresServer() { run_script("stop '" + state_file_ + "'", nullptr); }

void OwnPostgresServer::restart() {
  std::string output;
  const int rc = run_script("restart '" + state_file_ + "'", &output);
  if (rc != 0) {
    throw std::runtime_error("pg_fixture.sh restart failed (exit " + std::to_string(rc) +
                             "): " + output);
  }
}

std::unique_ptr<OwnPostgresServer> PostgresTest::start_own_server() {
  std::string why;
  bool no_binaries = false;
  auto own = OwnPostgresServer::start(&why, &no_binaries);
  if (own) return own;
  if (no_binaries && env("RESERVOIR_PG_REQUIRED") != "1") {
    // GTEST_SKIP() without its `return` (this function returns a value): marks the test skipped.
    const std::string message = "PostgreSQL is not available: " + why;
    GTEST_MESSAGE_(message.c_str(), ::testing::TestPartResult::kSkip);
  } else {
    ADD_FAILURE() << "could not start a PostgreSQL server of the test's own: " << why;
  }
  return nullptr;
}

void PostgresTest::SetUp() {
  std::string why;
  server_ = postgres_server(&why);
  if (server_ != nullptr) return;
  fixture::skip_or_fail("PostgreSQL", why, state().hard_failure, "RESERVOIR_PG_REQUIRED");
}

std::unique_ptr<Connection> PostgresTest::connect(const std::string& dsn,
                                                  std::chrono::milliseconds timeout) {
  const auto driver = find_driver("postgresql");
  if (!driver) throw Error(ErrorCode::unsupported, "no postgresql driver registered");
  return driver->connect(Dsn::parse(dsn.empty() ? pg().dsn : dsn), timeout);
}

std::string PostgresTest::unique_name(std::string_view prefix) {
  return fixture::unique_name(prefix, &names_);
}

}  // namespace reservoir::testing
