// postgresql_driver.cpp: turns a Dsn into libpq connection keywords, connects with a deadline,
// maps connect failures to error codes, and registers the driver for "postgresql" before main().
#include "drivers/postgresql/postgresql_driver.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "drivers/postgresql/postgresql_connection.hpp"
#include "drivers/postgresql/postgresql_io.hpp"
#include "reservoir/error.hpp"
#include "reservoir/nonblocking.hpp"

#ifdef RESERVOIR_HAVE_DRIVER_COMMON
#include "drivers/common/openssl_exit.hpp"
#endif

namespace reservoir::drivers {
namespace {

constexpr std::string_view kCacheSizeParam = "stmt_cache_size";
constexpr std::size_t kMaxStatementCacheSize = 100'000;

// libpq's minimum: it treats connect_timeout values of 1 as 2.
constexpr long kMinLibpqTimeoutSeconds = 2;

// Keywords libpq understands (from PQconndefaults), so that a misspelt parameter is reported
// by name instead of as libpq's "invalid connection option".
const std::set<std::string, std::less<>>& libpq_keywords() {
  static const std::set<std::string, std::less<>> keywords = [] {
    std::set<std::string, std::less<>> out;
    PQconninfoOption* options = PQconndefaults();
    if (options != nullptr) {
      for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        out.emplace(o->keyword);
      }
      PQconninfoFree(options);
    }
    return out;
  }();
  return keywords;
}

[[noreturn]] void bad_param(const Dsn& dsn, const std::string& what) {
  throw Error(ErrorCode::invalid_argument, "postgresql: " + what + " in " + dsn.redacted());
}

std::size_t parse_cache_size(const Dsn& dsn) {
  const auto it = dsn.params.find(std::string(kCacheSizeParam));
  if (it == dsn.params.end()) return PostgresDriver::kDefaultStatementCacheSize;
  const std::string& text = it->second;
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      n > kMaxStatementCacheSize) {
    bad_param(dsn, "stmt_cache_size must be a number from 0 to " +
                       std::to_string(kMaxStatementCacheSize) + ", got \"" + text + "\"");
  }
  return n;
}

// Splits "h1:5432,[::1]:5433,h3" into libpq's host list "h1,::1,h3" and port list
// "5432,5433," (an empty item is the default port). any_port is false when no item had one.
void split_hosts(const Dsn& dsn, std::string& hosts, std::string& ports, bool& any_port) {
  std::string_view rest = dsn.host;
  any_port = false;
  bool first = true;
  while (true) {
    const std::size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    std::string_view host = item;
    std::string_view port;
    if (!item.empty() && item.front() == '[') {
      const std::size_t close = item.find(']');
      if (close == std::string_view::npos) bad_param(dsn, "a host has '[' without ']'");
      host = item.substr(1, close - 1);
      if (close + 1 < item.size()) {
        if (item[close + 1] != ':') bad_param(dsn, "unexpected text after ']' in a host");
        port = item.substr(close + 2);
      }
    } else if (const std::size_t colon = item.find(':');
               colon != std::string_view::npos &&
               item.find(':', colon + 1) == std::string_view::npos) {
      host = item.substr(0, colon);
      port = item.substr(colon + 1);
    }
    if (!first) {
      hosts += ',';
      ports += ',';
    }
    first = false;
    hosts.append(host);
    ports.append(port);
    if (!port.empty()) any_port = true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
}

struct ConnectPlan {
  std::map<std::string, std::string> keywords;
  std::size_t stmt_cache_size = 0;
  std::chrono::milliseconds timeout{0};
};

ConnectPlan make_plan(const Dsn& dsn, std::chrono::milliseconds timeout) {
  ConnectPlan plan;
  plan.stmt_cache_size = parse_cache_size(dsn);
  auto& kw = plan.keywords;

  if (dsn.host.find(',') != std::string::npos) {
    std::string hosts, ports;
    bool any_port = false;
    split_hosts(dsn, hosts, ports, any_port);
    kw["host"] = std::move(hosts);
    if (any_port) kw["port"] = std::move(ports);
  } else {
    if (!dsn.host.empty()) kw["host"] = dsn.host;
    if (dsn.port != 0) kw["port"] = std::to_string(dsn.port);
  }
  if (!dsn.database.empty()) kw["dbname"] = dsn.database;
  if (!dsn.user.empty()) kw["user"] = dsn.user;
  if (!dsn.password.empty()) kw["password"] = dsn.password;

  const auto& known = libpq_keywords();
  for (const auto& [key, value] : dsn.params) {
    if (key == kCacheSizeParam) continue;
    if (!known.empty() && known.find(key) == known.end()) {
      bad_param(dsn, "unknown parameter \"" + key + "\" (neither a libpq connection keyword nor " +
                         std::string(kCacheSizeParam) + ")");
    }
    kw[key] = value;  // a parameter wins over the URL part of the same name
  }

  // Defaults for what the DSN leaves out. Values are text as a person writes them; UTF8
  // because Value text is UTF-8. Keepalives and TCP_USER_TIMEOUT find a peer that vanished
  // (a pulled cable, a failed-over VM) in well under a minute instead of the kernel's hours.
  const std::pair<const char*, const char*> defaults[] = {
      {"client_encoding", "UTF8"},   {"fallback_application_name", "reservoir"},
      {"keepalives", "1"},           {"keepalives_idle", "30"},
      {"keepalives_interval", "10"}, {"keepalives_count", "3"},
      {"tcp_user_timeout", "10000"},
  };
  for (const auto& [key, value] : defaults) {
    if (known.empty() || known.count(key) != 0) kw.emplace(key, value);  // keeps what is set
  }

  // The deadline: the caller's, the DSN's connect_timeout (seconds), or the default; with
  // both, the shorter.
  plan.timeout = timeout.count() > 0 ? timeout : PostgresDriver::kDefaultConnectTimeout;
  if (const auto it = kw.find("connect_timeout"); it != kw.end()) {
    long seconds = 0;
    const std::string& text = it->second;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
      bad_param(dsn, "connect_timeout must be a whole number of seconds, got \"" + text + "\"");
    }
    if (seconds > 0) {
      const std::chrono::milliseconds dsn_limit(std::max(seconds, kMinLibpqTimeoutSeconds) * 1000);
      if (timeout.count() <= 0 || dsn_limit < plan.timeout) plan.timeout = dsn_limit;
    }
  } else {
    // Not what bounds this connect (the deadline below does), but libpq's own per-host limit
    // for anything it runs synchronously.
    const auto seconds = std::max<long>(kMinLibpqTimeoutSeconds,
                                        static_cast<long>((plan.timeout.count() + 999) / 1000));
    kw["connect_timeout"] = std::to_string(seconds);
  }
  return plan;
}

