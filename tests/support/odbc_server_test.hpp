// tests/support/odbc_server_test.hpp: the base of the ODBC tests against a fixture's server
// (pg_odbc_test.cpp, mariadb_odbc_test.cpp): the server fixture's SetUp, then a skip when the
// ODBC driver is not built or the backend's ODBC driver package is missing.
//
//   class PgOdbcTest : public testing::OdbcServerTest<testing::PostgresTest> {
//     std::string odbc_dsn(std::string* why) override { return odbc_postgres_dsn(pg(), why); }
//   };
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "drivers/odbc/odbc_connection.hpp"
#include "reservoir/connection.hpp"
#include "reservoir/driver.hpp"
#include "reservoir/dsn.hpp"
#include "support/odbc_support.hpp"

namespace reservoir::testing {

template <class ServerTest>
class OdbcServerTest : public ServerTest {
 protected:
  std::string dsn;  // the ODBC DSN to the fixture's server

  // The ODBC DSN to the server, or empty with the reason in *why (see odbc_support.hpp).
  virtual std::string odbc_dsn(std::string* why) = 0;

  void SetUp() override {
    ServerTest::SetUp();
    if (::testing::Test::IsSkipped() || ::testing::Test::HasFatalFailure()) return;
    if (!odbc_driver_built()) GTEST_SKIP() << "the ODBC driver is not built (unixodbc-dev)";
    std::string why;
    dsn = odbc_dsn(&why);
    if (dsn.empty()) GTEST_SKIP() << why;
  }

  std::unique_ptr<Connection> odbc_connect(const std::string& text = {}) {
    return find_driver("odbc")->connect(Dsn::parse(text.empty() ? dsn : text),
                                        std::chrono::seconds(10));
  }
  static drivers::OdbcConnection& odbc(Connection& c) {
    return dynamic_cast<drivers::OdbcConnection&>(c);
  }
};

}  // namespace reservoir::testing
