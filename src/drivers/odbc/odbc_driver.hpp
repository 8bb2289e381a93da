// odbc_driver.hpp: the ODBC driver for the "odbc" scheme (odbc:DSN=shop;UID=app;PWD=...,
// odbc:DRIVER=/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so;SERVER=...). It registers itself;
// find_driver("odbc") finds it. See docs/odbc.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "reservoir/driver.hpp"

namespace reservoir::drivers {

// Opens ODBC sessions through unixODBC with SQLDriverConnect (SQL_DRIVER_NOPROMPT). Everything
// after "odbc:" is the ODBC connection string, passed on as written except for reservoir's own
// key, which is removed first:
//   ReservoirStmtCache=<n>   prepared statements kept per connection (default 20, 0 disables)
//
// One ODBC environment (SQL_OV_ODBC3) serves the whole process; it is created on first use and
// never freed. Thread safety: connect() may run on several threads at once.
class OdbcDriver final : public Driver {
 public:
  std::string_view scheme() const noexcept override { return "odbc"; }

  // Sets SQL_ATTR_LOGIN_TIMEOUT and SQL_ATTR_CONNECTION_TIMEOUT to the timeout rounded up to
  // whole seconds (a zero timeout leaves the ODBC driver's defaults); for MariaDB Connector/ODBC,
  // which ignores the login timeout, it also adds CONN_TIMEOUT unless the string sets it.
  // Errors: invalid_argument (empty connection string, bad ReservoirStmtCache, an unbalanced '{',
  // refused before connecting), auth_failed (SQLSTATE 28000),
  // connect_failed (any other failure, with the SQLSTATE, e.g. 08001, or 3D000 for an unknown
  // database, and the native code). Messages name the DSN redacted, never the password.
  std::unique_ptr<Connection> connect(const Dsn& dsn, std::chrono::milliseconds timeout) override;
};

// An ODBC connection string without the ReservoirStmtCache key, and that key's value.
struct OdbcConnectionString {
  std::string connection_string;  // what SQLDriverConnect gets
  std::size_t stmt_cache_size = 20;
  std::string password;  // the PWD / PASSWORD value, scrubbed from messages
};

// Splits cs ("k=v;k={v;v}};...") into what the driver passes on and reservoir's own settings.
// A '{' opens a braced value only at the start of a value (unixODBC's rule); elsewhere it is a
// literal character. Throws Error{invalid_argument} for a bad ReservoirStmtCache value or a
// braced value without its closing '}' (the message does not quote the string).
OdbcConnectionString parse_odbc_connection_string(std::string_view cs);

// Whether cs names MariaDB Connector/ODBC in its DRIVER key (a path or name holding "maodbc" or
// "MariaDB", case-insensitively). connect() then adds CONN_TIMEOUT=<seconds>, since that driver
// ignores SQL_ATTR_LOGIN_TIMEOUT.
bool is_mariadb_driver(std::string_view cs);

// The registered ODBC driver. Never null.
std::shared_ptr<Driver> odbc_driver();

}  // namespace reservoir::drivers