struct ConnDeleter {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;

bool contains(std::string_view text, std::string_view what) noexcept {
  return text.find(what) != std::string_view::npos;
}

// libpq reports connect failures as text only, so the SQLSTATE is read back from the server's
// (English) message. Servers with a translated lc_messages yield connect_failed without one.
[[noreturn]] void connect_failed(const Dsn& dsn, PGconn* conn, const std::string& extra = {}) {
  const std::string reason = conn != nullptr ? pg::one_line(PQerrorMessage(conn)) : std::string();
  ErrorCode code = ErrorCode::connect_failed;
  std::string sqlstate;
  if (contains(reason, "password authentication failed")) {
    code = ErrorCode::auth_failed;
    sqlstate = "28P01";
  } else if (contains(reason, "no password supplied") || contains(reason, "password is required")) {
    code = ErrorCode::auth_failed;
    sqlstate = "28P01";
  } else if (contains(reason, "no pg_hba.conf entry") ||
             contains(reason, "pg_hba.conf rejects connection") ||
             contains(reason, "is not permitted to log in") ||
             contains(reason, "authentication failed for user") ||
             (contains(reason, "role \"") && contains(reason, "\" does not exist"))) {
    code = ErrorCode::auth_failed;
    sqlstate = "28000";
  } else if (contains(reason, "database \"") && contains(reason, "\" does not exist")) {
    sqlstate = "3D000";
  } else if (contains(reason, "too many connections") ||
             contains(reason, "remaining connection slots are reserved")) {
    sqlstate = "53300";
  } else if (contains(reason, "the database system is starting up") ||
             contains(reason, "the database system is shutting down") ||
             contains(reason, "the database system is in recovery mode") ||
             contains(reason, "the database system is not yet accepting connections")) {
    sqlstate = "57P03";
  } else if (contains(reason, "permission denied for database")) {
    sqlstate = "42501";
  }
  std::string message = "postgresql: cannot connect to " + dsn.redacted() + ": ";
  message += extra.empty() ? std::string() : extra;
  if (!extra.empty() && !reason.empty()) message += "; ";
  message += reason.empty() && extra.empty() ? "no message from libpq" : reason;
  if (!sqlstate.empty()) message += " (SQLSTATE " + sqlstate + ")";
  throw Error(code, message, {.sqlstate = std::move(sqlstate)});
}

// Opening a session with PQconnectStartParams / PQconnectPoll, one poll per resume(). The
// blocking connect() drives the same operation with poll(2), so both paths share every step:
// the keywords, the deadline, the error mapping and what happens once connected.
class PostgresConnectOp final : public ConnectOp {
 public:
  PostgresConnectOp(const Dsn& dsn, std::chrono::milliseconds timeout)
      : dsn_(dsn), requested_timeout_(timeout) {}

