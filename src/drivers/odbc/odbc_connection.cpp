// odbc_connection.cpp: statements, typed values, transactions, reset and liveness on one ODBC
// connection handle, with an LRU cache of prepared statement handles.
#include "drivers/odbc/odbc_connection.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <utility>
#include <vector>

#include "drivers/odbc/odbc_diag.hpp"
#include "reservoir/error.hpp"

namespace reservoir::drivers {
namespace {

using odbc::ok;

constexpr std::size_t kSqlInMessage = 200;
// Longer SQL is run but not cached: generated bulk statements would pin their text and plan.
constexpr std::size_t kMaxCachedSqlSize = 16 * 1024;
// Text and binary parameters up to this size bind as VARCHAR / VARBINARY, longer ones as LONG*.
constexpr std::size_t kLongDataThreshold = 4000;
// SQLGetData reads long values in chunks of this size.
constexpr std::size_t kChunk = 8192;

// The first kSqlInMessage bytes of sql, not cutting a UTF-8 character in two.
std::string shorten(std::string_view sql) {
  if (sql.size() <= kSqlInMessage) return std::string(sql);
  std::size_t n = kSqlInMessage;
  while (n > 0 && (static_cast<unsigned char>(sql[n]) & 0xC0) == 0x80) --n;
  return std::string(sql.substr(0, n)) + "...";
}

// The first word of sql in upper case, skipping whitespace, comments and '('.
std::string first_word(std::string_view s, std::size_t* after = nullptr) {
  std::size_t i = 0;
  for (;;) {
    while (i < s.size() && (std::isspace(static_cast<unsigned char>(s[i])) || s[i] == '(')) ++i;
    if (s.substr(i, 2) == "--") {
      const std::size_t end = s.find('\n', i);
      i = end == std::string_view::npos ? s.size() : end + 1;
    } else if (s.substr(i, 2) == "/*") {
      const std::size_t end = s.find("*/", i + 2);
      i = end == std::string_view::npos ? s.size() : end + 2;
    } else {
      break;
    }
  }
  std::string word;
  while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) {
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(s[i])));
    ++i;
  }
  if (after != nullptr) *after = i;
  return word;
}

// What a parameter binds from; lives until the statement ran.
struct ParamBuffer {
  SQLLEN indicator = 0;
  std::int64_t integer = 0;
  double real = 0;
  unsigned char bit = 0;
  Bytes bytes;
};

// Closes the cursor and unbinds the parameters of a statement however its run ended, so that a
// cached statement never points into a caller's (gone) values.
struct CloseOnExit {
  SQLHSTMT stmt;
  ~CloseOnExit() {
    SQLFreeStmt(stmt, SQL_CLOSE);
    SQLFreeStmt(stmt, SQL_RESET_PARAMS);
  }
};

SQLHSTMT as_stmt(void* p) { return static_cast<SQLHSTMT>(p); }

}  // namespace

OdbcConnection::OdbcConnection(void* dbc, std::size_t stmt_cache_size, std::string where,
                               std::string secret)
    : dbc_(dbc),
      cache_capacity_(stmt_cache_size),
      where_(std::move(where)),
      secret_(std::move(secret)) {
  std::array<SQLCHAR, 256> name{};
  SQLSMALLINT len = 0;
  if (ok(SQLGetInfo(static_cast<SQLHDBC>(dbc_), SQL_DBMS_NAME, name.data(),
                    static_cast<SQLSMALLINT>(name.size()), &len))) {
    dbms_name_.assign(reinterpret_cast<const char*>(name.data()));
  }
  // The common "SELECT 1" is not valid everywhere; the two known exceptions are handled, the
  // rest is untested (docs/odbc.md).
  if (dbms_name_.find("Oracle") != std::string::npos) {
    ping_sql_ = "SELECT 1 FROM DUAL";
  } else if (dbms_name_.rfind("DB2", 0) == 0) {
    ping_sql_ = "VALUES 1";
  }
  // Some drivers delete prepared statements when a transaction ends; their cache must go too.
  SQLUSMALLINT commit = SQL_CB_PRESERVE, rollback = SQL_CB_PRESERVE;
  if (ok(SQLGetInfo(static_cast<SQLHDBC>(dbc_), SQL_CURSOR_COMMIT_BEHAVIOR, &commit, 0, nullptr)) &&
      ok(SQLGetInfo(static_cast<SQLHDBC>(dbc_), SQL_CURSOR_ROLLBACK_BEHAVIOR, &rollback, 0,
                    nullptr))) {
    statements_survive_transactions_ = commit != SQL_CB_DELETE && rollback != SQL_CB_DELETE;
  }
}

