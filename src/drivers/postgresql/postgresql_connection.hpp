// postgresql_connection.hpp: one PostgreSQL session (a libpq PGconn) behind reservoir::Connection,
// keeping its recently used statements prepared on the server.
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
#include <vector>

#include "reservoir/connection.hpp"
#include "reservoir/nonblocking.hpp"
#include "reservoir/value.hpp"

// libpq's handle types, declared the way libpq-fe.h declares them, so that this header does not
// pull the vendor header into its includers.
struct pg_conn;
struct pg_result;

namespace reservoir::drivers::pg {
struct ResultDeleter;  // postgresql_codec.hpp
}  // namespace reservoir::drivers::pg

namespace reservoir::drivers {

// Statements and parameters: every statement with parameters goes through the extended
// protocol (parameters are bound, never spliced). Parameter types are sent with the values:
// bool -> bool, integers -> int8, double -> float8, bytes -> bytea (binary), text and NULL ->
// unknown (the server infers the type from the context, so text fills date, numeric, json, uuid
// ... columns). Where a function wants int4 (substr, left, date + n), write $1::int.
//
// Several statements in one text ("CREATE ...; INSERT ...") run through the simple protocol
// when no parameters are given: execute() returns the total of changed rows, query() the last
// statement's rows.
//
// Results are read as text and typed by column type: bool -> bool; int2, int4, int8 -> integer;
// float4, float8 -> real; text, varchar, bpchar, name -> text; bytea -> bytes; NULL -> NULL;
// every other type (numeric, date, timestamp, json, uuid, arrays, ...) -> its text form.
//
// Prepared statements: up to stmt_cache_size statements per connection are prepared under the
// names rsv_1, rsv_2, ..., keyed by SQL text and parameter types, least recently used
// DEALLOCATEd first. A cached statement that the server no longer knows (after DEALLOCATE or
// DISCARD sent through execute()) or whose result columns changed (ALTER TABLE) is prepared
// again, transparently when no transaction was open.
//
// Errors: query_failed (sqlstate() = PG_DIAG_SQLSTATE; the message has the server's message,
// DETAIL and HINT, and the SQL), invalid_argument (parameter count, NUL in text),
// connection_lost when the link fails or the server ends the session (FATAL, SQLSTATE class
// 08, 57P01..57P03): the connection is then broken() and every later call throws
// connection_lost. unsupported for COPY ... FROM STDIN / TO STDOUT (use native_handle()).
//
// Notices and warnings from the server are discarded (libpq would print them to stderr); set
// your own processor with PQsetNoticeProcessor on native_handle() to see them.
//
// Thread safety: one thread at a time, as every Connection.
class PostgresConnection final : public Connection {
 public:
  // ping()'s limit when the caller gives none: a dead or stalled server must not hold an acquire.
  static constexpr std::chrono::milliseconds kDefaultPingTimeout{5'000};
  // Longer SQL is run but not kept prepared: generated bulk statements would pin server memory.
  static constexpr std::size_t kMaxCachedSqlSize = 16 * 1024;

  // Takes ownership of conn, a connected handle. stmt_cache_size 0 disables the cache.
  // where (the redacted DSN) names the connection in error messages.
  PostgresConnection(pg_conn* conn, std::size_t stmt_cache_size, std::string where) noexcept;
  ~PostgresConnection() override;

  std::uint64_t execute_params(std::string_view sql, std::span<const Value> params) override;
  ResultSet query_params(std::string_view sql, std::span<const Value> params) override;

  void begin() override;
  // Throws query_failed (SQLSTATE 25P02) when the server answered COMMIT with ROLLBACK because
  // a statement of the transaction had failed.
  void commit() override;
  // A no-op outside a transaction.
  void rollback() override;
  // PQtransactionStatus is "in a transaction" or "in a failed transaction".
  bool in_transaction() const noexcept override;
  bool broken() const noexcept override;

  // Sends an empty query and waits up to timeout (0: kDefaultPingTimeout) for the answer.
  // Throws connection_lost (and marks the connection broken) when that fails or times out.
  void ping(std::chrono::milliseconds timeout) override;
  using Connection::ping;

  // ROLLBACK when a transaction is open, then DISCARD ALL (session settings, temporary tables,
  // prepared statements, cursors, LISTENs, advisory locks, sequence state). The statement
  // cache is emptied with it. Errors as execute().
  void reset() override;

  // The non-blocking form of execute_params / query_params (see reservoir/nonblocking.hpp and
  // PostgresStatementOp): the same protocol choice, statement cache, results and errors. The
  // operation must end (done, thrown or abandoned) or be destroyed before this connection is.
  std::unique_ptr<StatementOp> start_statement(std::string_view sql, std::span<const Value> params,
                                               bool want_rows) override;

  void* native_handle() noexcept override { return conn_; }
  std::string_view driver_name() const noexcept override { return "postgresql"; }

 private:
  struct CachedStatement {
    std::string key;   // SQL text, '\0', one letter per parameter type
    std::string name;  // rsv_<n>
  };
  using CacheList = std::list<CachedStatement>;  // most recently used first

  friend class PostgresStatementOp;  // the non-blocking path: the same steps, other I/O

  // How a statement that is not in the cache runs.
  enum class Route : std::uint8_t {
    script,   // several statements, no parameters: simple protocol
    unnamed,  // the unnamed statement (cache off, or the SQL too long to keep)
    prepare,  // prepared under a fresh name, cached, then executed
  };

  // Runs sql with params; fills *out when set. Returns the affected rows.
  std::uint64_t run(std::string_view sql, std::span<const Value> params, ResultSet* out);
  // Simple protocol, several statements, no parameters.
  std::uint64_t run_script(std::string_view sql, ResultSet* out);
  // Runs a statement without parameters through the simple protocol and checks its result;
  // returns the command tag.
  std::string run_command(const char* sql);

  // --- Steps both paths share (blocking run() and PostgresStatementOp) -------------------
  // Throws connection_lost when broken, invalid_argument for too many parameters or a NUL.
  void check_statement(std::string_view sql, std::span<const Value> params) const;
  bool cacheable(std::string_view sql) const noexcept;
  // For a statement not in the cache. Throws invalid_argument when the placeholders and the
  // parameters do not match.
  Route route(std::string_view sql, std::size_t n_params, bool cacheable) const;
  std::string next_statement_name();
  // Throws the Error for a failed PREPARE.
  void check_prepared(const pg_result* res, std::string_view sql);
  // After a cached statement's execution failed: forgets the statement when the server no
  // longer knows it (26000) or its result columns changed (0A000, queued for DEALLOCATE).
  // True when it should simply be prepared and run again (outside a transaction, first try).
  bool forget_failed_statement(const pg_result* res, const std::string& key, bool hit,
                               bool was_idle, int attempt);
  // Checks res (taking ownership), fills *out, returns the affected rows.
  std::uint64_t finish(pg_result* res, std::string_view sql, ResultSet* out);
  // The results of a script (no COPY among them): the first error, else the total of changed
  // rows and the last statement's rows.
  std::uint64_t finish_script(std::vector<std::unique_ptr<pg_result, pg::ResultDeleter>>& results,
                              std::string_view sql, ResultSet* out);
  // Notices the application's own DISCARD ALL / DEALLOCATE ALL.
  void note_command(pg_result* res) noexcept;

  const std::string* cache_find(const std::string& key) noexcept;
  // Evicting the least recently used statement queues its DEALLOCATE.
  const std::string& cache_insert(const std::string& key, std::string name);
  void cache_erase(const std::string& key, bool deallocate);
  // Queues name for DEALLOCATE; sent when no transaction block is open.
  void deallocate(std::string name);
  // True when DEALLOCATEs are queued and may be sent now (no transaction block open).
  bool can_deallocate() const noexcept;
  static std::string deallocate_sql(const std::string& name);
  // Throws only when the DEALLOCATE failed because the link did.
  void check_deallocated(const pg_result* res, std::string_view sql);
  // Sends the queued DEALLOCATEs now (blocking) when no transaction block is open.
  void run_pending_deallocations();
  // Forgets every cached statement without telling the server (it already forgot them).
  void cache_forget() noexcept;

  void ensure_usable() const;
  // Throws the Error for a failed result (res may be null: libpq could not even send).
  [[noreturn]] void fail(const pg_result* res, std::string_view sql);
  [[noreturn]] void lost(const std::string& what);
  // libpq's last error message on one line (never empty).
  std::string one_line_error() const;
  // Ends a COPY the statement started (the API cannot feed or read it) and throws unsupported.
  [[noreturn]] void abandon_copy(pg_result* res, std::string_view sql);
  [[noreturn]] static void copy_unsupported(std::string_view sql);
  static constexpr const char* kCopyRefusal =
      "COPY FROM STDIN is not supported through reservoir::Connection";

  pg_conn* const conn_;
  const std::size_t cache_capacity_;
  const std::string where_;
  bool broken_ = false;
  CacheList cache_;
  std::unordered_map<std::string_view, CacheList::iterator> cache_index_;  // keys view into cache_
  std::vector<std::string> pending_deallocations_;  // evicted inside a transaction block
  std::uint64_t statement_counter_ = 0;             // names rsv_<n>
  std::string key_scratch_;                         // reused to build cache keys
};

}  // namespace reservoir::drivers
