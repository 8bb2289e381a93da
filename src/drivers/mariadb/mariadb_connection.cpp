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

#include "reservoir/error.hpp"

namespace reservoir::drivers {
namespace {

constexpr unsigned kBinaryCharset = 63;       // the "binary" character set: bytes, not text
constexpr unsigned kConnectionKilled = 1927;  // ER_CONNECTION_KILLED (MariaDB)

// The column types, as reservoir Values.
enum class Kind : std::uint8_t { null, integer, unsigned_integer, real, text, bytes };

Kind kind_of(const MYSQL_FIELD& f) {
  switch (f.type) {
    case MYSQL_TYPE_NULL:
      return Kind::null;
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_YEAR:
      return (f.flags & UNSIGNED_FLAG) != 0 ? Kind::unsigned_integer : Kind::integer;
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE:
      return Kind::real;
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_BIT:
    case MYSQL_TYPE_GEOMETRY:
      // Numbers and dates report charset 63 too; only for strings does it mean "binary".
      return f.charsetnr == kBinaryCharset ? Kind::bytes : Kind::text;
    default:  // DECIMAL, dates and times, JSON, ENUM, SET: their text form
      return Kind::text;
  }
}

Value bytes_value(const char* data, std::size_t size) {
  const auto* p = reinterpret_cast<const std::byte*>(data);
  return Value(Bytes(p, p + size));
}

// A value the text protocol sent, typed by its column.
Value decode_text(Kind kind, const char* data, std::size_t size) {
  const std::string_view s(data, size);
  switch (kind) {
    case Kind::null:
      return Value();
    case Kind::integer: {
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size()) return Value(v);
      break;
    }
    case Kind::unsigned_integer: {
      std::uint64_t v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size() &&
          v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return Value(static_cast<std::int64_t>(v));
      }
      break;
    }
    case Kind::real: {
      double v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size()) return Value(v);
      break;
    }
    case Kind::bytes:
      return bytes_value(data, size);
    case Kind::text:
      break;
  }
  return Value(std::string(s));
}

std::string shorten_sql(std::string_view sql) {
  constexpr std::size_t kMax = 200;
  std::string out(sql.substr(0, kMax));
  for (char& c : out) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (sql.size() > kMax) out += "...";
  return out;
}

bool is_link_failure(unsigned code, std::string_view sqlstate) {
  return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST ||
         code == CR_SERVER_LOST_EXTENDED || code == kConnectionKilled ||
         code == ER_SERVER_SHUTDOWN || code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR ||
         // Out of sync: an unread result is in the way and every later command fails alike.
         code == CR_COMMANDS_OUT_OF_SYNC || sqlstate.substr(0, 2) == "08";
}

// Whether sql only reads, so that running it a second time changes nothing: its first keyword
// (after blanks, comments and opening parentheses) is SELECT, SHOW, WITH or VALUES, and the
// word RETURNING appears nowhere in it. An executable comment (/*! or /*M!) counts as writing.
bool reads_only(std::string_view sql) {
  std::size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '(') {
      ++i;
    } else if (sql.substr(i, 2) == "/*") {
      if (sql.substr(i, 3) == "/*!" || sql.substr(i, 4) == "/*M!") return false;
      const std::size_t end = sql.find("*/", i + 2);
      if (end == std::string_view::npos) return false;
      i = end + 2;
    } else if (c == '#' || sql.substr(i, 3) == "-- ") {
      const std::size_t end = sql.find('\n', i);
      if (end == std::string_view::npos) return false;
      i = end + 1;
    } else {
      break;
    }
  }
  std::string upper;
  upper.reserve(sql.size() - i);
  for (std::size_t k = i; k < sql.size(); ++k) {
    const char c = sql[k];
    upper.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
  }
  if (upper.find("RETURNING") != std::string::npos) return false;
  std::size_t word = 0;
  while (word < upper.size() && upper[word] >= 'A' && upper[word] <= 'Z') ++word;
  const std::string_view first = std::string_view(upper).substr(0, word);
  return first == "SELECT" || first == "SHOW" || first == "WITH" || first == "VALUES";
}

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