OdbcConnection::~OdbcConnection() {
  cache_clear();
  const auto dbc = static_cast<SQLHDBC>(dbc_);
  // A driver may refuse to disconnect (25000) with a manual-commit transaction open.
  if (tx_ == TxState::api && !broken_) SQLEndTran(SQL_HANDLE_DBC, dbc, SQL_ROLLBACK);
  SQLDisconnect(dbc);
  SQLFreeHandle(SQL_HANDLE_DBC, dbc);
}

std::uint64_t OdbcConnection::execute_params(std::string_view sql, std::span<const Value> params) {
  return run(sql, params, nullptr);
}

ResultSet OdbcConnection::query_params(std::string_view sql, std::span<const Value> params) {
  ResultSet out;
  run(sql, params, &out);
  return out;
}

void OdbcConnection::begin() {
  ensure_usable();
  if (tx_ != TxState::none) {
    throw Error(
        ErrorCode::query_failed,
        "odbc: begin() inside a transaction (ODBC has no nested transactions) on " + where_);
  }
  const auto dbc = static_cast<SQLHDBC>(dbc_);
  if (!ok(SQLSetConnectAttr(dbc, SQL_ATTR_AUTOCOMMIT,
                            reinterpret_cast<SQLPOINTER>(SQL_AUTOCOMMIT_OFF), SQL_IS_UINTEGER))) {
    fail(SQL_HANDLE_DBC, dbc_, "begin (SQL_ATTR_AUTOCOMMIT off)", {});
  }
  tx_ = TxState::api;
}

void OdbcConnection::commit() {
  ensure_usable();
  if (tx_ == TxState::sql) {
    run("COMMIT", {}, nullptr);
  } else if (tx_ == TxState::api) {
    end_transaction(true);
  }
}

void OdbcConnection::rollback() {
  ensure_usable();
  if (tx_ == TxState::sql) {
    run("ROLLBACK", {}, nullptr);
  } else if (tx_ == TxState::api) {
    end_transaction(false);
  }
}

void OdbcConnection::end_transaction(bool commit) {
  const auto dbc = static_cast<SQLHDBC>(dbc_);
  const SQLRETURN rc = SQLEndTran(SQL_HANDLE_DBC, dbc, commit ? SQL_COMMIT : SQL_ROLLBACK);
  if (!statements_survive_transactions_) cache_clear();
  if (!ok(rc)) {
    // The transaction is over either way (a failed commit rolls back); keep the session usable.
    odbc::Diagnostics d = odbc::read_diagnostics(SQL_HANDLE_DBC, dbc);
    SQLSetConnectAttr(dbc, SQL_ATTR_AUTOCOMMIT, reinterpret_cast<SQLPOINTER>(SQL_AUTOCOMMIT_ON),
                      SQL_IS_UINTEGER);
    tx_ = TxState::none;
    ErrorCode code = odbc::map_sqlstate(d.sqlstate, odbc::Phase::session);
    if (code != ErrorCode::connection_lost && connection_dead()) code = ErrorCode::connection_lost;
    if (code == ErrorCode::connection_lost) broken_ = true;
    throw Error(code,
                std::string("odbc: ") + (commit ? "commit" : "rollback") + " failed on " + where_ +
                    ": " + odbc::scrub(d.message, secret_) + " (SQLSTATE " + d.sqlstate + ")",
                {.sqlstate = d.sqlstate, .native_code = d.native_code});
  }
  tx_ = TxState::none;
  if (!ok(SQLSetConnectAttr(dbc, SQL_ATTR_AUTOCOMMIT,
                            reinterpret_cast<SQLPOINTER>(SQL_AUTOCOMMIT_ON), SQL_IS_UINTEGER))) {
    fail(SQL_HANDLE_DBC, dbc_, "SQL_ATTR_AUTOCOMMIT on", {});
  }
}

