// tests/support/mariadb_fixture.hpp: the throwaway MariaDB server integration tests run against,
// found (or started) once per test program. See tests/support/README.md.
//
//   class MariaDbThingTest : public reservoir::testing::MariaDbTest {};
//   TEST_F(MariaDbThingTest, Works) {
//     auto conn = connect();                        // reservoir_app on reservoir_test
//     conn->execute("CREATE TEMPORARY TABLE t(x int)");
//     PoolOptions o; o.dsn = maria().dsn; ...
//   }
//
// Where the server comes from, first match wins:
//   1. RESERVOIR_MARIADB_DSN (and optionally RESERVOIR_MARIADB_OTHER_DSN) in the environment;
//   2. the state file of the ctest fixture "mariadb" (tests/support/mariadb_fixture.sh start),
//      if its server answers;
//   3. a server started for this process with mariadb_fixture.sh and stopped when the tests end
//      (and by the script's watchdog if the process dies first).
// When none is available (no MariaDB binaries, no driver) tests are skipped, or fail when
// RESERVOIR_MARIADB_REQUIRED=1.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "reservoir/connection.hpp"

namespace reservoir::testing {

struct MariaDbServer {
  std::string dsn;        // reservoir_app on reservoir_test over TCP with a password
  std::string other_dsn;  // a second user (reservoir_other); empty if the environment gave none
  std::string host;
  std::uint16_t port = 0;
  std::string database;
  std::string user;
  std::string password;

  // mariadb://user:password@host:port/database[?params] on this server.
  std::string dsn_for(std::string_view user, std::string_view password, std::string_view database,
                      std::string_view params = {}) const;
};

// The server for this process, or nullptr with the reason in *why. Thread-safe; the first call
// may take a second or two (it may start the server).
const MariaDbServer* mariadb_server(std::string* why = nullptr);

// Base for tests that need the server: SetUp skips (or fails, see above) when there is none.
class MariaDbTest : public ::testing::Test {
 protected:
  void SetUp() override;

  const MariaDbServer& maria() const { return *server_; }

  // Opens a connection through the registered mariadb driver (dsn defaults to maria().dsn).
  std::unique_ptr<Connection> connect(const std::string& dsn = {},
                                      std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // A lower-case SQL identifier unique to this test and process (tests run as parallel
  // processes against one database).
  std::string unique_name(std::string_view prefix = "t");

 private:
  const MariaDbServer* server_ = nullptr;
  int names_ = 0;
};

}  // namespace reservoir::testing
