// odbc_driver.cpp: the process's ODBC environment, connection strings, SQLDriverConnect, and the
// driver's registration for the "odbc" scheme before main() runs.
#include "drivers/odbc/odbc_driver.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <mutex>
#include <string>
#include <vector>

#include "drivers/odbc/odbc_connection.hpp"
#include "drivers/odbc/odbc_diag.hpp"
#include "reservoir/error.hpp"

#ifdef RESERVOIR_HAVE_DRIVER_COMMON
#include "drivers/common/openssl_exit.hpp"
#endif

namespace reservoir::drivers {
namespace {

using odbc::ok;

constexpr std::string_view kStmtCacheKey = "ReservoirStmtCache";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The value of one attribute as the driver sees it: {a;b}}c} is "a;b}c".
std::string unbrace(std::string_view v) {
  v = trim(v);
  if (v.size() < 2 || v.front() != '{' || v.back() != '}') return std::string(v);
  std::string out;
  for (std::size_t i = 1; i + 1 < v.size(); ++i) {
    out += v[i];
    if (v[i] == '}' && i + 2 < v.size() && v[i + 1] == '}') ++i;
  }
  return out;
}

// The keys of a connection string as parse_odbc_connection_string() splits it.
template <class F>
void for_each_attribute(std::string_view cs, F&& f) {
  std::size_t i = 0;
  while (i < cs.size()) {
    const std::size_t start = i;
    while (i < cs.size() && cs[i] != '=' && cs[i] != ';') ++i;
    if (i < cs.size() && cs[i] == '=') {
      ++i;
      std::size_t j = i;
      while (j < cs.size() && std::isspace(static_cast<unsigned char>(cs[j]))) ++j;
      if (j < cs.size() && cs[j] == '{') {
        std::size_t k = j + 1;
        while (k < cs.size() && !(cs[k] == '}' && (k + 1 >= cs.size() || cs[k + 1] != '}'))) {
          k += cs[k] == '}' ? 2 : 1;
        }
        i = std::min(k + 1, cs.size());
      }
      while (i < cs.size() && cs[i] != ';') ++i;
    }
    const std::string_view attr = cs.substr(start, i - start);
    if (i < cs.size()) ++i;
    const std::size_t eq = attr.find('=');
    f(trim(attr.substr(0, eq)), eq == std::string_view::npos ? std::string_view{} : attr.substr(eq + 1));
  }
}

bool has_key(std::string_view cs, std::string_view key) {
  bool found = false;
  for_each_attribute(cs, [&](std::string_view k, std::string_view) { found = found || iequals(k, key); });
  return found;
}

bool icontains(std::string_view text, std::string_view what) {
  return std::search(text.begin(), text.end(), what.begin(), what.end(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         }) != text.end();
}

}  // namespace

bool is_mariadb_driver(std::string_view cs) {
  bool found = false;
  for_each_attribute(cs, [&](std::string_view k, std::string_view v) {
    if (iequals(k, "DRIVER") && (icontains(v, "maodbc") || icontains(v, "MariaDB"))) found = true;
  });
  return found;
}

namespace {

// The process's one environment handle. Created on first use and deliberately never freed:
// connections may be closed by static destructors after any "environment" destructor ran.
SQLHENV environment() {
  static std::once_flag once;
  static SQLHENV env = SQL_NULL_HENV;
  static std::string failure;
  std::call_once(once, [] {
    if (!ok(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &env))) {
      env = SQL_NULL_HENV;
      failure = "SQLAllocHandle(SQL_HANDLE_ENV) failed";
      return;
    }
    if (!ok(SQLSetEnvAttr(env, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3),
                          0))) {
      failure = "SQL_ATTR_ODBC_VERSION 3: " + odbc::read_diagnostics(SQL_HANDLE_ENV, env).message;
      SQLFreeHandle(SQL_HANDLE_ENV, env);
      env = SQL_NULL_HENV;
    }
  });
  if (env == SQL_NULL_HENV) {
    throw Error(ErrorCode::connect_failed, "odbc: cannot set up the ODBC environment: " + failure);
  }
  return env;
}

