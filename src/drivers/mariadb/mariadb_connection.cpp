// mariadb_connection.cpp: prepared statements with bound parameters, typed results, transactions,
// ping with a deadline, session reset and an LRU cache of prepared statements on one MYSQL handle.
#include "drivers/mariadb/mariadb_connection.hpp"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "drivers/mariadb/mariadb_common.hpp"
#include "drivers/mariadb/mariadb_statement_op.hpp"
#include "reservoir/error.hpp"

namespace reservoir::drivers {
namespace {

using mariadb::affected_count;
using mariadb::shorten_sql;

// Reads and discards every result after the current one: a CALL ends with a status result after
// the procedure's result sets. False when that failed (the error is on the statement).
bool drain_results(MYSQL_STMT* stmt) noexcept {
  while (mysql_stmt_more_results(stmt)) {
    mysql_stmt_free_result(stmt);
    if (mysql_stmt_next_result(stmt) > 0) return false;
  }
  return true;
}

// The same for the text protocol.
bool drain_results(MYSQL* mysql) noexcept {
  while (mysql_more_results(mysql)) {
    if (mysql_next_result(mysql) > 0) return false;
    mysql_free_result(mysql_store_result(mysql));  // NULL-safe
  }
  return true;
}

// Frees a statement's pending results (all of them: a CALL has several), and closes it unless it
// belongs to the cache. When the remaining results cannot be read the connection is out of step
// with the server for good: broken is set so that the pool drops it.
class StatementGuard {
 public:
  StatementGuard(MYSQL_STMT* stmt, bool owned, const bool& released, bool& broken) noexcept
      : stmt_(stmt), owned_(owned), released_(released), broken_(broken) {}
  ~StatementGuard() {
    if (released_) return;
    if (!drain_results(stmt_)) broken_ = true;
    if (owned_) {
      mysql_stmt_close(stmt_);
    } else {
      mysql_stmt_free_result(stmt_);
    }
  }
  StatementGuard(const StatementGuard&) = delete;
  StatementGuard& operator=(const StatementGuard&) = delete;