TxEffect transaction_effect(std::string_view sql) noexcept {
  try {
    std::size_t after = 0;
    const std::string word = first_word(sql, &after);
    if (word == "BEGIN" || word == "START") {
      // "START" alone could be something else; START TRANSACTION is what opens one.
      if (word == "START" && first_word(sql.substr(after)) != "TRANSACTION") return TxEffect::none;
      return TxEffect::begins;
    }
    if (word != "COMMIT" && word != "END" && word != "ROLLBACK") return TxEffect::none;
    // Skip the optional WORK / TRANSACTION noise word.
    std::string_view rest = sql.substr(after);
    std::size_t next = 0;
    std::string w = first_word(rest, &next);
    if (w == "WORK" || w == "TRANSACTION" || w == "TRAN") {
      rest = rest.substr(next);
      w = first_word(rest, &next);
    }
    // ROLLBACK TO a savepoint: the transaction goes on.
    if (word == "ROLLBACK" && w == "TO") return TxEffect::none;
    // COMMIT / ROLLBACK AND CHAIN starts the next transaction at once (AND NO CHAIN does not).
    if (w == "AND" && first_word(rest.substr(next)) == "CHAIN") return TxEffect::none;
    return TxEffect::ends;
  } catch (...) {  // std::bad_alloc from a word
    return TxEffect::none;
  }
}

void OdbcConnection::track_transaction_sql(std::string_view sql) noexcept {
  switch (transaction_effect(sql)) {
    case TxEffect::begins:
      if (tx_ == TxState::none) tx_ = TxState::sql;
      break;
    case TxEffect::ends:
      if (tx_ == TxState::sql) tx_ = TxState::none;
      break;
    case TxEffect::none:
      break;
  }
}

bool OdbcConnection::connection_dead() noexcept {
  SQLUINTEGER dead = SQL_CD_FALSE;
  return ok(SQLGetConnectAttr(static_cast<SQLHDBC>(dbc_), SQL_ATTR_CONNECTION_DEAD, &dead, 0,
                              nullptr)) &&
         dead == SQL_CD_TRUE;
}

void OdbcConnection::ping(std::chrono::milliseconds timeout) {
  ensure_usable();
  if (connection_dead()) {
    broken_ = true;
    throw Error(
        ErrorCode::connection_lost,
        "odbc: ping: the driver reports the connection dead (SQL_ATTR_CONNECTION_DEAD) on " +
            where_);
  }
  const std::optional<odbc::Diagnostics> d = exec_direct(ping_sql_, timeout);
  if (d) {
    broken_ = true;
    throw Error(ErrorCode::connection_lost,
                "odbc: ping (" + ping_sql_ + ") failed on " + where_ + ": " +
                    odbc::scrub(d->message, secret_) + " (SQLSTATE " + d->sqlstate + ")",
                {.sqlstate = d->sqlstate, .native_code = d->native_code});
  }
}

std::optional<odbc::Diagnostics> OdbcConnection::exec_direct(const std::string& sql,
                                                             std::chrono::milliseconds timeout) {
  SQLHSTMT stmt = SQL_NULL_HSTMT;
  if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, static_cast<SQLHDBC>(dbc_), &stmt))) {
    return odbc::read_diagnostics(SQL_HANDLE_DBC, dbc_);
  }
  struct FreeOnExit {
    SQLHSTMT stmt;
    ~FreeOnExit() { SQLFreeHandle(SQL_HANDLE_STMT, stmt); }
  } guard{stmt};
  if (timeout.count() > 0) {
    // Whole seconds, rounded up: 0 would mean "no limit". Drivers without it just ignore it.
    const auto seconds = static_cast<SQLULEN>((timeout.count() + 999) / 1000);
    SQLSetStmtAttr(stmt, SQL_ATTR_QUERY_TIMEOUT, reinterpret_cast<SQLPOINTER>(seconds), 0);
  }
  std::vector<SQLCHAR> text(sql.begin(), sql.end());
  text.push_back(0);
  SQLRETURN rc = SQLExecDirect(stmt, text.data(), static_cast<SQLINTEGER>(sql.size()));
  if (ok(rc)) {
    SQLSMALLINT columns = 0;
    if (ok(SQLNumResultCols(stmt, &columns)) && columns > 0) rc = SQLFetch(stmt);
  }
  if (rc == SQL_NO_DATA || ok(rc)) return std::nullopt;
  return odbc::read_diagnostics(SQL_HANDLE_STMT, stmt);
}

