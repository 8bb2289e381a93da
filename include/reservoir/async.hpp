// reservoir/async.hpp: the asynchronous API, C++20 coroutines on standalone Asio.
//
//   asio::awaitable<void> handle(std::shared_ptr<reservoir::Pool> pool, std::int64_t id) {
//     reservoir::Lease c = co_await pool->async_acquire();     // waits without a thread
//     auto rows = co_await reservoir::async_query(*c, "SELECT name FROM items WHERE id = $1", id);
//     auto tx = co_await reservoir::AsyncTransaction::begin(*c);
//     co_await reservoir::async_execute(*c, "UPDATE items SET n = n + 1 WHERE id = $1", id);
//     co_await tx.commit();
//   }                                                          // the lease goes back here
//   asio::co_spawn(io, handle(pool, 7), asio::detached);
//
// One pool serves both APIs: async and sync acquirers wait in the same first-come-first-served
// queue under the same get modes, deadlines and statistics (docs/async.md).
//
// Where the work runs:
//   - Waiting for a connection costs no thread: the coroutine is suspended in the pool's queue.
//   - Drivers with a non-blocking path (PostgreSQL through libpq's asynchronous API, MariaDB
//     through Connector/C's non-blocking API) connect and run statements on the coroutine's own
//     executor, waiting for socket readiness through Asio.
//   - The rest (SQLite, ODBC), and the calls that have no non-blocking form (ping, session reset,
//     the session callback, BEGIN/COMMIT of drivers without one), run on a bounded worker pool
//     (async_worker_threads()) and resume the coroutine on its executor when done.
//   - Giving a lease back (its destructor) is synchronous: a connection released inside a
//     transaction is rolled back on the releasing thread, and reset_on_release resets it there.
//
// Cancellation: every operation here supports Asio's per-operation cancellation (cancellation
// slots, e.g. `co_await (pool->async_acquire() || timer.async_wait(use_awaitable))` with
// asio::experimental::awaitable_operators) and the destruction of a suspended coroutine. A
// cancelled acquire leaves the queue at once; a connection handed to it meanwhile goes back to
// the pool; a connect it started is abandoned and its place freed; the counters stay exact.
// A cancelled statement abandons its operation: the connection is then broken() (the pool
// discards it when the lease ends) unless the driver could bring it back to a usable state.
// A cancelled call running on the worker pool finishes there first (blocking calls cannot be
// interrupted); the coroutine then throws. Cancellation throws
// asio::system_error(asio::error::operation_aborted).
//
// GCC 12: do not build an aggregate (AcquireOptions{...}, PoolOptions{...}) inside a co_await
// expression; GCC 12 miscompiles it (the temporary is freed twice). Build it in a statement of
// its own and pass the variable. Strings, Values and other arguments are not affected.
//
// Errors: as the synchronous calls (reservoir::Error with the same codes).
// Thread safety: as the synchronous API. A coroutine may resume on any thread of its executor.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <source_location>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "reservoir/connection.hpp"
#include "reservoir/lease.hpp"
#include "reservoir/options.hpp"
#include "reservoir/pool.hpp"
#include "reservoir/value.hpp"

namespace reservoir {

// Borrows a connection without blocking a thread: acquire()'s semantics (get modes, deadlines,
// tags, classes, users), and the same errors. The pool must outlive the call.
asio::awaitable<Lease> async_acquire(Pool& pool, AcquireOptions options,
                                     std::source_location where = std::source_location::current());

inline auto Pool::async_acquire(std::source_location where) {
  static const AcquireOptions defaults;
  return reservoir::async_acquire(*this, defaults, where);
}
inline auto Pool::async_acquire(const AcquireOptions& options, std::source_location where) {
  return reservoir::async_acquire(*this, options, where);
}

// Creates a pool (Pool::create, which opens min connections) on the worker pool.
asio::awaitable<std::shared_ptr<Pool>> async_create_pool(PoolOptions options);

// Runs the statement; the number of rows it changed. As Connection::execute_params.
asio::awaitable<std::uint64_t> async_execute_params(Connection& conn, std::string sql,
                                                    std::vector<Value> params);
// Runs the query; all its rows. As Connection::query_params.
asio::awaitable<ResultSet> async_query_params(Connection& conn, std::string sql,
                                              std::vector<Value> params);

// As Connection::execute / query, with the parameters bound in order.
template <class... Args>
asio::awaitable<std::uint64_t> async_execute(Connection& conn, std::string sql,
                                             const Args&... args) {
  return async_execute_params(conn, std::move(sql), std::vector<Value>{Value(args)...});
}
template <class... Args>
asio::awaitable<ResultSet> async_query(Connection& conn, std::string sql, const Args&... args) {
  return async_query_params(conn, std::move(sql), std::vector<Value>{Value(args)...});
}

// Connection::ping, Connection::reset, on the worker pool.
asio::awaitable<void> async_ping(Connection& conn,
                                 std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
asio::awaitable<void> async_reset(Connection& conn);

// A transaction begun asynchronously. commit() and rollback() end it; one that is neither
// committed nor rolled back is rolled back when its lease goes back to the pool (a destructor
// cannot co_await), so the next user never sees it open.
class [[nodiscard]] AsyncTransaction {
 public:
  static asio::awaitable<AsyncTransaction> begin(Connection& conn);
  AsyncTransaction(AsyncTransaction&& other) noexcept : conn_(other.conn_) {
    other.conn_ = nullptr;
  }
  AsyncTransaction& operator=(AsyncTransaction&&) = delete;
  AsyncTransaction(const AsyncTransaction&) = delete;
  AsyncTransaction& operator=(const AsyncTransaction&) = delete;

  // Errors as Transaction::commit(); the transaction is finished either way. After the end,
  // invalid_argument.
  asio::awaitable<void> commit();
  asio::awaitable<void> rollback();
  bool active() const noexcept { return conn_ != nullptr; }

 private:
  explicit AsyncTransaction(Connection& conn) noexcept : conn_(&conn) {}
  Connection* conn_;
};

// Runs the pool's maintenance (Pool::run_maintenance) every maintenance_interval on `executor`
// until the pool is closed, for pools created with background_maintenance = false. Spawned
// detached; holds a weak reference, so it ends as well when the pool is destroyed.
void async_maintain(asio::any_io_executor executor, const std::shared_ptr<Pool>& pool);

// The worker pool's size: threads that run blocking calls for the async API (default: 16, or
// twice the cores if more). Effective only before the first async call that needs it; returns
// the size in force. Make it at least the number of connections of SQLite and ODBC pools that
// may wait for each other's locks: a call waiting for a lock holds its worker thread, and the
// holder's next call (its COMMIT) needs a free one.
std::uint32_t async_worker_threads(std::uint32_t threads = 0);

}  // namespace reservoir
