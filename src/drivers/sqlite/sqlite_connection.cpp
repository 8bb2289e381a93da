// sqlite_connection.cpp: statements, typed values, transactions and session reset on one SQLite
// handle, with an LRU cache of prepared statements.
#include "drivers/sqlite/sqlite_connection.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>
#include <utility>

#include "reservoir/error.hpp"

namespace reservoir::drivers {
namespace {

// sqlite3_changes64 and friends arrived in 3.37; older libraries only count in int.
#if SQLITE_VERSION_NUMBER >= 3037000
std::int64_t changes(sqlite3* db) { return sqlite3_changes64(db); }
std::int64_t total_changes(sqlite3* db) { return sqlite3_total_changes64(db); }
#else
std::int64_t changes(sqlite3* db) { return sqlite3_changes(db); }
std::int64_t total_changes(sqlite3* db) { return sqlite3_total_changes(db); }
#endif

constexpr std::size_t kSqlInMessage = 200;
// Longer SQL is run but not cached: generated bulk statements would pin their text and plan.
constexpr std::size_t kMaxCachedSqlSize = 16 * 1024;

// Owns a statement that is not (or not yet) in the cache.
struct StatementOwner {
  sqlite3_stmt* stmt = nullptr;
  StatementOwner() = default;
  StatementOwner(const StatementOwner&) = delete;
  StatementOwner& operator=(const StatementOwner&) = delete;
  ~StatementOwner() { sqlite3_finalize(stmt); }
  sqlite3_stmt* release() noexcept { return std::exchange(stmt, nullptr); }
};

// Leaves a statement reusable and bound to nothing, however its run ended: reset also ends the
// implicit read transaction, so an idle cached statement never holds a lock or a WAL snapshot,
// and clearing the bindings drops the pointers into the caller's parameters (bound
// SQLITE_STATIC).
struct ResetOnExit {
  sqlite3_stmt* stmt;
  ~ResetOnExit() {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  }
};

// True when what follows a statement is only whitespace, comments and empty statements.
bool only_comments(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == ';') {
      ++i;
    } else if (s.substr(i, 2) == "--") {
      const std::size_t end = s.find('\n', i);
      i = end == std::string_view::npos ? s.size() : end + 1;
    } else if (s.substr(i, 2) == "/*") {
      const std::size_t end = s.find("*/", i + 2);
      i = end == std::string_view::npos ? s.size() : end + 2;
    } else {
      return false;
    }
  }
  return true;
}

// The parameter a placeholder takes: N-1 for $N and ?N, else its own position (index is 1-based).
std::size_t param_slot(sqlite3_stmt* stmt, int index) {
  const char* name = sqlite3_bind_parameter_name(stmt, index);
  if (name != nullptr && (name[0] == '$' || name[0] == '?') && name[1] != '\0') {
    const std::string_view digits(name + 1);
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec == std::errc() && end == digits.data() + digits.size() && n > 0) return n - 1;
  }
  return static_cast<std::size_t>(index - 1);
}

// The first kSqlInMessage bytes of sql, not cutting a UTF-8 character in two.
std::string shorten(std::string_view sql) {
  if (sql.size() <= kSqlInMessage) return std::string(sql);
  std::size_t n = kSqlInMessage;
  while (n > 0 && (static_cast<unsigned char>(sql[n]) & 0xC0) == 0x80) --n;
  return std::string(sql.substr(0, n)) + "...";
}

// A double-quoted SQL identifier.
std::string quote_identifier(std::string_view name) {
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

Value column_value(sqlite3_stmt* stmt, int i) {
  switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
      return Value(static_cast<std::int64_t>(sqlite3_column_int64(stmt, i)));
    case SQLITE_FLOAT:
      return Value(sqlite3_column_double(stmt, i));
    case SQLITE_TEXT: {
      // The pointer first, then the size: that order keeps SQLite from converting twice.
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
      const auto n = static_cast<std::size_t>(sqlite3_column_bytes(stmt, i));
      return Value(std::string(p != nullptr ? p : "", p != nullptr ? n : 0));
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const std::byte*>(sqlite3_column_blob(stmt, i));
      const auto n = static_cast<std::size_t>(sqlite3_column_bytes(stmt, i));
      return p != nullptr ? Value(Bytes(p, p + n)) : Value(Bytes{});
    }
    default:
      return Value();
  }
}

}  // namespace