void OdbcConnection::reset() {
  ensure_usable();
  rollback();
  // Prepared statements belong to the session being reset, and what one lease prepared should
  // not stay with the next.
  cache_clear();
  const auto dbc = static_cast<SQLHDBC>(dbc_);
  // Only SQL_SUCCESS counts: SQLite ODBC answers any attribute it does not know with
  // SQL_SUCCESS_WITH_INFO 01S02 ("option value changed") and does nothing.
  last_reset_native_ = SQLSetConnectAttr(dbc, SQL_ATTR_RESET_CONNECTION,
                                         reinterpret_cast<SQLPOINTER>(SQL_RESET_CONNECTION_YES),
                                         SQL_IS_UINTEGER) == SQL_SUCCESS;
  if (!last_reset_native_ && dbms_name_ == "PostgreSQL") {
    // psqlODBC has no SQL_ATTR_RESET_CONNECTION; DISCARD ALL is PostgreSQL's own session reset.
    if (const auto d = exec_direct("DISCARD ALL", std::chrono::milliseconds(0))) {
      ErrorCode code = odbc::map_sqlstate(d->sqlstate, odbc::Phase::session);
      if (code != ErrorCode::connection_lost && connection_dead())
        code = ErrorCode::connection_lost;
      if (code == ErrorCode::connection_lost) broken_ = true;
      throw Error(code,
                  "odbc: reset (DISCARD ALL) failed on " + where_ + ": " +
                      odbc::scrub(d->message, secret_) + " (SQLSTATE " + d->sqlstate + ")",
                  {.sqlstate = d->sqlstate, .native_code = d->native_code});
    }
  }
}

void* OdbcConnection::acquire_statement(std::string_view sql, bool* cached) {
  *cached = false;
  if (const auto it = cache_index_.find(sql); it != cache_index_.end()) {
    // Checked out of the cache while it runs; a failed run frees it instead of putting it back.
    // Copy the node iterator before erasing the index entry: `it` is dead after erase().
    const auto node = it->second;
    void* stmt = node->stmt;
    cache_index_.erase(it);
    cache_.erase(node);
    *cached = true;
    return stmt;
  }
  SQLHSTMT stmt = SQL_NULL_HSTMT;
  if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, static_cast<SQLHDBC>(dbc_), &stmt))) {
    fail(SQL_HANDLE_DBC, dbc_, "cannot allocate a statement", sql);
  }
  std::vector<SQLCHAR> text(sql.begin(), sql.end());
  text.push_back(0);
  if (!ok(SQLPrepare(stmt, text.data(), static_cast<SQLINTEGER>(sql.size())))) {
    struct FreeOnExit {
      SQLHSTMT stmt;
      ~FreeOnExit() { SQLFreeHandle(SQL_HANDLE_STMT, stmt); }
    } guard{stmt};
    fail(SQL_HANDLE_STMT, stmt, "prepare", sql);
  }
  return stmt;
}

void OdbcConnection::release_statement(void* stmt, bool /*was_cached*/) noexcept {
  // Not worth keeping: caching disabled, or the key would pin a huge text.
  if (cache_capacity_ == 0) {
    SQLFreeHandle(SQL_HANDLE_STMT, as_stmt(stmt));
    return;
  }
  try {
    cache_.push_front(CachedStatement{});
  } catch (...) {
    SQLFreeHandle(SQL_HANDLE_STMT, as_stmt(stmt));
    return;
  }
  cache_.front().stmt = stmt;
  cache_.front().sql = std::move(pending_sql_);
  cache_index_[cache_.front().sql] = cache_.begin();
  while (cache_.size() > cache_capacity_) {
    cache_index_.erase(cache_.back().sql);
    SQLFreeHandle(SQL_HANDLE_STMT, as_stmt(cache_.back().stmt));
    cache_.pop_back();
  }
}