// Owns a connection handle until it is handed to an OdbcConnection.
struct DbcOwner {
  SQLHDBC dbc = SQL_NULL_HDBC;
  bool connected = false;
  DbcOwner() = default;
  DbcOwner(const DbcOwner&) = delete;
  DbcOwner& operator=(const DbcOwner&) = delete;
  ~DbcOwner() {
    if (dbc == SQL_NULL_HDBC) return;
    if (connected) SQLDisconnect(dbc);
    SQLFreeHandle(SQL_HANDLE_DBC, dbc);
  }
};

}  // namespace

OdbcConnectionString parse_odbc_connection_string(std::string_view cs) {
  OdbcConnectionString out;
  out.stmt_cache_size = OdbcConnection::kDefaultStatementCacheSize;
  std::size_t i = 0;
  while (i < cs.size()) {
    // One attribute: KEY=VALUE up to the next ';'. As in unixODBC (and Dsn::redacted()), a brace
    // opens only at the start of a value (after optional spaces); then the value runs to the
    // matching '}' ("}}" is a literal '}') and may hold ';'. A '{' anywhere else is literal.
    const std::size_t start = i;
    while (i < cs.size() && cs[i] != '=' && cs[i] != ';') ++i;
    if (i < cs.size() && cs[i] == '=') {
      ++i;
      std::size_t j = i;
      while (j < cs.size() && std::isspace(static_cast<unsigned char>(cs[j]))) ++j;
      if (j < cs.size() && cs[j] == '{') {
        std::size_t k = j + 1;
        for (; k < cs.size(); ++k) {
          if (cs[k] != '}') continue;
          if (k + 1 < cs.size() && cs[k + 1] == '}') {
            ++k;  // }} is a literal }
            continue;
          }
          break;
        }
        if (k >= cs.size()) {
          // Never quote the string: the rest of it, a password included, would be the "value".
          throw Error(ErrorCode::invalid_argument,
                      "odbc: unbalanced '{' in the connection string");
        }
        i = k + 1;
      }
      while (i < cs.size() && cs[i] != ';') ++i;
    }
    const std::string_view attr = cs.substr(start, i - start);
    if (i < cs.size()) ++i;  // the ';'
    const std::size_t eq = attr.find('=');
    const std::string_view key = trim(attr.substr(0, eq));
    const std::string_view value = eq == std::string_view::npos ? "" : attr.substr(eq + 1);
    if (iequals(key, kStmtCacheKey)) {
      const std::string text = unbrace(value);
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n > 10000) {
        throw Error(
            ErrorCode::invalid_argument,
            "odbc: ReservoirStmtCache must be a number from 0 to 10000, got \"" + text + "\"");
      }
      out.stmt_cache_size = n;
      continue;
    }
    if (iequals(key, "PWD") || iequals(key, "PASSWORD")) out.password = unbrace(value);
    if (trim(attr).empty()) continue;
    if (!out.connection_string.empty()) out.connection_string += ';';
    out.connection_string.append(attr);
  }
  return out;
}

