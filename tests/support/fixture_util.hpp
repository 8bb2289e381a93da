// tests/support/fixture_util.hpp: what the server fixtures (postgres_fixture.cpp,
// mariadb_fixture.cpp) share: finding or starting their server, the environment, the fixture
// scripts' state files and exit statuses, whether a server answers, DSNs, unique names, and
// skipping or failing a test whose server is missing.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace reservoir::testing::fixture {

// The exit status of pg_fixture.sh / mariadb_fixture.sh when there are no server binaries.
constexpr int kNoBinariesExit = 77;

// The environment variable `name`, or "" when it is not set.
std::string env(const char* name);

// The KEY=VALUE lines of a fixture script's state file.
std::map<std::string, std::string> read_state(const std::filesystem::path& file);

// Whether the server behind dsn accepts our credentials now, through the registered driver
// `driver` (a state file may outlive its server when a run was killed before its cleanup).
bool answers(std::string_view driver, const std::string& dsn);

// Runs the fixture script with args; returns its exit status and puts its output in *output.
int run_script(std::string_view script, const std::string& args, std::string* output);

// What a server fixture is about: its database, driver and script.
struct ServerKind {
  std::string_view what;            // "PostgreSQL", for messages
  std::string_view driver;          // the registered driver's name, "postgresql"
  std::string_view driver_package;  // the -dev package the driver is built with, "libpq-dev"
  std::string_view server_package;  // the Debian package of the server, "postgresql"
  std::string_view script;          // the fixture script's path
  const char* dsn_key;         // "RESERVOIR_PG_DSN": the environment variable and state-file key
  const char* state_file_env;  // "RESERVOIR_PG_STATE_FILE": names ctest's server's state file
  std::string_view state_file;      // the same, as CMake set it ("" if none)
  std::string_view temp_prefix;     // names this process's own state files, "reservoir-pgtest"
};

// Where a fixture found its server.
struct Located {
  std::string env_dsn;  // the environment names a server someone else runs (kind.dsn_key)
  std::map<std::string, std::string> state;  // else the state file of the server found or started
  std::string own_state;      // the state file of a server started for this process, or ""
  std::string why;            // nothing found: why
  bool hard_failure = false;  // a server should have started but did not
};

// The server the environment names, else ctest's shared one if it answers, else one started for
// this process (stop it with stop_server(kind, own_state) after the last test).
Located locate_server(const ServerKind& kind);

// Starts a server with its state in state_path, watched by the script's watchdog in case this
// process dies. Returns its state; on failure, an empty map with *why set, and *no_binaries true
// when there are no server binaries.
std::map<std::string, std::string> start_server(const ServerKind& kind,
                                                const std::string& state_path, std::string* why,
                                                bool* no_binaries);
void stop_server(const ServerKind& kind, const std::string& state_path);

// False, with *why, when reservoir was built without kind's driver.
bool has_driver(const ServerKind& kind, std::string* why);

// The server of one kind for this process: found or started at the first get() (thread-safe),
// stopped by stop_own() (after the last test: see StopAtEnd) if this process started it.
template <class Server>
class ProcessServer {
 public:
  using FromEnvironment = Server (*)(const std::string& dsn);
  using FromState = std::optional<Server> (*)(const std::map<std::string, std::string>& state);

  ProcessServer(const ServerKind& kind, FromEnvironment from_environment, FromState from_state)
      : kind_(kind), from_environment_(from_environment), from_state_(from_state) {}

  // The server, or nullptr with the reason in *why. The first call may take a second or two.
  const Server* get(std::string* why) {
    std::call_once(once_, [&] {
      Located found = locate_server(kind_);
      why_ = std::move(found.why);
      hard_failure_ = found.hard_failure;
      own_state_ = std::move(found.own_state);
      if (!found.env_dsn.empty()) {
        server_ = from_environment_(found.env_dsn);
      } else if (!found.state.empty()) {
        server_ = from_state_(found.state);
      }
    });
    if (why != nullptr) *why = why_;
    return server_ ? &*server_ : nullptr;
  }
  // The server should have started but did not.
  bool hard_failure() const { return hard_failure_; }

  void stop_own() {
    if (own_state_.empty()) return;
    stop_server(kind_, own_state_);
    own_state_.clear();
  }

 private:
  const ServerKind& kind_;
  const FromEnvironment from_environment_;
  const FromState from_state_;
  std::once_flag once_;
  std::optional<Server> server_;
  std::string why_;
  bool hard_failure_ = false;
  std::string own_state_;  // the state file of the server this process started
};

// Runs a function after the last test (register it with ::testing::AddGlobalTestEnvironment
// during static initialisation).
class StopAtEnd : public ::testing::Environment {
 public:
  explicit StopAtEnd(void (*stop)()) : stop_(stop) {}
  void TearDown() override { stop_(); }

 private:
  void (*stop_)();
};

// scheme://user[:password]@host[:port]/database[?params]. Test credentials are hex and names
// are plain, so nothing needs percent-encoding.
std::string url_dsn(std::string_view scheme, std::string_view host, std::uint16_t port,
                    std::string_view user, std::string_view password, std::string_view database,
                    std::string_view params);

// A lower-case SQL identifier unique to the current test and process, numbered by ++*counter.
std::string unique_name(std::string_view prefix, int* counter);

// In a test's SetUp when its server is missing: fails the test when hard_failure or the
// environment variable `required` is "1", else skips it; "<what> is not available: <why>".
void skip_or_fail(std::string_view what, std::string_view why, bool hard_failure,
                  const char* required);

}  // namespace reservoir::testing::fixture