void OdbcConnection::cache_clear() noexcept {
  cache_index_.clear();
  for (CachedStatement& entry : cache_) SQLFreeHandle(SQL_HANDLE_STMT, as_stmt(entry.stmt));
  cache_.clear();
}

std::uint64_t OdbcConnection::run(std::string_view sql, std::span<const Value> params,
                                  ResultSet* out) {
  ensure_usable();
  if (sql.size() > static_cast<std::size_t>(std::numeric_limits<SQLINTEGER>::max())) {
    throw Error(ErrorCode::invalid_argument, "odbc: the SQL text is longer than 2 GiB");
  }
  bool cached = false;
  void* stmt = acquire_statement(sql, &cached);
  std::uint64_t affected = 0;
  try {
    affected = run_on(stmt, sql, params, out);
  } catch (...) {
    // A statement that failed may be left in a state only its driver understands: start afresh.
    SQLFreeHandle(SQL_HANDLE_STMT, as_stmt(stmt));
    throw;
  }
  if (cache_capacity_ > 0 && sql.size() <= kMaxCachedSqlSize) {
    pending_sql_.assign(sql);
    release_statement(stmt, cached);
  } else {
    SQLFreeHandle(SQL_HANDLE_STMT, as_stmt(stmt));
  }
  track_transaction_sql(sql);
  return affected;
}

