// tests/support/mariadb_fixture.cpp: finds the ctest fixture's MariaDB server, or starts one for
// this process with mariadb_fixture.sh and stops it when the tests end.
#include "support/mariadb_fixture.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>

#include "reservoir/driver.hpp"
#include "reservoir/dsn.hpp"
#include "reservoir/error.hpp"
#include "support/fixture_util.hpp"

// Set by tests/support/CMakeLists.txt.
#ifndef RESERVOIR_MARIADB_FIXTURE_SCRIPT
#define RESERVOIR_MARIADB_FIXTURE_SCRIPT "tests/support/mariadb_fixture.sh"
#endif
#ifndef RESERVOIR_MARIADB_STATE_FILE
#define RESERVOIR_MARIADB_STATE_FILE ""
#endif

namespace reservoir::testing {
namespace {

using fixture::env;
using fixture::kNoBinariesExit;
using fixture::read_state;

// The server a DSN names; its parts fill the rest.
MariaDbServer from_dsn(const std::string& dsn_text, const std::string& other_dsn) {
  MariaDbServer server;
  server.dsn = dsn_text;
  server.other_dsn = other_dsn;
  const Dsn dsn = Dsn::parse(dsn_text);
  server.host = dsn.host;
  server.port = dsn.port;
  server.database = dsn.database;
  server.user = dsn.user;
  server.password = dsn.password;
  return server;
}

std::optional<MariaDbServer> from_state(const std::map<std::string, std::string>& s) {
  const auto get = [&](const char* key) {
    const auto it = s.find(key);
    return it != s.end() ? it->second : std::string();
  };
  const std::string dsn = get("RESERVOIR_MARIADB_DSN");
  if (dsn.empty()) return std::nullopt;
  return from_dsn(dsn, get("RESERVOIR_MARIADB_OTHER_DSN"));
}

bool answers(const std::string& dsn) { return fixture::answers("mariadb", dsn); }

// Runs mariadb_fixture.sh with args; returns its exit status and puts its output in *output.
int run_script(const std::string& args, std::string* output) {
  return fixture::run_script(RESERVOIR_MARIADB_FIXTURE_SCRIPT, args, output);
}

struct State {
  std::once_flag once;
  std::optional<MariaDbServer> server;
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
  if (!find_driver("mariadb")) {
    s.why = "reservoir was built without the MariaDB driver (libmariadb-dev not found)";
    return;
  }
  if (const std::string dsn = env("RESERVOIR_MARIADB_DSN"); !dsn.empty()) {
    s.server = from_dsn(dsn, env("RESERVOIR_MARIADB_OTHER_DSN"));
    return;
  }
  std::string state_file = env("RESERVOIR_MARIADB_STATE_FILE");
  if (state_file.empty()) state_file = RESERVOIR_MARIADB_STATE_FILE;
  if (!state_file.empty() && std::filesystem::exists(state_file)) {
    auto server = from_state(read_state(state_file));
    if (server && answers(server->dsn)) {
      s.server = std::move(server);
      return;
    }
  }

  // Our own server, watched by the script's watchdog in case this process dies.
  const std::string state_path = (std::filesystem::temp_directory_path() /
                                  ("reservoir-mariadbtest-" + std::to_string(::getpid()) + ".env"))
                                     .string();
  std::string output;
  const int rc = run_script("start '" + state_path + "' " + std::to_string(::getpid()), &output);
  if (rc != 0) {
    s.why = rc == kNoBinariesExit
                ? "no MariaDB server binaries (apt-get install mariadb-server)"
                : "mariadb_fixture.sh start failed (exit " + std::to_string(rc) + "): " + output;
    s.hard_failure = rc != kNoBinariesExit;
    return;
  }
  s.own_state = state_path;
  s.server = from_state(read_state(state_path));
  if (!s.server) {
    s.why = "mariadb_fixture.sh wrote no DSN to " + state_path;
    s.hard_failure = true;
  }
}

}  // namespace

std::string MariaDbServer::dsn_for(std::string_view u, std::string_view pw, std::string_view db,
                                   std::string_view params) const {
  // Test credentials are hex and names are plain, so nothing needs percent-encoding.
  std::string out = "mariadb://" + std::string(u);
  if (!pw.empty()) out += ":" + std::string(pw);
  out += "@" + host;
  if (port != 0) out += ":" + std::to_string(port);
  out += "/" + std::string(db);
  if (!params.empty()) out += "?" + std::string(params);
  return out;
}

const MariaDbServer* mariadb_server(std::string* why) {
  State& s = state();
  std::call_once(s.once, [&] { find_or_start(s); });
  if (why != nullptr) *why = s.why;
  return s.server ? &*s.server : nullptr;
}

void MariaDbTest::SetUp() {
  std::string why;
  server_ = mariadb_server(&why);
  if (server_ != nullptr) return;
  fixture::skip_or_fail("MariaDB", why, state().hard_failure, "RESERVOIR_MARIADB_REQUIRED");
}

std::unique_ptr<Connection> MariaDbTest::connect(const std::string& dsn,
                                                 std::chrono::milliseconds timeout) {
  const auto driver = find_driver("mariadb");
  if (!driver) throw Error(ErrorCode::unsupported, "no mariadb driver registered");
  return driver->connect(Dsn::parse(dsn.empty() ? maria().dsn : dsn), timeout);
}

std::string MariaDbTest::unique_name(std::string_view prefix) {
  return fixture::unique_name(prefix, &names_);
}

}  // namespace reservoir::testing
