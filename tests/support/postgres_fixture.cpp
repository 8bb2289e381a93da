// tests/support/postgres_fixture.cpp: finds the ctest fixture's PostgreSQL server, or starts one
// for this process with pg_fixture.sh and stops it when the tests end.
#include "support/postgres_fixture.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
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

constexpr fixture::ServerKind kPostgres{
    .what = "PostgreSQL",
    .driver = "postgresql",
    .driver_package = "libpq-dev",
    .server_package = "postgresql",
    .script = RESERVOIR_PG_FIXTURE_SCRIPT,
    .dsn_key = "RESERVOIR_PG_DSN",
    .state_file_env = "RESERVOIR_PG_STATE_FILE",
    .state_file = RESERVOIR_PG_STATE_FILE,
    .temp_prefix = "reservoir-pgtest",
};

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

fixture::ProcessServer<PostgresServer>& server() {
  static fixture::ProcessServer<PostgresServer> s(kPostgres, from_environment, from_state);
  return s;
}

// Stops the server this process started, after the last test.
[[maybe_unused]] ::testing::Environment* const kStopOwnServer =
    ::testing::AddGlobalTestEnvironment(new fixture::StopAtEnd([] { server().stop_own(); }));

}  // namespace

std::string PostgresServer::dsn_for(std::string_view u, std::string_view pw, std::string_view db,
                                    std::string_view params) const {
  return fixture::url_dsn("postgresql", host, port, u, pw, db, params);
}

const PostgresServer* postgres_server(std::string* why) { return server().get(why); }

std::unique_ptr<OwnPostgresServer> OwnPostgresServer::start(std::string* why, bool* no_binaries) {
  static std::atomic<int> started{0};
  *no_binaries = false;
  if (!fixture::has_driver(kPostgres, why)) return nullptr;
  const std::string state_path =
      (std::filesystem::temp_directory_path() /
       ("reservoir-pgown-" + std::to_string(::getpid()) + "-" + std::to_string(++started) + ".env"))
          .string();
  auto server = from_state(fixture::start_server(kPostgres, state_path, why, no_binaries));
  if (!server) return nullptr;
  return std::unique_ptr<OwnPostgresServer>(new OwnPostgresServer(std::move(*server), state_path));
}

OwnPostgresServer::~OwnPostgresServer() { fixture::stop_server(kPostgres, state_file_); }

void OwnPostgresServer::restart() {
  std::string output;
  const int rc = fixture::run_script(kPostgres.script, "restart '" + state_file_ + "'", &output);
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
  fixture::skip_or_fail("PostgreSQL", why, server().hard_failure(), "RESERVOIR_PG_REQUIRED");
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