 private:
  MYSQL_STMT* stmt_;
  bool owned_;
  const bool& released_;
  bool& broken_;
};

struct ResultDeleter {
  void operator()(MYSQL_RES* r) const noexcept { mysql_free_result(r); }
};
using ResultPtr = std::unique_ptr<MYSQL_RES, ResultDeleter>;

}  // namespace

MariaDbConnection::MariaDbConnection(st_mysql* mysql, std::size_t stmt_cache_size,
                                     std::string where) noexcept
    : mysql_(mysql), cache_capacity_(stmt_cache_size), where_(std::move(where)) {}

MariaDbConnection::~MariaDbConnection() {
  if (broken_) {
    // The link is dead or in the middle of an abandoned exchange (a timed-out ping): make the
    // goodbye messages of mysql_stmt_close and mysql_close fail at once instead of waiting.
    const my_socket fd = mysql_get_socket(mysql_);
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
  cache_clear();
  mysql_close(mysql_);
}

std::uint64_t MariaDbConnection::execute_params(std::string_view sql,
                                                std::span<const Value> params) {
  return run(sql, params, nullptr);
}

ResultSet MariaDbConnection::query_params(std::string_view sql, std::span<const Value> params) {
  ResultSet out;
  run(sql, params, &out);
  return out;
}

void MariaDbConnection::begin() {
  ensure_usable();
  run_command("START TRANSACTION");
}

void MariaDbConnection::commit() {
  ensure_usable();
  run_command("COMMIT");
}

void MariaDbConnection::rollback() {
  ensure_usable();
  if (in_transaction()) run_command("ROLLBACK");
}

bool MariaDbConnection::in_transaction() const noexcept {
  unsigned int status = 0;
  if (mariadb_get_infov(mysql_, MARIADB_CONNECTION_SERVER_STATUS, &status) != 0) return false;
  return (status & SERVER_STATUS_IN_TRANS) != 0;
}

bool MariaDbConnection::broken() const noexcept { return broken_; }

void MariaDbConnection::ping(std::chrono::milliseconds timeout) {
  ensure_usable();
  if (timeout.count() <= 0) timeout = kDefaultPingTimeout;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // The non-blocking API: Connector/C says what it waits for, we wait for it with our deadline.
  int ret = 0;
  int status = mysql_ping_start(&ret, mysql_);
  while (status != 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      lost("ping got no answer within " + std::to_string(timeout.count()) + " ms");
    }
    int wait = static_cast<int>(left.count());
    if ((status & MYSQL_WAIT_TIMEOUT) != 0) {
      wait = std::min<int>(wait, static_cast<int>(mysql_get_timeout_value_ms(mysql_)));
    }
    pollfd pfd{};
    pfd.fd = mysql_get_socket(mysql_);
    if ((status & MYSQL_WAIT_READ) != 0) pfd.events |= POLLIN;
    if ((status & MYSQL_WAIT_WRITE) != 0) pfd.events |= POLLOUT;
    if ((status & MYSQL_WAIT_EXCEPT) != 0) pfd.events |= POLLPRI;
    const int n = ::poll(&pfd, 1, wait);
    if (n < 0) {
      if (errno == EINTR) continue;
      lost(std::string("ping failed: poll: ") + std::strerror(errno));
    }
    int ready = 0;
    if (n == 0) {
      if ((status & MYSQL_WAIT_TIMEOUT) == 0) continue;  // our deadline: checked above
      ready = MYSQL_WAIT_TIMEOUT;
    } else {
      // An error or hang-up is reported as readable/writable: the library's next read or write
      // then sees the failure itself.
      const bool failed = (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
      if ((pfd.revents & POLLIN) != 0 || (failed && (status & MYSQL_WAIT_READ) != 0)) {
        ready |= MYSQL_WAIT_READ;
      }
      if ((pfd.revents & POLLOUT) != 0 || (failed && (status & MYSQL_WAIT_WRITE) != 0)) {
        ready |= MYSQL_WAIT_WRITE;
      }
      if ((pfd.revents & POLLPRI) != 0) ready |= MYSQL_WAIT_EXCEPT;
    }
    status = mysql_ping_cont(&ret, mysql_, ready);
  }
  if (ret != 0) {
    lost("ping failed: " + std::string(mysql_error(mysql_)) + " (error " +
         std::to_string(mysql_errno(mysql_)) + ")");
  }
}

void MariaDbConnection::reset() {
  ensure_usable();
  // COM_RESET_CONNECTION drops the server side of every statement; close ours first so that
  // no handle outlives its statement.
  cache_clear();
  // COM_RESET_CONNECTION rolls back too, but the server's answer to it may still carry the
  // old in-transaction flag; an explicit ROLLBACK first keeps in_transaction() right.
  if (in_transaction()) run_command("ROLLBACK");
  if (mysql_reset_connection(mysql_) != 0) fail(nullptr, "COM_RESET_CONNECTION");
}

bool MariaDbConnection::cacheable(std::string_view sql) const noexcept {
  return cache_capacity_ > 0 && sql.size() <= kMaxCachedSqlSize;
}

st_mysql_stmt* MariaDbConnection::cache_find(std::string_view sql) {
  if (!cacheable(sql)) return nullptr;
  const auto it = cache_index_.find(sql);
  if (it == cache_index_.end()) return nullptr;
  cache_.splice(cache_.begin(), cache_, it->second);  // most recently used first
  return it->second->stmt;
}

void MariaDbConnection::cache_add(std::string_view sql, st_mysql_stmt* stmt) {
  if (cache_.size() >= cache_capacity_) {
    mysql_stmt_close(cache_.back().stmt);  // COM_STMT_CLOSE: sent, never answered
    cache_index_.erase(std::string_view(cache_.back().sql));
    cache_.pop_back();
  }
  cache_.push_front(CachedStatement{std::string(sql), stmt});
  cache_index_.emplace(std::string_view(cache_.front().sql), cache_.begin());
}

st_mysql_stmt* MariaDbConnection::prepare(std::string_view sql, bool* owned, bool* unsupported,
                                          bool* hit) {
  *unsupported = false;
  *owned = !cacheable(sql);
  MYSQL_STMT* const cached = cache_find(sql);
  *hit = cached != nullptr;
  if (cached != nullptr) return cached;
  MYSQL_STMT* stmt = mysql_stmt_init(mysql_);
  if (stmt == nullptr) fail(nullptr, sql);
  if (mysql_stmt_prepare(stmt, sql.data(), static_cast<unsigned long>(sql.size())) != 0) {
    if (prepare_refused(stmt, sql)) {
      *unsupported = true;
      return nullptr;
    }
  }
  if (!*owned) cache_add(sql, stmt);
  return stmt;
}

bool MariaDbConnection::prepare_refused(st_mysql_stmt* stmt, std::string_view sql) {
  if (mysql_stmt_errno(stmt) == ER_UNSUPPORTED_PS) {
    mysql_stmt_close(stmt);
    return true;
  }
  const std::unique_ptr<MYSQL_STMT, decltype(&mysql_stmt_close)> closer(stmt, mysql_stmt_close);
  fail(stmt, sql);
}

bool MariaDbConnection::stale_may_rerun(st_mysql_stmt* stmt, std::string_view sql, bool was_idle,
                                        bool may_retry) {
  // A cached statement whose result columns changed (ALTER TABLE): Connector/C refuses the
  // handle for good, but the server has executed the statement already. The handle is closed
  // (which discards the result). Only a statement that merely reads, outside a transaction,
  // runs again freshly prepared; anything else (INSERT ... RETURNING, a CALL) would take effect
  // twice, so the caller hears of it instead.
  const std::string message = mysql_stmt_error(stmt);
  cache_erase(stmt);
  if (was_idle && may_retry && mariadb::reads_only(sql)) return true;
  throw Error(ErrorCode::query_failed,
              "mariadb: the statement was executed, but its result columns changed since it "
              "was prepared (" +
                  message + "), so its result is lost; the statement was not run again; in: " +
                  shorten_sql(sql),
              {.sqlstate = "HY000", .native_code = CR_NEW_STMT_METADATA});
}

std::unique_ptr<StatementOp> MariaDbConnection::start_statement(std::string_view sql,
                                                                std::span<const Value> params,
                                                                bool want_rows) {
  return std::make_unique<MariaDbStatementOp>(*this, sql, params, want_rows);
}

std::uint64_t MariaDbConnection::run(std::string_view sql, std::span<const Value> params,
                                     ResultSet* out) {
  ensure_usable();
  for (int attempt = 0;; ++attempt) {
    bool stale = false;
    const std::uint64_t n = run_once(sql, params, out, attempt == 0, &stale);
    if (!stale) return n;
  }
}

void MariaDbConnection::cache_erase(st_mysql_stmt* stmt) noexcept {
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->stmt != stmt) continue;
    cache_index_.erase(std::string_view(it->sql));
    cache_.erase(it);
    break;
  }
  mysql_stmt_close(stmt);
}

