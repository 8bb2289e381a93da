// mariadb_driver.cpp: turns a Dsn into Connector/C options, connects with a time limit, maps
// connect failures to error codes, and registers the driver for "mariadb" before main().
#include "drivers/mariadb/mariadb_driver.hpp"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <charconv>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "drivers/mariadb/mariadb_connection.hpp"
#include "reservoir/error.hpp"

#ifdef RESERVOIR_HAVE_DRIVER_COMMON
#include "drivers/common/openssl_exit.hpp"
#endif

namespace reservoir::drivers {
namespace {

constexpr std::size_t kMaxStatementCacheSize = 100'000;
constexpr unsigned kMaxSeconds = 24 * 3600;

const std::set<std::string, std::less<>>& known_params() {
  static const std::set<std::string, std::less<>> names = {
      "charset",     "connect_timeout", "read_timeout", "write_timeout",
      "unix_socket", "ssl_mode",        "ssl_ca",       "ssl_capath",
      "ssl_cert",    "ssl_key",         "ssl_cipher",   "stmt_cache_size",
  };
  return names;
}

[[noreturn]] void bad_param(const Dsn& dsn, const std::string& what) {
  throw Error(ErrorCode::invalid_argument, "mariadb: " + what + " in " + dsn.redacted());
}

// A whole number from 0 to max, or invalid_argument naming the parameter.
unsigned long number_param(const Dsn& dsn, const std::string& key, unsigned long max) {
  const std::string text = dsn.param(key);
  unsigned long n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n > max) {
    bad_param(dsn, key + " must be a whole number from 0 to " + std::to_string(max) + ", got \"" +
                       text + "\"");
  }
  return n;
}

struct MysqlDeleter {
  void operator()(MYSQL* m) const noexcept { mysql_close(m); }
};
using MysqlPtr = std::unique_ptr<MYSQL, MysqlDeleter>;

void set_option(const Dsn& dsn, MYSQL* m, mysql_option option, const void* value,
                const char* name) {
  if (mysql_optionsv(m, option, value) != 0) {
    bad_param(dsn, std::string("Connector/C refused the option ") + name);
  }
}

// Whether ssl_mode asks for TLS (required, verify_ca, verify_identity). apply_ssl has already
// rejected any other value.
bool tls_required(const Dsn& dsn) {
  const auto it = dsn.params.find("ssl_mode");
  if (it == dsn.params.end()) return false;
  const std::string& mode = it->second;
  return mode == "required" || mode == "REQUIRED" || mode == "verify_ca" ||
         mode == "VERIFY_CA" || mode == "verify_identity" || mode == "VERIFY_IDENTITY";
}

void apply_ssl(const Dsn& dsn, MYSQL* m) {
  const auto it = dsn.params.find("ssl_mode");
  if (it != dsn.params.end()) {
    const std::string& mode = it->second;
    my_bool enforce = 0;
    my_bool verify = 0;
    if (mode == "disabled" || mode == "DISABLED") {
      // Connector/C 3.x only uses TLS when asked to (or when the server requires it).
      const my_bool off = 0;
      set_option(dsn, m, MYSQL_OPT_SSL_ENFORCE, &off, "ssl_mode");
    } else if (mode == "preferred" || mode == "PREFERRED") {
      // Connector/C's default behaviour: TLS if the server offers it is not guaranteed, so
      // nothing is forced.
    } else if (mode == "required" || mode == "REQUIRED") {
      enforce = 1;
    } else if (mode == "verify_ca" || mode == "VERIFY_CA" || mode == "verify_identity" ||
               mode == "VERIFY_IDENTITY") {
      enforce = 1;
      verify = 1;
    } else {
      bad_param(dsn,
                "ssl_mode must be disabled, preferred, required, verify_ca or verify_identity, "
                "got \"" +
                    mode + "\"");
    }
    if (enforce != 0) set_option(dsn, m, MYSQL_OPT_SSL_ENFORCE, &enforce, "ssl_mode");
    set_option(dsn, m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify, "ssl_mode");
  }
  const std::pair<const char*, mysql_option> files[] = {
      {"ssl_ca", MYSQL_OPT_SSL_CA},         {"ssl_capath", MYSQL_OPT_SSL_CAPATH},
      {"ssl_cert", MYSQL_OPT_SSL_CERT},     {"ssl_key", MYSQL_OPT_SSL_KEY},
      {"ssl_cipher", MYSQL_OPT_SSL_CIPHER},
  };
  for (const auto& [key, option] : files) {
    const auto f = dsn.params.find(key);
    if (f != dsn.params.end()) set_option(dsn, m, option, f->second.c_str(), key);
  }
}

// Maps a failed mysql_real_connect to an Error. The server's message names the user and host,
// never the password.
[[noreturn]] void connect_failed(const Dsn& dsn, MYSQL* m, unsigned timeout_seconds) {
  const unsigned code = mysql_errno(m);
  std::string sqlstate = mysql_sqlstate(m);
  if (sqlstate == "00000" || sqlstate == "HY000") sqlstate.clear();
  std::string reason = mysql_error(m);
  ErrorCode error = ErrorCode::connect_failed;
  switch (code) {
    case ER_ACCESS_DENIED_ERROR:              // 1045, 28000: wrong user or password
    case ER_ACCESS_DENIED_NO_PASSWORD_ERROR:  // 1698, 28000: password required / socket auth
      error = ErrorCode::auth_failed;
      sqlstate = "28000";
      break;
    case ER_DBACCESS_DENIED_ERROR:  // 1044, 42000: the user may not use this database
      error = ErrorCode::auth_failed;
      break;
    case ER_BAD_DB_ERROR:  // 1049, 42000: unknown database. Normalised to PostgreSQL's
      // invalid_catalog_name, which Error::retryable() treats as permanent.
      sqlstate = "3D000";
      break;
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
      if (timeout_seconds > 0) {
        reason +=
            " (no answer within the connect timeout of " + std::to_string(timeout_seconds) + " s)";
      }
      break;
    default:
      break;
  }
  std::string message = "mariadb: cannot connect to " + dsn.redacted() + ": " +
                        (reason.empty() ? std::string("no message from Connector/C") : reason);
  message += " (error " + std::to_string(code);
  if (!sqlstate.empty()) message += ", SQLSTATE " + sqlstate;
  message += ")";
  throw Error(error, message, {.sqlstate = std::move(sqlstate), .native_code = code});
}

}  // namespace

