// tests/support/postgres_fixture.hpp: the throwaway PostgreSQL server integration tests run
// against, found (or started) once per test program. See tests/support/README.md.
//
//   class PgThingTest : public reservoir::testing::PostgresTest {};
//   TEST_F(PgThingTest, Works) {
//     auto conn = connect();                              // reservoir_app on reservoir_test
//     conn->execute("CREATE TEMP TABLE t(x int)");
//     PoolOptions o; o.dsn = pg().dsn; ...
//   }
//
// Where the server comes from, first match wins:
//   1. RESERVOIR_PG_DSN (and optionally RESERVOIR_PG_OTHER_DSN) in the environment;
//   2. the state file of the ctest fixture "postgres" (tests/support/pg_fixture.sh start), if
//      its server answers;
//   3. a server started for this process with pg_fixture.sh and stopped when the tests end
//      (and by the script's watchdog if the process dies first).
// When none is available (no PostgreSQL binaries, no driver) tests are skipped, or fail when
// RESERVOIR_PG_REQUIRED=1.
//
// Tests that restart or stop the server use a server of their own (OwnPostgresServer), so that
// the tests sharing the one above never see it go away:
//
//   auto own = start_own_server();                      // in a PostgresTest
//   if (!own) return;                                    // skipped or failed, with the reason
//   own->restart();                                      // every session ends; same port
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "reservoir/connection.hpp"

namespace reservoir::testing {

struct PostgresServer {
  std::string dsn;        // reservoir_app on reservoir_test over TCP with a password
  std::string other_dsn;  // a second role (reservoir_other); empty if the environment gave none
  std::string admin_dsn;  // the superuser over the Unix socket; empty if not known
  std::string host;
  std::uint16_t port = 0;
  std::string database;
  std::string user;
  std::string password;
  std::string other_user;
  std::string other_password;

  // postgresql://user:password@host:port/database[?params] on this server.
  std::string dsn_for(std::string_view user, std::string_view password, std::string_view database,
                      std::string_view params = {}) const;
};

// A server started for one test with pg_fixture.sh (its own directory, port and roles, as
// described in tests/support/README.md), stopped by the destructor, or by the script's watchdog
// if the process dies first. Not thread-safe: one test thread drives it.
class OwnPostgresServer {
 public:
  // Starts one (a second or two). nullptr when it cannot: *why says why, and *no_binaries is
  // true when that is because there are no PostgreSQL server binaries.
  static std::unique_ptr<OwnPostgresServer> start(std::string* why, bool* no_binaries);
  ~OwnPostgresServer();
  OwnPostgresServer(const OwnPostgresServer&) = delete;
  OwnPostgresServer& operator=(const OwnPostgresServer&) = delete;

  const PostgresServer& server() const { return server_; }

  // pg_fixture.sh restart: a fast shutdown (pg_ctl restart -m fast -w, every session is ended
  // with 57P01 as in a real restart), then a start on the same port with the same roles.
  // Returns once the server accepts connections again. Throws std::runtime_error with the
  // script's output if it did not come back within 60 s.
  void restart();

 private:
  OwnPostgresServer(PostgresServer server, std::string state_file)
      : server_(std::move(server)), state_file_(std::move(state_file)) {}
  PostgresServer server_;
  std::string state_file_;
};

// The server for this process, or nullptr with the reason in *why. Thread-safe; the first call
// may take a second or two (it may start the server).
const PostgresServer* postgres_server(std::string* why = nullptr);

// Base for tests that need the server: SetUp skips (or fails, see above) when there is none.
class PostgresTest : public ::testing::Test {
 protected:
  void SetUp() override;

  const PostgresServer& pg() const { return *server_; }

  // Opens a connection through the registered postgresql driver (dsn defaults to pg().dsn).
  std::unique_ptr<Connection> connect(const std::string& dsn = {},
                                      std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // A server of this test's own, for tests that restart it. When none can be started this marks
  // the test skipped (no server binaries and RESERVOIR_PG_REQUIRED unset) or failed, and returns
  // nullptr: the caller returns at once.
  std::unique_ptr<OwnPostgresServer> start_own_server();

  // A lower-case SQL identifier unique to this test and process (tests run as parallel
  // processes against one database), e.g. "t_pgpooltest_threads_4711_1".
  std::string unique_name(std::string_view prefix = "t");

 private:
  const PostgresServer* server_ = nullptr;
  int names_ = 0;
};

}  // namespace reservoir::testing
