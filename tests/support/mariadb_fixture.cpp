// tests/support/mariadb_fixture.cpp: finds the ctest fixture's MariaDB server, or starts one for
// this process with mariadb_fixture.sh and stops it when the tests end.
#include "support/mariadb_fixture.hpp"


#include <cstdlib>
#include <filesystem>
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

constexpr fixture::ServerKind kMariaDb{
    .what = "MariaDB",
    .driver = "mariadb",
    .driver_package = "libmariadb-dev",
    .server_package = "mariadb-server",
    .script = RESERVOIR_MARIADB_FIXTURE_SCRIPT,
    .dsn_key = "RESERVOIR_MARIADB_DSN",
    .state_file_env = "RESERVOIR_MARIADB_STATE_FILE",
    .state_file = RESERVOIR_MARIADB_STATE_FILE,
    .temp_prefix = "reservoir-mariadbtest",
};

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

MariaDbServer from_environment(const std::string& dsn) {
  return from_dsn(dsn, fixture::env("RESERVOIR_MARIADB_OTHER_DSN"));
}

fixture::ProcessServer<MariaDbServer>& server() {
  static fixture::ProcessServer<MariaDbServer> s(kMariaDb, from_environment, from_state);
  return s;
}

// Stops the server this process started, after the last test.
[[maybe_unused]] ::testing::Environment* const kStopOwnServer =
    ::testing::AddGlobalTestEnvironment(new fixture::StopAtEnd([] { server().stop_own(); }));

}  // namespace

std::string MariaDbServer::dsn_for(std::string_view u, std::string_view pw, std::string_view db,
                                   std::string_view params) const {
  return fixture::url_dsn("mariadb", host, port, u, pw, db, params);
}

const MariaDbServer* mariadb_server(std::string* why) { return server().get(why); }

void MariaDbTest::SetUp() {
  std::string why;
  server_ = mariadb_server(&why);
  if (server_ != nullptr) return;
  fixture::skip_or_fail("MariaDB", why, server().hard_failure(), "RESERVOIR_MARIADB_REQUIRED");
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