std::uint64_t OdbcConnection::run_on(void* handle, std::string_view sql,
                                     std::span<const Value> params, ResultSet* out) {
  const SQLHSTMT stmt = as_stmt(handle);
  const CloseOnExit guard{stmt};

  SQLSMALLINT wanted = 0;
  // Drivers that cannot count placeholders leave the check to the database.
  if (ok(SQLNumParams(stmt, &wanted)) && static_cast<std::size_t>(wanted) != params.size()) {
    throw Error(ErrorCode::invalid_argument,
                "odbc: statement has " + std::to_string(wanted) + " placeholders, got " +
                    std::to_string(params.size()) + " parameters: " + shorten(sql));
  }

  std::vector<ParamBuffer> buffers(params.size());
  static char empty_text[1] = {0};
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Value& v = params[i];
    ParamBuffer& b = buffers[i];
    SQLSMALLINT c_type = SQL_C_CHAR, sql_type = SQL_VARCHAR;
    SQLULEN column_size = 1;
    SQLPOINTER data = empty_text;
    SQLLEN buffer_length = 0;
    switch (v.type()) {
      case ValueType::null:
        b.indicator = SQL_NULL_DATA;
        break;
      case ValueType::boolean:
        b.bit = v.as<bool>() ? 1 : 0;
        c_type = SQL_C_BIT;
        sql_type = SQL_BIT;
        data = &b.bit;
        b.indicator = sizeof b.bit;
        break;
      case ValueType::integer:
        b.integer = v.as<std::int64_t>();
        c_type = SQL_C_SBIGINT;
        sql_type = SQL_BIGINT;
        column_size = 19;
        data = &b.integer;
        b.indicator = sizeof b.integer;
        break;
      case ValueType::real:
        b.real = v.as<double>();
        c_type = SQL_C_DOUBLE;
        sql_type = SQL_DOUBLE;
        column_size = 15;
        data = &b.real;
        b.indicator = sizeof b.real;
        break;
      case ValueType::text: {
        // UTF-8 as SQL_C_CHAR: every driver tested passes it through (docs/odbc.md, "Types").
        const auto text = v.as<std::string_view>();
        sql_type = text.size() > kLongDataThreshold ? SQL_LONGVARCHAR : SQL_VARCHAR;
        column_size = std::max<SQLULEN>(1, text.size());
        if (!text.empty()) data = const_cast<char*>(text.data());
        buffer_length = static_cast<SQLLEN>(text.size());
        b.indicator = static_cast<SQLLEN>(text.size());
        break;
      }
      case ValueType::bytes: {
        b.bytes = v.as<Bytes>();  // Value hands out bytes only as a copy: keep it alive here
        c_type = SQL_C_BINARY;
        sql_type = b.bytes.size() > kLongDataThreshold ? SQL_LONGVARBINARY : SQL_VARBINARY;
        column_size = std::max<SQLULEN>(1, b.bytes.size());
        if (!b.bytes.empty()) data = b.bytes.data();
        buffer_length = static_cast<SQLLEN>(b.bytes.size());
        b.indicator = static_cast<SQLLEN>(b.bytes.size());
        break;
      }
    }
    const SQLRETURN rc =
        SQLBindParameter(stmt, static_cast<SQLUSMALLINT>(i + 1), SQL_PARAM_INPUT, c_type, sql_type,
                         column_size, 0, data, buffer_length, &b.indicator);
    if (!ok(rc)) fail(SQL_HANDLE_STMT, stmt, "bind parameter " + std::to_string(i + 1), sql);
  }

  SQLRETURN rc = SQLExecute(stmt);
  if (rc != SQL_NO_DATA && !ok(rc)) fail(SQL_HANDLE_STMT, stmt, "execute", sql);

  std::uint64_t affected = 0;
  bool have_rows = false;
  for (;;) {
    SQLSMALLINT columns = 0;
    if (rc != SQL_NO_DATA && !ok(SQLNumResultCols(stmt, &columns))) {
      fail(SQL_HANDLE_STMT, stmt, "describe", sql);
    }
    if (columns > 0) {
      // A statement returning rows changed none; a later result set replaces an earlier one.
      have_rows = true;
      std::vector<std::string> names;
      std::vector<SQLSMALLINT> types;
      std::vector<bool> is_unsigned;
      for (SQLUSMALLINT c = 1; c <= static_cast<SQLUSMALLINT>(columns); ++c) {
        std::array<SQLCHAR, 256> name{};
        SQLSMALLINT name_len = 0, type = 0, digits = 0, nullable = 0;
        SQLULEN size = 0;
        if (!ok(SQLDescribeCol(stmt, c, name.data(), static_cast<SQLSMALLINT>(name.size()),
                               &name_len, &type, &size, &digits, &nullable))) {
          fail(SQL_HANDLE_STMT, stmt, "describe column", sql);
        }
        names.emplace_back(reinterpret_cast<const char*>(name.data()));
        types.push_back(type);
        SQLLEN unsigned_attr = SQL_FALSE;
        SQLColAttribute(stmt, c, SQL_DESC_UNSIGNED, nullptr, 0, nullptr, &unsigned_attr);
        is_unsigned.push_back(unsigned_attr == SQL_TRUE);
      }
      std::vector<Row> rows;
      for (;;) {
        const SQLRETURN f = SQLFetch(stmt);
        if (f == SQL_NO_DATA) break;
        if (!ok(f)) fail(SQL_HANDLE_STMT, stmt, "fetch", sql);
        if (out == nullptr) continue;
        std::vector<Value> values;
        values.reserve(static_cast<std::size_t>(columns));
        for (SQLUSMALLINT c = 1; c <= static_cast<SQLUSMALLINT>(columns); ++c) {
          values.push_back(read_column(stmt, c, types[c - 1], is_unsigned[c - 1], sql));
        }
        rows.emplace_back(std::move(values));
      }
      if (out != nullptr) *out = ResultSet(std::move(names), std::move(rows), 0);
    } else if (rc != SQL_NO_DATA) {
      SQLLEN count = 0;
      if (ok(SQLRowCount(stmt, &count)) && count > 0) affected += static_cast<std::uint64_t>(count);
    }
    rc = SQLMoreResults(stmt);
    if (rc == SQL_NO_DATA) break;
    if (!ok(rc)) fail(SQL_HANDLE_STMT, stmt, "next result", sql);
  }
  if (out != nullptr) {
    if (!have_rows) *out = ResultSet({}, {}, affected);
  }
  return affected;
}