std::uint64_t MariaDbConnection::run_once(std::string_view sql, std::span<const Value> params,
                                          ResultSet* out, bool may_retry, bool* stale) {
  bool owned = false;
  bool unsupported = false;
  bool hit = false;
  MYSQL_STMT* const stmt = prepare(sql, &owned, &unsupported, &hit);
  if (unsupported) {
    if (!params.empty()) mariadb::throw_unpreparable_with_params(sql);
    return run_text(sql, out);
  }
  bool released = false;  // set once the statement is closed here (the guard must not touch it)
  const StatementGuard guard(stmt, owned, released, broken_);

  mariadb::check_param_count(stmt, params.size(), sql);
  // Parameters. The buffers live until mysql_stmt_execute has sent them.
  const std::size_t n = params.size();
  mariadb::ParamBinds binds;
  binds.bind(params);
  if (n > 0 && mysql_stmt_bind_param(stmt, binds.data()) != 0) fail(stmt, sql);
  const bool was_idle = !in_transaction();
  if (mysql_stmt_execute(stmt) != 0) {
    if (hit && mysql_stmt_errno(stmt) == CR_NEW_STMT_METADATA) {
      released = true;
      *stale = stale_may_rerun(stmt, sql, was_idle, may_retry);
      return 0;
    }
    fail(stmt, sql);
  }

  const ResultPtr meta(mysql_stmt_result_metadata(stmt));
  if (!meta) {
    if (mysql_stmt_field_count(stmt) != 0) fail(stmt, sql);
    const my_ulonglong affected = mysql_stmt_affected_rows(stmt);
    if (!drain_results(stmt)) fail(stmt, sql);
    if (out != nullptr) *out = ResultSet({}, {}, affected);
    return affected_count(affected);
  }

  mariadb::RowDecoder decoder;
  if (!decoder.bind(stmt, meta.get())) fail(stmt, sql);
  std::vector<Row> rows;
  while (true) {
    const int rc = mysql_stmt_fetch(stmt);
    if (rc == MYSQL_NO_DATA) break;
    if (rc == 1 || !decoder.read(stmt, rows)) fail(stmt, sql);
  }
  // A CALL's first result set is the result; the rest (further result sets, the final status)
  // is read and dropped so that the connection is ready for the next command.
  if (!drain_results(stmt)) fail(stmt, sql);
  if (out != nullptr) *out = ResultSet(decoder.take_names(), std::move(rows), 0);
  return 0;
}