SqliteConnection::SqliteConnection(sqlite3* db, int busy_timeout_ms) noexcept
    : db_(db), busy_timeout_ms_(busy_timeout_ms) {
  cache_.reserve(kStatementCacheSize);
}

SqliteConnection::~SqliteConnection() {
  cache_clear();
  // close_v2 rather than close: it cannot fail with SQLITE_BUSY over a statement we missed.
  sqlite3_close_v2(db_);
}

std::uint64_t SqliteConnection::execute_params(std::string_view sql,
                                               std::span<const Value> params) {
  return run(sql, params, nullptr, /*use_cache=*/true);
}

ResultSet SqliteConnection::query_params(std::string_view sql, std::span<const Value> params) {
  ResultSet out;
  run(sql, params, &out, /*use_cache=*/true);
  return out;
}

void SqliteConnection::begin() { run("BEGIN", {}, nullptr, true); }

void SqliteConnection::commit() { run("COMMIT", {}, nullptr, true); }

void SqliteConnection::rollback() {
  if (in_transaction()) run("ROLLBACK", {}, nullptr, true);
}

bool SqliteConnection::in_transaction() const noexcept { return sqlite3_get_autocommit(db_) == 0; }

// The database is a local file: there is no network to time out on, so the timeout is moot.
void SqliteConnection::ping(std::chrono::milliseconds /*timeout*/) {
  ensure_usable();
  try {
    run("SELECT 1", {}, nullptr, true);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::connection_lost) throw;
    broken_ = true;
    throw Error(ErrorCode::connection_lost, std::string("ping failed: ") + e.what(),
                {.native_code = e.native_code()});
  }
}

void SqliteConnection::reset() {
  ensure_usable();
  rollback();
  // A fresh session has no prepared statements either: none may refer to the TEMP objects and
  // attached databases dropped below, and what one lease prepared should not stay with the next.
  cache_clear();
  drop_temp_objects();
  detach_databases();
  sqlite3_busy_timeout(db_, busy_timeout_ms_);
}

void SqliteConnection::drop_temp_objects() {
  ResultSet objects;
  // Triggers first (a TEMP trigger may sit on a main table), then views, then tables; their
  // indexes go with the tables. sqlite_* tables belong to SQLite and cannot be dropped.
  run("SELECT type, name FROM temp.sqlite_master"
      " WHERE type IN ('trigger', 'view', 'table') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
      " ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'view' THEN 1 ELSE 2 END",
      {}, &objects, /*use_cache=*/false);
  if (objects.empty()) return;
  std::string script;
  for (const Row& row : objects) {
    const auto type = row[0].as<std::string_view>();
    const auto name = row[1].as<std::string_view>();
    script += type == "trigger" ? "DROP TRIGGER IF EXISTS temp."
              : type == "view"  ? "DROP VIEW IF EXISTS temp."
                                : "DROP TABLE IF EXISTS temp.";
    script += quote_identifier(name);
    script += ";\n";
  }
  run(script, {}, nullptr, /*use_cache=*/false);
}

void SqliteConnection::detach_databases() {
  ResultSet databases;
  run("PRAGMA database_list", {}, &databases, /*use_cache=*/false);
  const std::size_t name_column = databases.column_index("name");
  for (const Row& row : databases) {
    const auto name = row[name_column].as<std::string>();
    if (name == "main" || name == "temp") continue;
    const Value param(name);
    run("DETACH DATABASE ?", std::span<const Value>(&param, 1), nullptr, /*use_cache=*/false);
  }
}

