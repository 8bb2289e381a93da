// mariadb_driver.cpp: turns a Dsn into Connector/C options, connects with a time limit, maps
// connect failures to error codes (blocking and non-blocking), and registers the driver for
// "mariadb" before main().
#include "drivers/mariadb/mariadb_driver.hpp"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "drivers/mariadb/mariadb_common.hpp"
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
  return mode == "required" || mode == "REQUIRED" || mode == "verify_ca" || mode == "VERIFY_CA" ||
         mode == "verify_identity" || mode == "VERIFY_IDENTITY";
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

// A handle with every option set from the DSN, ready for mysql_real_connect(_start), and what
// the connect needs besides. Shared by connect() and start_connect().
struct ConnectPlan {
  MysqlPtr handle;
  std::size_t cache_size = 0;
  std::chrono::milliseconds limit{0};  // the connect timeout, exact
  unsigned connect_seconds = 0;        // limit rounded up to whole seconds (Connector/C's unit)
  std::string host;
  std::string socket;
};

ConnectPlan plan_connect(const Dsn& dsn, std::chrono::milliseconds timeout) {
  for (const auto& [key, value] : dsn.params) {
    if (known_params().count(key) == 0) {
      bad_param(dsn, "unknown parameter \"" + key + "\" (see docs/mariadb.md)");
    }
  }
  ConnectPlan plan;
  plan.cache_size = dsn.params.count("stmt_cache_size") != 0
                        ? number_param(dsn, "stmt_cache_size", kMaxStatementCacheSize)
                        : MariaDbDriver::kDefaultStatementCacheSize;

  plan.limit = timeout.count() > 0 ? timeout : MariaDbDriver::kDefaultConnectTimeout;
  if (dsn.params.count("connect_timeout") != 0) {
    const auto seconds = number_param(dsn, "connect_timeout", kMaxSeconds);
    const std::chrono::milliseconds dsn_limit(seconds * 1000);
    if (seconds > 0 && (timeout.count() <= 0 || dsn_limit < plan.limit)) plan.limit = dsn_limit;
  }
  // Whole seconds, rounded up: Connector/C counts no finer.
  plan.connect_seconds = static_cast<unsigned>((plan.limit.count() + 999) / 1000);
  const unsigned connect_seconds = plan.connect_seconds;

  // mysql_init calls mysql_library_init, which is not thread-safe; run it once first.
  static std::once_flag library_once;
  std::call_once(library_once, [] { mysql_library_init(0, nullptr, nullptr); });

  plan.handle.reset(mysql_init(nullptr));
  if (!plan.handle) {
    throw Error(ErrorCode::connect_failed,
                "mariadb: cannot connect to " + dsn.redacted() + ": Connector/C is out of memory");
  }
  MYSQL* const h = plan.handle.get();
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
  // The non-blocking API (ping's deadline, start_connect, start_statement) needs its context
  // set up before connecting; the blocking calls work on such a handle as usual.
  set_option(dsn, h, MYSQL_OPT_NONBLOCK, nullptr, "nonblock");
  apply_ssl(dsn, h);

  plan.socket = dsn.param("unix_socket");
  plan.host = dsn.host.empty() && plan.socket.empty() ? "127.0.0.1" : dsn.host;
  if (!plan.socket.empty()) {
    const unsigned protocol = MYSQL_PROTOCOL_SOCKET;
    set_option(dsn, h, MYSQL_OPT_PROTOCOL, &protocol, "unix_socket");
  }
  return plan;
}

