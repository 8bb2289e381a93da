// odbc_diag.hpp: ODBC diagnostics (SQLGetDiagRec) turned into reservoir::Error. Internal to the
// ODBC driver: it includes the vendor headers.
#pragma once

#include <sql.h>
#include <sqlext.h>

#include <string>
#include <string_view>

#include "reservoir/error.hpp"

namespace reservoir::drivers::odbc {

// The diagnostic records of one handle: the first record's SQLSTATE and native code, and every
// record's message joined with "; ".
struct Diagnostics {
  std::string sqlstate;
  std::int64_t native_code = 0;
  std::string message;
};

// Reads the diagnostic records of handle (of handle_type). Never throws for want of records:
// message is then "no diagnostic record".
Diagnostics read_diagnostics(SQLSMALLINT handle_type, SQLHANDLE handle);

// Where an error happened, which decides how its SQLSTATE maps.
enum class Phase { connect, session };

// The ErrorCode for a SQLSTATE (see docs/odbc.md, "Error mapping"):
//   28000 (and 28P01)              -> auth_failed
//   3D000                          -> connect_failed (at connect), query_failed otherwise
//   08xxx at connect               -> connect_failed
//   08S01 08003 08007 HYT01 57P0x  -> connection_lost on a live connection
//   anything else                  -> connect_failed at connect, query_failed on a session
ErrorCode map_sqlstate(std::string_view sqlstate, Phase phase) noexcept;

// Drivers report a refused connect as 08001 whatever the server said (psqlODBC does); when the
// server's message is recognised, d's SQLSTATE becomes the server's own: 28P01 for PostgreSQL's
// "password authentication failed", 3D000 for 'database "x" does not exist', 28000 for MySQL /
// MariaDB error 1045 ("Access denied") and 3D000 for their error 1049 ("Unknown database").
void refine_connect_diagnostics(Diagnostics& d);

// Masks passwords in a diagnostic message, since drivers and the driver manager sometimes echo
// the connection string back: every "PWD=<value>" / "PASSWORD=<value>" value (case-insensitive)
// becomes "***", and so does every other occurrence of secret when it has at least 4 characters
// (a shorter one would garble unrelated words).
std::string scrub(std::string text, std::string_view secret);

// True for SQL_SUCCESS and SQL_SUCCESS_WITH_INFO.
inline bool ok(SQLRETURN rc) noexcept { return rc == SQL_SUCCESS || rc == SQL_SUCCESS_WITH_INFO; }

}  // namespace reservoir::drivers::odbc