std::uint64_t SqliteConnection::run(std::string_view sql, std::span<const Value> params,
                                    ResultSet* out, bool use_cache) {
  ensure_usable();
  if (sql.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw Error(ErrorCode::invalid_argument, "sqlite: the SQL text is longer than 2 GiB");
  }
  if (use_cache) {
    if (sqlite3_stmt* stmt = cache_find(sql)) return run_statement(stmt, sql, params, out);
  }

  std::string_view rest = sql;
  // Prepares the next statement of rest, skipping empty ones, and advances rest past it.
  const auto prepare_next = [&](StatementOwner& owner) {
    while (owner.stmt == nullptr && !rest.empty()) {
      const char* tail = nullptr;
      const int rc =
          sqlite3_prepare_v2(db_, rest.data(), static_cast<int>(rest.size()), &owner.stmt, &tail);
      if (rc != SQLITE_OK) fail(rc, sql);
      const auto used = static_cast<std::size_t>(tail - rest.data());
      if (used == 0) break;  // nothing consumed: only whitespace or comments are left
      rest.remove_prefix(used);
    }
  };

  StatementOwner first;
  prepare_next(first);
  if (first.stmt == nullptr) {  // no statement at all, e.g. "" or a comment
    if (!params.empty()) {
      throw Error(ErrorCode::invalid_argument, "sqlite: statement has 0 placeholders, got " +
                                                   std::to_string(params.size()) + " parameters");
    }
    if (out != nullptr) *out = ResultSet();
    return 0;
  }
  if (only_comments(rest)) {
    if (!use_cache || sql.size() > kMaxCachedSqlSize) {
      return run_statement(first.stmt, sql, params, out);
    }
    sqlite3_stmt* stmt = cache_insert(sql, first.release());
    return run_statement(stmt, sql, params, out);
  }

  // Several statements: each is prepared only after the one before it ran, since it may use
  // what that one created.
  if (!params.empty()) {
    throw Error(
        ErrorCode::invalid_argument,
        "sqlite: parameters need a single statement, the SQL holds several: " + shorten(sql));
  }
  std::uint64_t total = 0;
  StatementOwner current;
  current.stmt = first.release();
  while (current.stmt != nullptr) {
    total += run_statement(current.stmt, sql, {}, out);
    sqlite3_finalize(current.release());
    prepare_next(current);
  }
  return total;
}

std::uint64_t SqliteConnection::run_statement(sqlite3_stmt* stmt, std::string_view sql,
                                              std::span<const Value> params, ResultSet* out) {
  const ResetOnExit guard{stmt};
  std::vector<Bytes> blobs;  // keeps blob parameters alive while they are bound SQLITE_STATIC
  bind_params(stmt, params, blobs);

  std::vector<Row> rows;
  const std::int64_t changes_before = total_changes(db_);
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) fail(rc, sql);
    if (out == nullptr) continue;
    // Asked per row, not before the first step: a schema change re-prepares the statement
    // inside sqlite3_step, and "SELECT *" may then have other columns.
    const int columns = sqlite3_column_count(stmt);
    std::vector<Value> values;
    values.reserve(static_cast<std::size_t>(columns));
    for (int i = 0; i < columns; ++i) values.push_back(column_value(stmt, i));
    rows.emplace_back(std::move(values));
  }
  // sqlite3_changes() keeps the count of the last INSERT, UPDATE or DELETE, so after a CREATE or
  // a SELECT it would report an earlier statement's rows; only trust it when rows did change.
  const std::uint64_t affected =
      total_changes(db_) != changes_before ? static_cast<std::uint64_t>(changes(db_)) : 0;

  if (out != nullptr) {
    const int columns = sqlite3_column_count(stmt);
    std::vector<std::string> names;
    names.reserve(static_cast<std::size_t>(columns));
    for (int i = 0; i < columns; ++i) {
      const char* name = sqlite3_column_name(stmt, i);
      names.emplace_back(name != nullptr ? name : "");
    }
    *out = ResultSet(std::move(names), std::move(rows), affected);
  }
  return affected;
}

