// mariadb_connection.hpp: one MariaDB / MySQL session (a Connector/C MYSQL handle) behind
// reservoir::Connection, keeping its recently used statements prepared on the server.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "reservoir/connection.hpp"
#include "reservoir/value.hpp"

// Connector/C's handle types, declared as mysql.h declares them, so that this header does not
// pull the vendor header into its includers.
struct st_mysql;
struct st_mysql_stmt;

namespace reservoir::drivers {

class MariaDbStatementOp;

// Statements: placeholders are `?` (MariaDB's own; $1 is not translated). Every statement runs
// as a server-side prepared statement with bound parameters: NULL, bool (as TINYINT 0/1),
// integers (BIGINT), double (DOUBLE), text (string in the connection's character set), bytes
// (BLOB, binary). One statement per call (no multi-statement text). Statements the prepared
// protocol refuses (ER_UNSUPPORTED_PS) run as text queries when they have no parameters.
//
// Results are typed by column: TINYINT..BIGINT, MEDIUMINT, YEAR -> integer (BIGINT UNSIGNED
// above INT64_MAX -> its decimal text); FLOAT, DOUBLE -> real; binary strings and BLOBs
// (character set 63, binary) -> bytes; NULL -> NULL; everything else (DECIMAL, dates, times,
// JSON, text) -> text. BOOLEAN is TINYINT: read it with as<bool>().
//
// Prepared statements: up to stmt_cache_size per connection, keyed by SQL text, least recently
// used closed first; reset() closes them all.
//
// Errors: query_failed (sqlstate() = mysql_sqlstate, native_code() = mysql_errno; the message
// has the server's text and the SQL), invalid_argument (parameter count), connection_lost when
// the link fails (2006 server gone, 2013 lost, 1927 killed, SQLSTATE class 08): the connection
// is then broken() and every later call throws connection_lost.
//
// Thread safety: one thread at a time, as every Connection.
class MariaDbConnection final : public Connection {
 public:
  // ping()'s limit when the caller gives none.
  static constexpr std::chrono::milliseconds kDefaultPingTimeout{5'000};
  // Longer SQL is run but not kept prepared.
  static constexpr std::size_t kMaxCachedSqlSize = 16 * 1024;

  // Takes ownership of mysql, a connected handle opened with MYSQL_OPT_NONBLOCK (ping() uses
  // the non-blocking API for its deadline). stmt_cache_size 0 disables the cache. where (the
  // redacted DSN) names the connection in error messages.
  MariaDbConnection(st_mysql* mysql, std::size_t stmt_cache_size, std::string where) noexcept;
  ~MariaDbConnection() override;

  std::uint64_t execute_params(std::string_view sql, std::span<const Value> params) override;
  ResultSet query_params(std::string_view sql, std::span<const Value> params) override;

  void begin() override;
  void commit() override;
  // A no-op outside a transaction.
  void rollback() override;
  // The server's SERVER_STATUS_IN_TRANS flag from its last answer.
  bool in_transaction() const noexcept override;
  bool broken() const noexcept override;

  // mysql_ping through the non-blocking API, waiting up to timeout (0: kDefaultPingTimeout)
  // for the answer. Throws connection_lost (and marks the connection broken) when it fails or
  // times out. Never reconnects (MYSQL_OPT_RECONNECT is off).
  void ping(std::chrono::milliseconds timeout) override;
  using Connection::ping;

  // mysql_reset_connection (COM_RESET_CONNECTION, as Connector/C's pool_reset_connection):
  // rolls back, drops temporary tables, user variables, session settings, prepared statements
  // and locks. The statement cache is closed first. Errors as execute().
  void reset() override;

  // The same statement as execute_params / query_params (same cache, errors and results) over
  // Connector/C's non-blocking API; see MariaDbStatementOp and docs/mariadb.md.
  std::unique_ptr<StatementOp> start_statement(std::string_view sql, std::span<const Value> params,
                                               bool want_rows) override;

  void* native_handle() noexcept override { return mysql_; }
  std::string_view driver_name() const noexcept override { return "mariadb"; }

 private:
  friend class MariaDbStatementOp;  // the non-blocking form of run(): shares cache and errors

  struct CachedStatement {
    std::string sql;
    st_mysql_stmt* stmt;
  };
  using CacheList = std::list<CachedStatement>;  // most recently used first

  std::uint64_t run(std::string_view sql, std::span<const Value> params, ResultSet* out);
  // One attempt; sets *stale (and runs nothing more) when a cached statement's result columns
  // changed and the statement may simply run again (may_retry, no transaction open).
  std::uint64_t run_once(std::string_view sql, std::span<const Value> params, ResultSet* out,
                         bool may_retry, bool* stale);
  // The text protocol, for statements the prepared protocol refuses.
  std::uint64_t run_text(std::string_view sql, ResultSet* out);
  // Runs sql through the text protocol and expects no rows (BEGIN, COMMIT, ...).
  void run_command(std::string_view sql);
  // A prepared statement for sql: from the cache, or freshly prepared (and cached unless
  // *owned is set, in which case the caller closes it).
  // *hit tells whether it came from the cache.
  st_mysql_stmt* prepare(std::string_view sql, bool* owned, bool* unsupported, bool* hit);
  // Whether sql is kept prepared (the cache is on and sql not too long).
  bool cacheable(std::string_view sql) const noexcept;
  // The cached statement for sql (now the most recently used), or nullptr.
  st_mysql_stmt* cache_find(std::string_view sql);
  // Caches stmt, freshly prepared for sql (which must be cacheable), closing the least recently
  // used statement when full.
  void cache_add(std::string_view sql, st_mysql_stmt* stmt);
  // After a failed mysql_stmt_prepare: true (stmt closed) when the prepared protocol refuses sql
  // (ER_UNSUPPORTED_PS, run it as text); else closes stmt and throws the error.
  bool prepare_refused(st_mysql_stmt* stmt, std::string_view sql);
  // A cached statement's execution failed with CR_NEW_STMT_METADATA: closes and uncaches it,
  // then true when sql may simply run again freshly prepared (it only reads, no transaction was
  // open, may_retry), else throws query_failed (2057).
  bool stale_may_rerun(st_mysql_stmt* stmt, std::string_view sql, bool was_idle, bool may_retry);
  // Removes stmt from the cache (if there) and closes it.
  void cache_erase(st_mysql_stmt* stmt) noexcept;

  void cache_clear() noexcept;
  void ensure_usable() const;
  // Throws the Error for the last failure of the handle (stmt null) or of stmt.
  [[noreturn]] void fail(st_mysql_stmt* stmt, std::string_view sql);
  [[noreturn]] void lost(const std::string& what);

  st_mysql* const mysql_;
  const std::size_t cache_capacity_;
  const std::string where_;
  bool broken_ = false;
  CacheList cache_;
  std::unordered_map<std::string_view, CacheList::iterator> cache_index_;  // keys view into cache_
};

}  // namespace reservoir::drivers