  IoWait resume(bool timed_out) override {
    if (!conn_) {
      start();
    } else if (timed_out && std::chrono::steady_clock::now() >= deadline_) {
      timeout_failed();
    } else if (!timed_out) {
      status_ = PQconnectPoll(conn_.get());
    }
    // else: woken before the deadline without the socket ready: wait again, do not poll.
    if (status_ == PGRES_POLLING_OK) {
      done_ = true;
      return IoWait{};
    }
    if (status_ == PGRES_POLLING_FAILED) connect_failed(dsn_, conn_.get());
    // The socket may change between polls (the next host of a multi-host DSN, a retry
    // without SSL), so it is asked for every time.
    const int fd = PQsocket(conn_.get());
    if (fd < 0) connect_failed(dsn_, conn_.get());
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
    if (left.count() <= 0) timeout_failed();
    return IoWait{status_ == PGRES_POLLING_WRITING ? IoWait::Kind::write : IoWait::Kind::read, fd,
                  left};
  }

  // The handle is closed with the operation (PQfinish never blocks on a connect in progress:
  // libpq sends nothing before the session is up).
  void abandon() noexcept override {}

  std::unique_ptr<Connection> take() override {
    if (!done_ || !conn_) {
      throw Error(ErrorCode::internal, "postgresql: take() before the connect is done, or twice");
    }
    return std::make_unique<PostgresConnection>(conn_.release(), plan_.stmt_cache_size,
                                                dsn_.redacted());
  }

  std::chrono::milliseconds timeout() const noexcept { return plan_.timeout; }

 private:
  void start() {
    plan_ = make_plan(dsn_, requested_timeout_);
    std::vector<const char*> keys;
    std::vector<const char*> values;
    keys.reserve(plan_.keywords.size() + 1);
    values.reserve(plan_.keywords.size() + 1);
    for (const auto& [key, value] : plan_.keywords) {
      keys.push_back(key.c_str());
      values.push_back(value.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);

    deadline_ = std::chrono::steady_clock::now() + plan_.timeout;
    // expand_dbname 0: a database name is only a name, never a connection string in disguise.
    conn_.reset(PQconnectStartParams(keys.data(), values.data(), 0));
    if (!conn_) {
      throw Error(ErrorCode::connect_failed,
                  "postgresql: cannot connect to " + dsn_.redacted() + ": libpq is out of memory");
    }
    if (PQstatus(conn_.get()) == CONNECTION_BAD) connect_failed(dsn_, conn_.get());
    // Notices can come during start-up already; libpq would print them to stderr.
    PQsetNoticeProcessor(
        conn_.get(), [](void*, const char*) {}, nullptr);
    // PQconnectPoll's protocol: wait for what it last asked for, then call it again. Before
    // the first call, behave as if it had asked to write.
    status_ = PGRES_POLLING_WRITING;
  }

  [[noreturn]] void timeout_failed() {
    connect_failed(
        dsn_, conn_.get(),
        "no answer within " + std::to_string(plan_.timeout.count()) + " ms (connect timeout)");
  }

  const Dsn dsn_;
  const std::chrono::milliseconds requested_timeout_;
  ConnectPlan plan_;
  ConnPtr conn_;
  std::chrono::steady_clock::time_point deadline_{};
  PostgresPollingStatusType status_ = PGRES_POLLING_WRITING;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Connection> PostgresDriver::connect(const Dsn& dsn,
                                                    std::chrono::milliseconds timeout) {
  PostgresConnectOp op(dsn, timeout);
  for (IoWait w = op.resume(false); w.kind != IoWait::Kind::done;) {
    const bool ready = pg::wait_socket(w.fd, w.kind == IoWait::Kind::write,
                                       std::chrono::steady_clock::now() + w.timeout);
    w = op.resume(!ready);
  }
  return op.take();
}

std::unique_ptr<ConnectOp> PostgresDriver::start_connect(const Dsn& dsn,
                                                         std::chrono::milliseconds timeout) {
  return std::make_unique<PostgresConnectOp>(dsn, timeout);
}

std::shared_ptr<Driver> postgresql_driver() {
  static const std::shared_ptr<Driver> driver = std::make_shared<PostgresDriver>();
  return driver;
}

namespace {
// Runs before main() in every program this object file is linked into (reservoir_add_driver
// links the library as a whole archive), so find_driver("postgresql") needs no set-up call.
[[maybe_unused]] const bool kRegistered = [] {
#ifdef RESERVOIR_HAVE_DRIVER_COMMON
  keep_openssl_until_exit();  // before the first connect: see drivers/common/openssl_exit.hpp
#endif
  register_driver(postgresql_driver());
  return true;
}();
}  // namespace

}  // namespace reservoir::drivers