void SqliteConnection::bind_params(sqlite3_stmt* stmt, std::span<const Value> params,
                                   std::vector<Bytes>& blobs) {
  const int count = sqlite3_bind_parameter_count(stmt);
  std::size_t wanted = 0;
  for (int i = 1; i <= count; ++i) wanted = std::max(wanted, param_slot(stmt, i) + 1);
  if (wanted != params.size()) {
    throw Error(ErrorCode::invalid_argument,
                "sqlite: statement has " + std::to_string(wanted) + " placeholders, got " +
                    std::to_string(params.size()) + " parameters: " + shorten(sqlite3_sql(stmt)));
  }

  for (int i = 1; i <= count; ++i) {
    const Value& v = params[param_slot(stmt, i)];
    int rc = SQLITE_OK;
    switch (v.type()) {
      case ValueType::null:
        rc = sqlite3_bind_null(stmt, i);
        break;
      case ValueType::boolean:  // SQLite has no boolean type; 0/1 is its convention
        rc = sqlite3_bind_int(stmt, i, v.as<bool>() ? 1 : 0);
        break;
      case ValueType::integer:
        rc = sqlite3_bind_int64(stmt, i, v.as<std::int64_t>());
        break;
      case ValueType::real:
        rc = sqlite3_bind_double(stmt, i, v.as<double>());
        break;
      case ValueType::text: {
        // SQLITE_STATIC: the caller's Value outlives the statement's run, and the bindings are
        // cleared before run_statement returns, so SQLite need not copy the text.
        const auto text = v.as<std::string_view>();
        rc = sqlite3_bind_text64(stmt, i, text.empty() ? "" : text.data(), text.size(),
                                 SQLITE_STATIC, SQLITE_UTF8);
        break;
      }
      case ValueType::bytes: {
        // Value exposes bytes only as a copy; keep that copy alive instead of letting SQLite
        // make a second one.
        if (blobs.empty()) blobs.reserve(params.size());
        const Bytes& blob = blobs.emplace_back(v.as<Bytes>());
        // A null pointer would bind NULL, so an empty blob is bound as a zero-length zeroblob.
        rc = blob.empty() ? sqlite3_bind_zeroblob(stmt, i, 0)
                          : sqlite3_bind_blob64(stmt, i, blob.data(), blob.size(), SQLITE_STATIC);
        break;
      }
    }
    if (rc != SQLITE_OK) fail(rc, sqlite3_sql(stmt));
  }
}

sqlite3_stmt* SqliteConnection::cache_find(std::string_view sql) noexcept {
  for (CachedStatement& entry : cache_) {
    if (entry.sql.size() == sql.size() && entry.sql == sql) {
      entry.last_used = ++use_counter_;
      return entry.stmt;
    }
  }
  return nullptr;
}

sqlite3_stmt* SqliteConnection::cache_insert(std::string_view sql, sqlite3_stmt* stmt) {
  StatementOwner owner;  // finalizes stmt if the insertion below throws
  owner.stmt = stmt;
  CachedStatement* slot = nullptr;
  if (cache_.size() < kStatementCacheSize) {
    slot = &cache_.emplace_back();
  } else {
    slot = &*std::min_element(cache_.begin(), cache_.end(), [](const auto& a, const auto& b) {
      return a.last_used < b.last_used;
    });
    sqlite3_finalize(std::exchange(slot->stmt, nullptr));
  }
  slot->sql.assign(sql);
  slot->stmt = owner.release();
  slot->last_used = ++use_counter_;
  return slot->stmt;
}

void SqliteConnection::cache_clear() noexcept {
  for (CachedStatement& entry : cache_) sqlite3_finalize(entry.stmt);
  cache_.clear();
}

void SqliteConnection::ensure_usable() const {
  if (broken_) {
    throw Error(ErrorCode::connection_lost,
                "sqlite: the connection is broken (an earlier error found the database unusable)");
  }
}

void SqliteConnection::fail(int rc, std::string_view sql) {
  const int extended = sqlite3_extended_errcode(db_);
  // Prefer the handle's extended code when it refines rc (step can return the primary code).
  const int code = (extended & 0xFF) == (rc & 0xFF) ? extended : rc;
  const int primary = code & 0xFF;
  std::string message = "sqlite: ";
  message += sqlite3_errmsg(db_);
  message += " (code " + std::to_string(code) + ")";

  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB || primary == SQLITE_IOERR ||
      primary == SQLITE_CANTOPEN) {
    broken_ = true;
    throw Error(
        ErrorCode::connection_lost,
        message + "; the database is unusable, the connection is discarded; in: " + shorten(sql),
        {.native_code = code});
  }
  if (primary == SQLITE_BUSY) {
    message += " [SQLITE_BUSY: another connection holds the lock longer than busy_timeout]";
  } else if (primary == SQLITE_LOCKED) {
    message += " [SQLITE_LOCKED: conflict within this connection or its shared cache]";
  }
  throw Error(ErrorCode::query_failed, message + "; in: " + shorten(sql), {.native_code = code});
}

}  // namespace reservoir::drivers