std::unique_ptr<Connection> OdbcDriver::connect(const Dsn& dsn, std::chrono::milliseconds timeout) {
  const std::string where = dsn.redacted();
  const OdbcConnectionString cs = parse_odbc_connection_string(dsn.connection_string);
  if (cs.connection_string.empty()) {
    throw Error(ErrorCode::invalid_argument,
                "odbc: empty connection string in " + where +
                    " (use odbc:DSN=name;UID=...;PWD=... or odbc:DRIVER=...;...)");
  }
  const SQLHENV env = environment();

  DbcOwner owner;
  if (!ok(SQLAllocHandle(SQL_HANDLE_DBC, env, &owner.dbc))) {
    owner.dbc = SQL_NULL_HDBC;
    const auto d = odbc::read_diagnostics(SQL_HANDLE_ENV, env);
    throw Error(ErrorCode::connect_failed,
                "odbc: cannot allocate a connection handle for " + where + ": " + d.message,
                {.sqlstate = d.sqlstate, .native_code = d.native_code});
  }
  std::string connection_string = cs.connection_string;
  if (timeout.count() > 0) {
    // ODBC counts in whole seconds; round up so that a short timeout is not "no timeout" (0).
    const auto seconds = static_cast<SQLULEN>((timeout.count() + 999) / 1000);
    // A driver that does not support an attribute fails it (HYC00, HY092) or answers
    // SQL_SUCCESS_WITH_INFO 01S02 ("option value changed") and keeps its own value; neither fails
    // the connect, so the return codes only decide whether the timeout is known to be in force.
    const SQLRETURN login_rc = SQLSetConnectAttr(owner.dbc, SQL_ATTR_LOGIN_TIMEOUT,
                                                 reinterpret_cast<SQLPOINTER>(seconds), 0);
    const SQLRETURN conn_rc = SQLSetConnectAttr(owner.dbc, SQL_ATTR_CONNECTION_TIMEOUT,
                                                reinterpret_cast<SQLPOINTER>(seconds), 0);
    (void)conn_rc;  // best effort: few drivers implement it
    // MariaDB Connector/ODBC accepts SQL_ATTR_LOGIN_TIMEOUT but does not use it; its own
    // CONN_TIMEOUT key does bound the connect. Added unless the string sets it already.
    // Other drivers answering anything but SQL_SUCCESS (an error, or 01S02) keep their own login
    // timeout; there is no portable way to do better (see docs/odbc.md).
    if (is_mariadb_driver(connection_string) && !has_key(connection_string, "CONN_TIMEOUT")) {
      connection_string += ";CONN_TIMEOUT=" + std::to_string(std::max<SQLULEN>(seconds, 1));
    }
    (void)login_rc;
  }

  std::vector<SQLCHAR> in(connection_string.begin(), connection_string.end());
  in.push_back(0);
  const SQLRETURN rc =
      SQLDriverConnect(owner.dbc, nullptr, in.data(), static_cast<SQLSMALLINT>(in.size() - 1),
                       nullptr, 0, nullptr, SQL_DRIVER_NOPROMPT);
  // The copies held the password; do not leave it in freed memory.
  std::fill(in.begin(), in.end(), SQLCHAR{0});
  std::fill(connection_string.begin(), connection_string.end(), '\0');
  if (!ok(rc)) {
    auto d = odbc::read_diagnostics(SQL_HANDLE_DBC, owner.dbc);
    odbc::refine_connect_diagnostics(d);
    const ErrorCode code = odbc::map_sqlstate(d.sqlstate, odbc::Phase::connect);
    std::string message = "odbc: cannot connect to " + where + ": " +
                          odbc::scrub(d.message, cs.password) + " (SQLSTATE " +
                          (d.sqlstate.empty() ? std::string("none") : d.sqlstate) + ")";
    if (code == ErrorCode::auth_failed) message += " [the credentials were rejected]";
    throw Error(code, message, {.sqlstate = d.sqlstate, .native_code = d.native_code});
  }
  owner.connected = true;
  auto conn = std::make_unique<OdbcConnection>(owner.dbc, cs.stmt_cache_size, where, cs.password);
  owner.connected = false;
  owner.dbc = SQL_NULL_HDBC;  // the connection owns it now
  return conn;
}

std::shared_ptr<Driver> odbc_driver() {
  static const std::shared_ptr<Driver> driver = std::make_shared<OdbcDriver>();
  return driver;
}

namespace {
// Runs before main() in every program this object file is linked into (see
// cmake/ReservoirDriver.cmake), so find_driver("odbc") needs no set-up call.
[[maybe_unused]] const bool kRegistered = [] {
#ifdef RESERVOIR_HAVE_DRIVER_COMMON
  // ODBC drivers loaded later (psqlODBC through libpq, MariaDB's) use OpenSSL too.
  keep_openssl_until_exit();  // see drivers/common/openssl_exit.hpp
#endif
  register_driver(odbc_driver());
  return true;
}();
}  // namespace

}  // namespace reservoir::drivers