const char* or_null(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

// After a successful connect: the checks and the connection object, as connect() returns it.
std::unique_ptr<Connection> finish_connect(const Dsn& dsn, ConnectPlan& plan) {
  MYSQL* const h = plan.handle.get();
  // MYSQL_OPT_SSL_ENFORCE alone does not stop Connector/C 3.3 from going on in plaintext when
  // the server offers no TLS: check what was actually negotiated.
  if (tls_required(dsn) && mysql_get_ssl_cipher(h) == nullptr) {
    throw Error(ErrorCode::connect_failed,
                "mariadb: cannot connect to " + dsn.redacted() + ": TLS was required (ssl_mode=" +
                    dsn.params.at("ssl_mode") + ") but the server did not negotiate it");
  }  // plan.handle closes the handle
  return std::make_unique<MariaDbConnection>(plan.handle.release(), plan.cache_size,
                                             dsn.redacted());
}

// mysql_real_connect_start / _cont. Besides Connector/C's own timeouts (connect_seconds, whole
// seconds) the op keeps the exact limit as its deadline.
class MariaDbConnectOp final : public ConnectOp {
 public:
  MariaDbConnectOp(const Dsn& dsn, std::chrono::milliseconds timeout)
      : dsn_(dsn), plan_(plan_connect(dsn, timeout)) {}
  ~MariaDbConnectOp() override { abandon(); }

  IoWait resume(bool timed_out) override {
    if (over_) return {};
    MYSQL* const h = plan_.handle.get();
    try {
      if (!started_) {
        started_ = true;
        deadline_ = std::chrono::steady_clock::now() + plan_.limit;
        wait_.set(h, mysql_real_connect_start(&ret_, h, or_null(plan_.host), or_null(dsn_.user),
                                              or_null(dsn_.password), or_null(dsn_.database),
                                              dsn_.port, or_null(plan_.socket), 0));
      } else {
        const int ready = wait_.ready(timed_out);
        if (ready >= 0) wait_.set(h, mysql_real_connect_cont(&ret_, h, ready));
      }
      if (wait_.pending()) {
        if (std::chrono::steady_clock::now() >= deadline_) timed_out_exchange();
        return wait();
      }
      over_ = true;
      if (ret_ == nullptr) connect_failed(dsn_, h, plan_.connect_seconds);
      connection_ = finish_connect(dsn_, plan_);
      return {};
    } catch (...) {
      over_ = true;
      wait_.take();
      throw;
    }
  }

  void abandon() noexcept override {
    if (over_) return;
    over_ = true;
    if (!plan_.handle) return;
    mariadb::abort_exchange(plan_.handle.get(), wait_.take(), [this](int ready) {
      return mysql_real_connect_cont(&ret_, plan_.handle.get(), ready);
    });
    plan_.handle.reset();
  }

  std::unique_ptr<Connection> take() override { return std::move(connection_); }

 private:
  // What Connector/C waits for, its timeout capped by what is left of the deadline.
  IoWait wait() const {
    IoWait w = wait_.io_wait(plan_.handle.get());
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
    if (w.timeout.count() == 0 || left < w.timeout) {
      w.timeout = std::max(left, std::chrono::milliseconds(1));
    }
    return w;
  }

  // Our deadline passed with Connector/C still waiting: ends the exchange and fails as a
  // blocking connect that ran out of time does.
  [[noreturn]] void timed_out_exchange() {
    mariadb::abort_exchange(plan_.handle.get(), wait_.take(), [this](int ready) {
      return mysql_real_connect_cont(&ret_, plan_.handle.get(), ready);
    });
    throw Error(ErrorCode::connect_failed,
                "mariadb: cannot connect to " + dsn_.redacted() +
                    ": no answer within the connect timeout of " +
                    std::to_string(plan_.limit.count()) + " ms",
                {.native_code = CR_SERVER_LOST});
  }

  const Dsn dsn_;
  ConnectPlan plan_;
  std::chrono::steady_clock::time_point deadline_{};
  bool started_ = false;
  bool over_ = false;
  mariadb::PendingWait wait_;  // what the suspended connect waits for
  MYSQL* ret_ = nullptr;
  std::unique_ptr<Connection> connection_;
};

}  // namespace

std::unique_ptr<Connection> MariaDbDriver::connect(const Dsn& dsn,
                                                   std::chrono::milliseconds timeout) {
  ConnectPlan plan = plan_connect(dsn, timeout);
  MYSQL* const h = plan.handle.get();
  if (mysql_real_connect(h, or_null(plan.host), or_null(dsn.user), or_null(dsn.password),
                         or_null(dsn.database), dsn.port, or_null(plan.socket), 0) == nullptr) {
    connect_failed(dsn, h, plan.connect_seconds);
  }
  return finish_connect(dsn, plan);
}

std::unique_ptr<ConnectOp> MariaDbDriver::start_connect(const Dsn& dsn,
                                                        std::chrono::milliseconds timeout) {
  return std::make_unique<MariaDbConnectOp>(dsn, timeout);
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
