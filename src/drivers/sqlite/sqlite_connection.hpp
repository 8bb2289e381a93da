// sqlite_connection.hpp: one SQLite session behind reservoir::Connection, keeping its recently
// used statements prepared because pooled connections run the same few statements over and over.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "reservoir/connection.hpp"
#include "reservoir/value.hpp"

// SQLite's handle types, declared the way sqlite3.h declares them, so that this header does not
// pull the vendor header into its includers.
struct sqlite3;
struct sqlite3_stmt;

namespace reservoir::drivers {

// Placeholders: SQLite's own ?, ?NNN, $NNN and :name. A parameter named $N or ?N takes
// params[N-1], so "$2, $1" and a repeated "$1" mean what they mean in PostgreSQL; every other
// placeholder takes the parameter at its position. SQL text holding several statements runs them
// in order when no parameters are given (execute() returns the total of changed rows, query()
// the last statement's rows).
//
// Errors: query_failed (native_code = SQLite extended result code; no SQLSTATE), invalid_argument
// (parameter count), connection_lost when SQLite reports the database unusable (corrupt, not a
// database, I/O error); the connection is then broken() and every later call throws
// connection_lost.
//
// Thread safety: one thread at a time, as every Connection.
class SqliteConnection final : public Connection {
 public:
  // How many prepared statements a connection keeps, least recently used dropped first.
  static constexpr std::size_t kStatementCacheSize = 16;

  // Takes ownership of db, an open handle already configured by SqliteDriver. reset() restores
  // busy_timeout_ms.
  SqliteConnection(sqlite3* db, int busy_timeout_ms) noexcept;
  ~SqliteConnection() override;

  std::uint64_t execute_params(std::string_view sql, std::span<const Value> params) override;
  ResultSet query_params(std::string_view sql, std::span<const Value> params) override;

  void begin() override;
  void commit() override;
  // A no-op outside a transaction: SQLite itself rolls back on some errors (SQLITE_FULL,
  // SQLITE_IOERR, ...), and a scope's rollback should not then fail.
  void rollback() override;
  bool in_transaction() const noexcept override;
  bool broken() const noexcept override { return broken_; }

  // Steps "SELECT 1". Throws connection_lost (and marks the connection broken) on failure.
  void ping(std::chrono::milliseconds timeout) override;

  // Rolls back, drops the prepared statements, drops TEMP tables, views and triggers, detaches
  // attached databases and restores busy_timeout. Errors as execute().
  void reset() override;

  void* native_handle() noexcept override { return db_; }
  std::string_view driver_name() const noexcept override { return "sqlite"; }

 private:
  struct CachedStatement {
    std::string sql;
    sqlite3_stmt* stmt = nullptr;
    std::uint64_t last_used = 0;
  };

  // Runs every statement in sql; fills *out with the last statement's rows when out is set.
  // Single statements are cached when use_cache is set.
  std::uint64_t run(std::string_view sql, std::span<const Value> params, ResultSet* out,
                    bool use_cache);
  // Binds, steps to the end and resets stmt (also when it throws).
  std::uint64_t run_statement(sqlite3_stmt* stmt, std::string_view sql,
                              std::span<const Value> params, ResultSet* out);
  void bind_params(sqlite3_stmt* stmt, std::span<const Value> params, std::vector<Bytes>& blobs);

  sqlite3_stmt* cache_find(std::string_view sql) noexcept;
  sqlite3_stmt* cache_insert(std::string_view sql, sqlite3_stmt* stmt);
  void cache_clear() noexcept;

  void drop_temp_objects();
  void detach_databases();

  void ensure_usable() const;
  // Throws the Error for SQLite result code rc (marking the connection broken when rc says the
  // database is unusable). sql is quoted, shortened, in the message.
  [[noreturn]] void fail(int rc, std::string_view sql);

  sqlite3* db_;
  const int busy_timeout_ms_;
  bool broken_ = false;
  std::vector<CachedStatement> cache_;
  std::uint64_t use_counter_ = 0;  // stamps CachedStatement::last_used
};

}  // namespace reservoir::drivers