st_mysql_stmt* MariaDbConnection::prepare(std::string_view sql, bool* owned, bool* unsupported,
                                          bool* hit) {
  *unsupported = false;
  *hit = false;
  const bool cacheable = cache_capacity_ > 0 && sql.size() <= kMaxCachedSqlSize;
  *owned = !cacheable;
  if (cacheable) {
    const auto it = cache_index_.find(sql);
    if (it != cache_index_.end()) {
      cache_.splice(cache_.begin(), cache_, it->second);  // most recently used first
      *hit = true;
      return it->second->stmt;
    }
  }
  MYSQL_STMT* stmt = mysql_stmt_init(mysql_);
  if (stmt == nullptr) fail(nullptr, sql);
  if (mysql_stmt_prepare(stmt, sql.data(), static_cast<unsigned long>(sql.size())) != 0) {
    if (mysql_stmt_errno(stmt) == ER_UNSUPPORTED_PS) {
      mysql_stmt_close(stmt);
      *unsupported = true;
      return nullptr;
    }
    const std::unique_ptr<MYSQL_STMT, decltype(&mysql_stmt_close)> closer(stmt, mysql_stmt_close);
    fail(stmt, sql);
  }
  if (!cacheable) return stmt;
  if (cache_.size() >= cache_capacity_) {
    mysql_stmt_close(cache_.back().stmt);
    cache_index_.erase(std::string_view(cache_.back().sql));
    cache_.pop_back();
  }
  cache_.push_front(CachedStatement{std::string(sql), stmt});
  cache_index_.emplace(std::string_view(cache_.front().sql), cache_.begin());
  return stmt;
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
    if (!params.empty()) {
      throw Error(ErrorCode::unsupported,
                  "mariadb: this statement cannot be prepared, so it cannot take parameters: " +
                      shorten_sql(sql));
    }
    return run_text(sql, out);
  }
  bool released = false;  // set once the statement is closed here (the guard must not touch it)
  const StatementGuard guard(stmt, owned, released, broken_);

  const unsigned long expected = mysql_stmt_param_count(stmt);
  if (expected != params.size()) {
    throw Error(ErrorCode::invalid_argument,
                "mariadb: statement has " + std::to_string(expected) + " placeholders (?), got " +
                    std::to_string(params.size()) + " parameters: " + shorten_sql(sql));
  }

  // Parameters. The buffers live until mysql_stmt_execute has sent them.
  const std::size_t n = params.size();
  std::vector<MYSQL_BIND> binds(n);
  std::vector<long long> ints(n);
  std::vector<double> reals(n);
  std::vector<signed char> bools(n);
  std::vector<unsigned long> lengths(n);
  std::vector<Bytes> blobs(n);
  for (std::size_t i = 0; i < n; ++i) {
    MYSQL_BIND& b = binds[i];
    const Value& v = params[i];
    switch (v.type()) {
      case ValueType::null:
        b.buffer_type = MYSQL_TYPE_NULL;
        break;
      case ValueType::boolean:
        bools[i] = v.as<bool>() ? 1 : 0;
        b.buffer_type = MYSQL_TYPE_TINY;
        b.buffer = &bools[i];
        break;
      case ValueType::integer:
        ints[i] = v.as<std::int64_t>();
        b.buffer_type = MYSQL_TYPE_LONGLONG;
        b.buffer = &ints[i];
        break;
      case ValueType::real:
        reals[i] = v.as<double>();
        b.buffer_type = MYSQL_TYPE_DOUBLE;
        b.buffer = &reals[i];
        break;
      case ValueType::text: {
        const auto s = v.as<std::string_view>();  // the Value's own string: lives for the call
        lengths[i] = static_cast<unsigned long>(s.size());
        b.buffer_type = MYSQL_TYPE_STRING;
        b.buffer = const_cast<char*>(s.data());
        b.buffer_length = lengths[i];
        b.length = &lengths[i];
        break;
      }
      case ValueType::bytes: {
        blobs[i] = v.as<Bytes>();
        lengths[i] = static_cast<unsigned long>(blobs[i].size());
        b.buffer_type = MYSQL_TYPE_BLOB;  // binary: the server keeps the bytes as they are
        b.buffer = blobs[i].empty() ? static_cast<void*>(&bools[i]) : blobs[i].data();
        b.buffer_length = lengths[i];
        b.length = &lengths[i];
        break;
      }
    }
  }
  if (n > 0 && mysql_stmt_bind_param(stmt, binds.data()) != 0) fail(stmt, sql);
  const bool was_idle = !in_transaction();
  if (mysql_stmt_execute(stmt) != 0) {
    if (hit && mysql_stmt_errno(stmt) == CR_NEW_STMT_METADATA) {
      // A cached statement whose result columns changed (ALTER TABLE): Connector/C refuses the
      // handle for good, but the server has executed the statement already. The handle is
      // closed (which discards the result). Only a statement that merely reads, outside a
      // transaction, runs again freshly prepared; anything else (INSERT ... RETURNING, a CALL)
      // would take effect twice, so the caller hears of it instead.
      const std::string message = mysql_stmt_error(stmt);
      released = true;
      cache_erase(stmt);
      if (was_idle && may_retry && reads_only(sql)) {
        *stale = true;
        return 0;
      }
      throw Error(ErrorCode::query_failed,
                  "mariadb: the statement was executed, but its result columns changed since it "
                  "was prepared (" +
                      message + "), so its result is lost; the statement was not run again; in: " +
                      shorten_sql(sql),
                  {.sqlstate = "HY000", .native_code = CR_NEW_STMT_METADATA});
    }
    fail(stmt, sql);
  }

  const ResultPtr meta(mysql_stmt_result_metadata(stmt));
  if (!meta) {
    if (mysql_stmt_field_count(stmt) != 0) fail(stmt, sql);
    const my_ulonglong affected = mysql_stmt_affected_rows(stmt);
    if (!drain_results(stmt)) fail(stmt, sql);
    if (out != nullptr) *out = ResultSet({}, {}, affected);
    return affected == static_cast<my_ulonglong>(-1) ? 0 : affected;
  }

  // Rows. Numbers land in fixed buffers; strings are measured first (a zero-length buffer),
  // then fetched column by column at their size.
  const unsigned columns = mysql_num_fields(meta.get());
  const MYSQL_FIELD* fields = mysql_fetch_fields(meta.get());
  std::vector<std::string> names;
  std::vector<Kind> kinds;
  names.reserve(columns);
  kinds.reserve(columns);
  std::vector<MYSQL_BIND> result(columns);
  std::vector<long long> int_out(columns);
  std::vector<double> real_out(columns);
  std::vector<unsigned long> length_out(columns);
  std::vector<my_bool> null_out(columns);
  std::vector<my_bool> error_out(columns);
  for (unsigned c = 0; c < columns; ++c) {
    names.emplace_back(fields[c].name != nullptr ? fields[c].name : "");
    const Kind kind = kind_of(fields[c]);
    kinds.push_back(kind);
    MYSQL_BIND& b = result[c];
    b.is_null = &null_out[c];
    b.error = &error_out[c];
    b.length = &length_out[c];
    switch (kind) {
      case Kind::integer:
      case Kind::unsigned_integer:
        b.buffer_type = MYSQL_TYPE_LONGLONG;
        b.buffer = &int_out[c];
        b.is_unsigned = kind == Kind::unsigned_integer;
        break;
      case Kind::real:
        b.buffer_type = MYSQL_TYPE_DOUBLE;
        b.buffer = &real_out[c];
        break;
      case Kind::bytes:
        b.buffer_type = MYSQL_TYPE_BLOB;
        break;
      case Kind::null:
      case Kind::text:
        b.buffer_type = MYSQL_TYPE_STRING;
        break;
    }
  }
  if (mysql_stmt_bind_result(stmt, result.data()) != 0) fail(stmt, sql);

  std::vector<Row> rows;
  while (true) {
    const int rc = mysql_stmt_fetch(stmt);
    if (rc == MYSQL_NO_DATA) break;
    if (rc == 1) fail(stmt, sql);
    std::vector<Value> values;
    values.reserve(columns);
    for (unsigned c = 0; c < columns; ++c) {
      if (null_out[c] != 0 || kinds[c] == Kind::null) {
        values.emplace_back();
        continue;
      }
      switch (kinds[c]) {
        case Kind::integer:
          values.emplace_back(static_cast<std::int64_t>(int_out[c]));
          break;
        case Kind::unsigned_integer: {
          const auto u = static_cast<std::uint64_t>(int_out[c]);
          if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            values.emplace_back(std::to_string(u));  // beyond int64: exact, as text
          } else {
            values.emplace_back(static_cast<std::int64_t>(u));
          }
          break;
        }
        case Kind::real:
          values.emplace_back(real_out[c]);
          break;
        case Kind::text:
        case Kind::bytes:
        case Kind::null: {
          std::string data(length_out[c], '\0');
          if (!data.empty()) {
            MYSQL_BIND col{};
            unsigned long got = 0;
            col.buffer_type = result[c].buffer_type;
            col.buffer = data.data();
            col.buffer_length = static_cast<unsigned long>(data.size());
            col.length = &got;
            if (mysql_stmt_fetch_column(stmt, &col, c, 0) != 0) fail(stmt, sql);
            data.resize(std::min<std::size_t>(got, data.size()));
          }
          if (kinds[c] == Kind::bytes) {
            values.push_back(bytes_value(data.data(), data.size()));
          } else {
            values.emplace_back(std::move(data));
          }
          break;
        }
      }
    }
    rows.emplace_back(std::move(values));
  }
  // A CALL's first result set is the result; the rest (further result sets, the final status)
  // is read and dropped so that the connection is ready for the next command.
  if (!drain_results(stmt)) fail(stmt, sql);
  if (out != nullptr) *out = ResultSet(std::move(names), std::move(rows), 0);
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
    return affected == static_cast<my_ulonglong>(-1) ? 0 : affected;
  }
  const unsigned columns = mysql_num_fields(res.get());
  const MYSQL_FIELD* fields = mysql_fetch_fields(res.get());
  std::vector<std::string> names;
  std::vector<Kind> kinds;
  for (unsigned c = 0; c < columns; ++c) {
    names.emplace_back(fields[c].name != nullptr ? fields[c].name : "");
    kinds.push_back(kind_of(fields[c]));
  }
  std::vector<Row> rows;
  while (MYSQL_ROW row = mysql_fetch_row(res.get())) {
    const unsigned long* lengths = mysql_fetch_lengths(res.get());
    std::vector<Value> values;
    values.reserve(columns);
    for (unsigned c = 0; c < columns; ++c) {
      values.push_back(row[c] == nullptr ? Value() : decode_text(kinds[c], row[c], lengths[c]));
    }
    rows.emplace_back(std::move(values));
  }
  if (!drain_results(mysql_)) fail(nullptr, sql);
  if (out != nullptr) *out = ResultSet(std::move(names), std::move(rows), 0);
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
  if (is_link_failure(code, sqlstate)) {
    broken_ = true;
    throw Error(ErrorCode::connection_lost,
                text + "; the connection to " + where_ + " is lost; in: " + shorten_sql(sql),
                detail);
  }
  throw Error(ErrorCode::query_failed, text + "; in: " + shorten_sql(sql), detail);
}

}  // namespace reservoir::drivers
