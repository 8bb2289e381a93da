// tests/support/odbc_support.hpp: ODBC connection strings for the integration tests (ODBC to
// SQLite, PostgreSQL and MariaDB through the Debian driver packages), with an odbcinst set-up of
// their own so that nothing in /etc is read or needed. See tests/support/README.md.
//
//   std::string why;
//   const std::string dsn = odbc_sqlite_dsn(dir / "t.db", &why);   // "odbc:DRIVER=/...;..."
//   if (dsn.empty()) GTEST_SKIP() << why;
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace reservoir::testing {

struct PostgresServer;
struct MariaDbServer;

// The ODBC driver libraries the tests use: RESERVOIR_ODBC_<NAME>_DRIVER overrides the Debian
// path (libsqliteodbc, odbc-postgresql, odbc-mariadb).
enum class OdbcBackend { sqlite, postgresql, mariadb };

// The driver library for backend, or empty with the reason in *why (package not installed).
std::string odbc_driver_library(OdbcBackend backend, std::string* why = nullptr);

// Points unixODBC at a private configuration (once per process, before the first connect):
// ODBCSYSINI and ODBCINI name files in a temporary directory, where odbcinst.ini lists the
// drivers found above as "Reservoir SQLite3", "Reservoir PostgreSQL" and "Reservoir MariaDB",
// and odbc.ini is empty. Returns that directory.
const std::filesystem::path& odbc_config_dir();

// Adds a data source [name] to the private odbc.ini (for tests of the DSN=name form).
void add_odbc_data_source(std::string_view name, std::string_view attributes_lines);

// True when the ODBC driver of reservoir is built in (reservoir::odbc, unixodbc-dev present).
bool odbc_driver_built();

// "odbc:DRIVER=<libsqlite3odbc.so>;Database=<file>;Timeout=5000" + extra ("k=v;..."), or empty
// with the reason in *why.
std::string odbc_sqlite_dsn(const std::filesystem::path& file, std::string* why,
                            std::string_view extra = {});

// psqlODBC to server as user/password on database (defaults: the server's own), with
// BoolsAsChar=0 so that booleans come back typed, plus extra. Empty with *why when the driver
// library is missing.
std::string odbc_postgres_dsn(const PostgresServer& server, std::string* why,
                              std::string_view extra = {}, std::string_view user = {},
                              std::string_view password = {}, std::string_view database = {});

// MariaDB Connector/ODBC to server (the MariaDB fixture's) as user/password (defaults: the
// server's own) with CHARSET=utf8mb4, plus extra. Empty with *why when the driver library is
// missing.
std::string odbc_mariadb_dsn(const MariaDbServer& server, std::string* why,
                             std::string_view extra = {}, std::string_view user = {},
                             std::string_view password = {});

}  // namespace reservoir::testing