std::unique_ptr<Connection> MariaDbDriver::connect(const Dsn& dsn,
                                                   std::chrono::milliseconds timeout) {
  for (const auto& [key, value] : dsn.params) {
    if (known_params().count(key) == 0) {
      bad_param(dsn, "unknown parameter \"" + key + "\" (see docs/mariadb.md)");
    }
  }
  const std::size_t cache_size = dsn.params.count("stmt_cache_size") != 0
                                     ? number_param(dsn, "stmt_cache_size", kMaxStatementCacheSize)
                                     : kDefaultStatementCacheSize;

  // Whole seconds, rounded up: Connector/C counts no finer.
  std::chrono::milliseconds limit = timeout.count() > 0 ? timeout : kDefaultConnectTimeout;
  if (dsn.params.count("connect_timeout") != 0) {
    const auto seconds = number_param(dsn, "connect_timeout", kMaxSeconds);
    const std::chrono::milliseconds dsn_limit(seconds * 1000);
    if (seconds > 0 && (timeout.count() <= 0 || dsn_limit < limit)) limit = dsn_limit;
  }
  const unsigned connect_seconds = static_cast<unsigned>((limit.count() + 999) / 1000);

  // mysql_init calls mysql_library_init, which is not thread-safe; run it once first.
  static std::once_flag library_once;
  std::call_once(library_once, [] { mysql_library_init(0, nullptr, nullptr); });

  MysqlPtr m(mysql_init(nullptr));
  if (!m) {
    throw Error(ErrorCode::connect_failed,
                "mariadb: cannot connect to " + dsn.redacted() + ": Connector/C is out of memory");
  }
  MYSQL* const h = m.get();
  set_option(dsn, h, MYSQL_OPT_CONNECT_TIMEOUT, &connect_seconds, "connect_timeout");
  // Connector/C bounds the wait for the server's greeting by the connect timeout too. A read
  // timeout would also cut off every long query later, so it is only set when asked for.
  if (dsn.params.count("read_timeout") != 0) {
    const auto read_seconds = static_cast<unsigned>(number_param(dsn, "read_timeout", kMaxSeconds));
    set_option(dsn, h, MYSQL_OPT_READ_TIMEOUT, &read_seconds, "read_timeout");
  }
  if (dsn.params.count("write_timeout") != 0) {
    const auto write_seconds =
        static_cast<unsigned>(number_param(dsn, "write_timeout", kMaxSeconds));
    set_option(dsn, h, MYSQL_OPT_WRITE_TIMEOUT, &write_seconds, "write_timeout");
  }
  const my_bool no_reconnect = 0;  // a silent reconnect would lose session state unnoticed
  set_option(dsn, h, MYSQL_OPT_RECONNECT, &no_reconnect, "reconnect");
  const std::string charset = dsn.param("charset", "utf8mb4");
  set_option(dsn, h, MYSQL_SET_CHARSET_NAME, charset.c_str(), "charset");
  // The non-blocking API (ping's deadline) needs its context set up before connecting; the
  // blocking calls work on such a handle as usual.
  set_option(dsn, h, MYSQL_OPT_NONBLOCK, nullptr, "nonblock");
  apply_ssl(dsn, h);

  const std::string socket = dsn.param("unix_socket");
  const std::string host = dsn.host.empty() && socket.empty() ? "127.0.0.1" : dsn.host;
  if (!socket.empty()) {
    const unsigned protocol = MYSQL_PROTOCOL_SOCKET;
    set_option(dsn, h, MYSQL_OPT_PROTOCOL, &protocol, "unix_socket");
  }
  if (mysql_real_connect(h, host.empty() ? nullptr : host.c_str(),
                         dsn.user.empty() ? nullptr : dsn.user.c_str(),
                         dsn.password.empty() ? nullptr : dsn.password.c_str(),
                         dsn.database.empty() ? nullptr : dsn.database.c_str(), dsn.port,
                         socket.empty() ? nullptr : socket.c_str(), 0) == nullptr) {
    connect_failed(dsn, h, connect_seconds);
  }
  // MYSQL_OPT_SSL_ENFORCE alone does not stop Connector/C 3.3 from going on in plaintext when
  // the server offers no TLS: check what was actually negotiated.
  if (tls_required(dsn) && mysql_get_ssl_cipher(h) == nullptr) {
    throw Error(ErrorCode::connect_failed,
                "mariadb: cannot connect to " + dsn.redacted() +
                    ": TLS was required (ssl_mode=" + dsn.params.at("ssl_mode") +
                    ") but the server did not negotiate it");
  }  // m closes the handle
  return std::make_unique<MariaDbConnection>(m.release(), cache_size, dsn.redacted());
}

std::shared_ptr<Driver> mariadb_driver() {
  static const std::shared_ptr<Driver> driver = std::make_shared<MariaDbDriver>();
  return driver;
}

namespace {
// Runs before main() in every program this object file is linked into (reservoir_add_driver
// links the library as a whole archive), so find_driver("mariadb") needs no set-up call.
[[maybe_unused]] const bool kRegistered = [] {
#ifdef RESERVOIR_HAVE_DRIVER_COMMON
  keep_openssl_until_exit();  // before the first connect: see drivers/common/openssl_exit.hpp
#endif
  register_driver(mariadb_driver());
  return true;
}();
}  // namespace

}  // namespace reservoir::drivers