std::uint64_t MariaDbConnection::run_text(std::string_view sql, ResultSet* out) {
  if (mysql_real_query(mysql_, sql.data(), static_cast<unsigned long>(sql.size())) != 0) {
    fail(nullptr, sql);
  }
  const ResultPtr res(mysql_store_result(mysql_));
  if (!res) {
    if (mysql_field_count(mysql_) != 0) fail(nullptr, sql);
    const my_ulonglong affected = mysql_affected_rows(mysql_);
    if (!drain_results(mysql_)) fail(nullptr, sql);
    if (out != nullptr) *out = ResultSet({}, {}, affected);
    return affected_count(affected);
  }
  ResultSet rows = mariadb::decode_text_result(res.get());
  if (!drain_results(mysql_)) fail(nullptr, sql);
  if (out != nullptr) *out = std::move(rows);
  return 0;
}

void MariaDbConnection::run_command(std::string_view sql) {
  if (mysql_real_query(mysql_, sql.data(), static_cast<unsigned long>(sql.size())) != 0) {
    fail(nullptr, sql);
  }
  // Commands return no rows, but a result must never be left unread.
  const ResultPtr res(mysql_store_result(mysql_));
  if (!drain_results(mysql_)) fail(nullptr, sql);
}

void MariaDbConnection::cache_clear() noexcept {
  for (CachedStatement& c : cache_) mysql_stmt_close(c.stmt);
  cache_index_.clear();
  cache_.clear();
}

void MariaDbConnection::ensure_usable() const {
  if (broken_) {
    throw Error(ErrorCode::connection_lost,
                "mariadb: the connection to " + where_ +
                    " is broken (an earlier call lost the link); the pool discards it");
  }
}

void MariaDbConnection::lost(const std::string& what) {
  broken_ = true;
  throw Error(ErrorCode::connection_lost, "mariadb: " + what + " (" + where_ + ")");
}

void MariaDbConnection::fail(st_mysql_stmt* stmt, std::string_view sql) {
  const unsigned code = stmt != nullptr ? mysql_stmt_errno(stmt) : mysql_errno(mysql_);
  std::string sqlstate = stmt != nullptr ? mysql_stmt_sqlstate(stmt) : mysql_sqlstate(mysql_);
  std::string message = stmt != nullptr ? mysql_stmt_error(stmt) : mysql_error(mysql_);
  if (message.empty()) message = "no message from Connector/C";
  if (sqlstate == "00000") sqlstate.clear();
  std::string text = "mariadb: " + message + " (error " + std::to_string(code);
  if (!sqlstate.empty()) text += ", SQLSTATE " + sqlstate;
  text += ")";
  const ErrorDetail detail{.sqlstate = sqlstate, .native_code = code};
  if (mariadb::is_link_failure(code, sqlstate)) {
    broken_ = true;
    throw Error(ErrorCode::connection_lost,
                text + "; the connection to " + where_ + " is lost; in: " + shorten_sql(sql),
                detail);
  }
  throw Error(ErrorCode::query_failed, text + "; in: " + shorten_sql(sql), detail);
}

}  // namespace reservoir::drivers
