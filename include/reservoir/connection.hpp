// reservoir/connection.hpp: one database session, the same API for every driver. Drivers
// implement the virtual functions; applications reach a Connection through a Lease.
//
//   auto n = conn.execute("UPDATE items SET price = $1 WHERE id = $2", 9.5, 42);
//   auto rows = conn.query("SELECT id, name FROM items WHERE price < $1", 10.0);
//   {
//     auto tx = conn.transaction();       // BEGIN
//     conn.execute("INSERT INTO log(msg) VALUES ($1)", "hello");
//     tx.commit();                        // rolled back if the scope ends without commit()
//   }
//
// Thread safety: a Connection is used by one thread at a time (the lease holder).
// Parameters are always bound, never spliced into the SQL text. Placeholders are the
// database's own: $1, $2 for PostgreSQL; ? for MariaDB and ODBC; SQLite accepts both.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "reservoir/value.hpp"

namespace reservoir {

class Transaction;
class StatementOp;

class Connection {
 public:
  virtual ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs a statement; returns the number of rows it changed. Errors: query_failed (with the
  // SQLSTATE), connection_lost (the connection is then broken()), invalid_argument (parameter
  // count does not match the placeholders).
  template <class... Args>
  std::uint64_t execute(std::string_view sql, const Args&... args) {
    const std::array<Value, sizeof...(Args)> params{Value(args)...};
    return execute_params(sql, std::span<const Value>(params.data(), params.size()));
  }

  // Runs a query and returns all its rows. Errors as execute().
  template <class... Args>
  ResultSet query(std::string_view sql, const Args&... args) {
    const std::array<Value, sizeof...(Args)> params{Value(args)...};
    return query_params(sql, std::span<const Value>(params.data(), params.size()));
  }

  // Starts a transaction that rolls back unless committed. See reservoir/transaction.hpp.
  Transaction transaction();

  // --- Implemented by drivers -------------------------------------------------------------

  virtual std::uint64_t execute_params(std::string_view sql, std::span<const Value> params) = 0;
  virtual ResultSet query_params(std::string_view sql, std::span<const Value> params) = 0;

  virtual void begin() = 0;
  virtual void commit() = 0;
  virtual void rollback() = 0;

  // True while a transaction is open (explicitly or by a BEGIN sent through execute()).
  virtual bool in_transaction() const noexcept = 0;

  // True once the driver has seen the link to the database fail; the pool then discards the
  // connection instead of reusing it.
  virtual bool broken() const noexcept = 0;

  // A real round trip to the database, given up after timeout (0: the driver's default).
  // Throws connection_lost when it fails or times out (the connection is then broken()).
  virtual void ping(std::chrono::milliseconds timeout) = 0;
  void ping() { ping(std::chrono::milliseconds(0)); }

  // Brings the session back to a fresh state: rollback plus the driver's full session reset.
  virtual void reset() = 0;

  // The non-blocking form of execute_params (want_rows = false) and query_params (true), for the
  // async API; see reservoir/nonblocking.hpp. The operation copies sql and params. nullptr (the
  // default): this driver has no non-blocking path, the async API runs the blocking call on its
  // worker pool instead.
  virtual std::unique_ptr<StatementOp> start_statement(std::string_view sql,
                                                       std::span<const Value> params,
                                                       bool want_rows);
  // The driver's own handle (sqlite3*, PGconn*, MYSQL*, SQLHDBC) for what this API does not cover.
  // Valid while the lease is held; do not close it.
  virtual void* native_handle() noexcept = 0;

  // "sqlite", "postgresql", ...
  virtual std::string_view driver_name() const noexcept = 0;

 protected:
  Connection() = default;
};

}  // namespace reservoir
