// odbc_connection.hpp: one ODBC session (a connection handle of unixODBC) behind
// reservoir::Connection, keeping its recently used statements prepared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "reservoir/connection.hpp"
#include "reservoir/value.hpp"

namespace reservoir::drivers {
namespace odbc {
struct Diagnostics;
}

// What a statement sent through execute() does to an SQL-level transaction: BEGIN / START
// TRANSACTION begins one; COMMIT, END, ROLLBACK (with an optional WORK / TRANSACTION) end it,
// except ROLLBACK ... TO [SAVEPOINT] s and ... AND CHAIN, which keep one open.
enum class TxEffect { none, begins, ends };
TxEffect transaction_effect(std::string_view sql) noexcept;

// Placeholders: ODBC's positional ?. The count must match the statement's (SQLNumParams), else
// invalid_argument. Values bind as NULL, SQL_BIT, SQL_BIGINT, SQL_DOUBLE, UTF-8 text (SQL_C_CHAR)
// and SQL_C_BINARY. Result columns are typed by SQLDescribeCol (see docs/odbc.md, "Types").
//
// Transactions: autocommit is on outside begin(); begin() turns it off, commit() and rollback()
// end the transaction with SQLEndTran and turn it back on. A BEGIN / START TRANSACTION sent
// through execute() is noticed too (in_transaction() is then true until a COMMIT, END or ROLLBACK
// is sent, or rollback() sends one; see transaction_effect()).
//
// Errors: query_failed with the SQLSTATE and native code of the first diagnostic record,
// invalid_argument (parameter count), connection_lost for 08S01, 08003, 08007, HYT01, 57P01-03
// or when the driver reports the connection dead; the connection is then broken() and every
// later call throws connection_lost.
//
// Thread safety: one thread at a time, as every Connection.
class OdbcConnection final : public Connection {
 public:
  static constexpr std::size_t kDefaultStatementCacheSize = 20;

  // Takes ownership of dbc, a connected SQLHDBC. where is the redacted DSN for messages; secret
  // (the PWD value) is scrubbed from every message. stmt_cache_size 0 disables the cache.
  OdbcConnection(void* dbc, std::size_t stmt_cache_size, std::string where, std::string secret);
  ~OdbcConnection() override;

  std::uint64_t execute_params(std::string_view sql, std::span<const Value> params) override;
  ResultSet query_params(std::string_view sql, std::span<const Value> params) override;

  // begin() inside a transaction throws query_failed (ODBC has no nested transactions).
  void begin() override;
  void commit() override;
  // A no-op outside a transaction.
  void rollback() override;
  bool in_transaction() const noexcept override { return tx_ != TxState::none; }
  bool broken() const noexcept override { return broken_; }

  // Reads SQL_ATTR_CONNECTION_DEAD, then runs the ping query (ping_sql()) with
  // SQL_ATTR_QUERY_TIMEOUT set to the timeout rounded up to whole seconds (0: no limit). Throws
  // connection_lost (and marks the connection broken) when either fails. The timeout is applied
  // by the server: on a stalled link ping() blocks until the OS drops the TCP connection (see
  // docs/odbc.md, "Liveness").
  void ping(std::chrono::milliseconds timeout) override;

  // Rolls back, frees the cached statements, then asks the driver for SQL_ATTR_RESET_CONNECTION;
  // when the driver refuses it, PostgreSQL gets DISCARD ALL and other databases nothing more
  // (see docs/odbc.md, "Reset"). Errors as execute().
  void reset() override;

  void* native_handle() noexcept override { return dbc_; }
  std::string_view driver_name() const noexcept override { return "odbc"; }

  // The DBMS the driver reports (SQLGetInfo SQL_DBMS_NAME), e.g. "PostgreSQL", "SQLite".
  const std::string& dbms_name() const noexcept { return dbms_name_; }
  // The statement pings run: "SELECT 1" for every DBMS tested so far.
  const std::string& ping_sql() const noexcept { return ping_sql_; }
  // How many prepared statements the cache holds now.
  std::size_t cached_statements() const noexcept { return cache_.size(); }
  // Whether the last reset() used SQL_ATTR_RESET_CONNECTION (false: the fallback).
  bool last_reset_was_native() const noexcept { return last_reset_native_; }

 private:
  enum class TxState { none, api, sql };  // api: begin(); sql: a BEGIN sent through execute()

  struct CachedStatement {
    std::string sql;
    void* stmt = nullptr;
  };
  using CacheList = std::list<CachedStatement>;  // most recently used first

  // Runs sql (prepared, from the cache when possible); fills *out when out is set.
  std::uint64_t run(std::string_view sql, std::span<const Value> params, ResultSet* out);
  std::uint64_t run_on(void* stmt, std::string_view sql, std::span<const Value> params,
                       ResultSet* out);
  // Takes sql's statement out of the cache, or prepares a new one. The caller owns it then.
  void* acquire_statement(std::string_view sql, bool* cached);
  // Puts stmt (prepared from pending_sql_) first in the cache, evicting the least recently used.
  void release_statement(void* stmt, bool cached) noexcept;
  Value read_column(void* stmt, unsigned short column, short type, bool is_unsigned,
                    std::string_view sql);
  void cache_clear() noexcept;
  void end_transaction(bool commit);
  void track_transaction_sql(std::string_view sql) noexcept;

  void ensure_usable() const;
  // Throws the Error for the diagnostics of handle (a statement or this connection), marking the
  // connection broken when they (or SQL_ATTR_CONNECTION_DEAD) say the link is gone.
  [[noreturn]] void fail(short handle_type, void* handle, std::string_view what,
                         std::string_view sql);
  bool connection_dead() noexcept;
  // Runs sql once on a statement of its own (not cached), fetching a first row if it returns
  // rows; the query timeout applies when not zero. The diagnostics if it failed.
  std::optional<odbc::Diagnostics> exec_direct(const std::string& sql,
                                               std::chrono::milliseconds timeout);

  void* dbc_;
  const std::size_t cache_capacity_;
  const std::string where_;
  const std::string secret_;
  std::string dbms_name_;
  std::string ping_sql_ = "SELECT 1";
  bool broken_ = false;
  bool last_reset_native_ = false;
  bool statements_survive_transactions_ = true;  // SQL_CURSOR_{COMMIT,ROLLBACK}_BEHAVIOR
  std::string pending_sql_;                      // the key release_statement() files under
  TxState tx_ = TxState::none;
  CacheList cache_;
  std::unordered_map<std::string_view, CacheList::iterator> cache_index_;  // keys view into cache_
};

}  // namespace reservoir::drivers