Value OdbcConnection::read_column(void* handle, unsigned short column, short type, bool is_unsigned,
                                  std::string_view sql) {
  const SQLHSTMT stmt = as_stmt(handle);
  SQLLEN indicator = 0;
  switch (type) {
    case SQL_TINYINT:
    case SQL_SMALLINT:
    case SQL_INTEGER:
    case SQL_BIGINT: {
      // An unsigned BIGINT may not fit an int64: it comes back as text, as DECIMAL does.
      if (type == SQL_BIGINT && is_unsigned) break;
      SQLBIGINT v = 0;
      if (!ok(SQLGetData(stmt, column, SQL_C_SBIGINT, &v, sizeof v, &indicator))) {
        fail(SQL_HANDLE_STMT, stmt, "read column " + std::to_string(column), sql);
      }
      return indicator == SQL_NULL_DATA ? Value() : Value(static_cast<std::int64_t>(v));
    }
    case SQL_REAL:
    case SQL_FLOAT:
    case SQL_DOUBLE: {
      double v = 0;
      if (!ok(SQLGetData(stmt, column, SQL_C_DOUBLE, &v, sizeof v, &indicator))) {
        fail(SQL_HANDLE_STMT, stmt, "read column " + std::to_string(column), sql);
      }
      return indicator == SQL_NULL_DATA ? Value() : Value(v);
    }
    case SQL_BIT: {
      unsigned char v = 0;
      if (!ok(SQLGetData(stmt, column, SQL_C_BIT, &v, sizeof v, &indicator))) {
        fail(SQL_HANDLE_STMT, stmt, "read column " + std::to_string(column), sql);
      }
      return indicator == SQL_NULL_DATA ? Value() : Value(v != 0);
    }
    default:
      break;
  }
  const bool binary = type == SQL_BINARY || type == SQL_VARBINARY || type == SQL_LONGVARBINARY;
  const SQLSMALLINT c_type = binary ? SQL_C_BINARY : SQL_C_CHAR;
  const std::size_t terminator = binary ? 0 : 1;  // SQL_C_CHAR chunks end in a NUL
  std::string data;
  std::array<char, kChunk> buf;
  for (;;) {
    const SQLRETURN rc =
        SQLGetData(stmt, column, c_type, buf.data(), static_cast<SQLLEN>(buf.size()), &indicator);
    if (rc == SQL_NO_DATA) break;  // every chunk read
    if (!ok(rc)) fail(SQL_HANDLE_STMT, stmt, "read column " + std::to_string(column), sql);
    if (indicator == SQL_NULL_DATA) return Value();
    const std::size_t room = buf.size() - terminator;
    const std::size_t n = indicator == SQL_NO_TOTAL || static_cast<std::size_t>(indicator) > room
                              ? room
                              : static_cast<std::size_t>(indicator);
    data.append(buf.data(), n);
    if (rc == SQL_SUCCESS) break;  // SQL_SUCCESS_WITH_INFO (01004): more to come
  }
  if (binary) {
    const auto* p = reinterpret_cast<const std::byte*>(data.data());
    return Value(Bytes(p, p + data.size()));
  }
  return Value(std::move(data));
}

void OdbcConnection::ensure_usable() const {
  if (broken_) {
    throw Error(
        ErrorCode::connection_lost,
        "odbc: the connection is broken (an earlier error found the link gone) on " + where_);
  }
}

void OdbcConnection::fail(short handle_type, void* handle, std::string_view what,
                          std::string_view sql) {
  const odbc::Diagnostics d = odbc::read_diagnostics(handle_type, handle);
  ErrorCode code = odbc::map_sqlstate(d.sqlstate, odbc::Phase::session);
  if (code != ErrorCode::connection_lost && connection_dead()) code = ErrorCode::connection_lost;
  std::string message = "odbc: " + std::string(what) +
                        " failed: " + odbc::scrub(d.message, secret_) + " (SQLSTATE " +
                        (d.sqlstate.empty() ? std::string("none") : d.sqlstate) + ", native " +
                        std::to_string(d.native_code) + ")";
  if (code == ErrorCode::connection_lost) {
    broken_ = true;
    message += "; the connection is discarded (" + where_ + ")";
  }
  if (!sql.empty()) message += "; in: " + shorten(sql);
  throw Error(code, message, {.sqlstate = d.sqlstate, .native_code = d.native_code});
}

}  // namespace reservoir::drivers
