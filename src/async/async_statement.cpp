// src/async/async_statement.cpp: statements, ping, reset and transactions without blocking the
// coroutine's thread: the driver's StatementOp where it has one, the worker pool otherwise.
#include <utility>

#include "async/drive.hpp"
#include "async/worker_pool.hpp"
#include "reservoir/async.hpp"
#include "reservoir/error.hpp"
#include "reservoir/nonblocking.hpp"

namespace reservoir {

namespace {

// Runs one statement: affected rows, and the rows when want_rows.
asio::awaitable<std::pair<std::uint64_t, ResultSet>> run_statement(Connection& conn,
                                                                   const std::string& sql,
                                                                   const std::vector<Value>& params,
                                                                   bool want_rows) {
  const std::span<const Value> p(params.data(), params.size());
  if (std::unique_ptr<StatementOp> op = conn.start_statement(sql, p, want_rows)) {
    co_await async::drive(*op);
    std::pair<std::uint64_t, ResultSet> out{op->affected(), ResultSet{}};
    if (want_rows) out.second = op->take_rows();
    co_return out;
  }
  co_return co_await async::on_worker([&] {
    std::pair<std::uint64_t, ResultSet> out{0, ResultSet{}};
    if (want_rows) {
      out.second = conn.query_params(sql, p);
    } else {
      out.first = conn.execute_params(sql, p);
    }
    return out;
  });
}

// BEGIN, COMMIT or ROLLBACK: as a statement where the driver runs statements without blocking
// (its transaction tracking follows statements, see Connection::in_transaction), else the
// driver's own call on the worker pool.
asio::awaitable<void> run_control(Connection& conn, const char* sql, void (Connection::*call)()) {
  if (std::unique_ptr<StatementOp> op = conn.start_statement(sql, {}, false)) {
    co_await async::drive(*op);
    co_return;
  }
  co_await async::on_worker([&] {
    (conn.*call)();
    return 0;
  });
}

}  // namespace

asio::awaitable<std::uint64_t> async_execute_params(Connection& conn, std::string sql,
                                                    std::vector<Value> params) {
  co_return (co_await run_statement(conn, sql, params, false)).first;
}

asio::awaitable<ResultSet> async_query_params(Connection& conn, std::string sql,
                                              std::vector<Value> params) {
  co_return std::move((co_await run_statement(conn, sql, params, true)).second);
}

asio::awaitable<void> async_ping(Connection& conn, std::chrono::milliseconds timeout) {
  co_await async::on_worker([&] {
    conn.ping(timeout);
    return 0;
  });
}

asio::awaitable<void> async_reset(Connection& conn) {
  co_await async::on_worker([&] {
    conn.reset();
    return 0;
  });
}

asio::awaitable<AsyncTransaction> AsyncTransaction::begin(Connection& conn) {
  co_await run_control(conn, "BEGIN", &Connection::begin);
  co_return AsyncTransaction(conn);
}

asio::awaitable<void> AsyncTransaction::commit() {
  if (conn_ == nullptr)
    throw Error(ErrorCode::invalid_argument,
                "transaction: commit() after the transaction finished");
  // Finished before the call, as Transaction::commit(): a failed COMMIT is not rolled back again.
  Connection& conn = *std::exchange(conn_, nullptr);
  co_await run_control(conn, "COMMIT", &Connection::commit);
}

asio::awaitable<void> AsyncTransaction::rollback() {
  if (conn_ == nullptr)
    throw Error(ErrorCode::invalid_argument,
                "transaction: rollback() after the transaction finished");
  Connection& conn = *std::exchange(conn_, nullptr);
  co_await run_control(conn, "ROLLBACK", &Connection::rollback);
}

}  // namespace reservoir
