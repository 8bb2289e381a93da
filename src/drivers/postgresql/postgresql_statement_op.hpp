// postgresql_statement_op.hpp: one statement on a PostgresConnection through libpq's
// asynchronous API, driven by resume() (reservoir/nonblocking.hpp) instead of a blocked thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "drivers/postgresql/postgresql_codec.hpp"
#include "drivers/postgresql/postgresql_connection.hpp"
#include "reservoir/nonblocking.hpp"
#include "reservoir/value.hpp"

namespace reservoir::drivers {

// What PostgresConnection::run() does, step by step without blocking: the queued DEALLOCATEs,
// the PREPARE of a statement not in the cache (PQsendPrepare), the execution
// (PQsendQueryPrepared; PQsendQueryParams with the cache off; PQsendQuery for a script), the
// transparent re-prepare of a statement the server forgot. Each step sends with PQflush
// (waiting for the socket to be writable, or readable: the server may be talking) and collects
// its results with PQconsumeInput / PQisBusy / PQgetResult (waiting for readable). The socket
// is in libpq's non-blocking mode while the operation runs and back in its earlier mode after.
//
// Results, errors, cache and transaction state are those of the blocking call (the shared steps
// are PostgresConnection's). A lost link throws connection_lost and leaves the connection
// broken(). abandon() while a step is in flight marks the connection broken (the pool discards
// it) and sends the server a cancel request, from a thread of its own so that abandon() never
// waits for it: a backend busy executing would not notice its closed socket, and would go on
// running the statement (holding its locks and a server connection the pool no longer counts)
// until the statement ends. Before the first resume() or after the end it does nothing.
//
// Lifetime: holds a reference to its connection, which must outlive it. Thread safety: one
// thread at a time, and nobody else uses the connection meanwhile.
class PostgresStatementOp final : public StatementOp {
 public:
  PostgresStatementOp(PostgresConnection& conn, std::string_view sql, std::span<const Value> params,
                      bool want_rows);
  ~PostgresStatementOp() override;

  IoWait resume(bool timed_out) override;
  void abandon() noexcept override;
  std::uint64_t affected() const noexcept override { return affected_; }
  ResultSet take_rows() override { return std::move(rows_); }

 private:
  enum class State : std::uint8_t { not_started, running, over };
  // The statement's progress between commands.
  enum class Phase : std::uint8_t {
    lookup,    // find the statement in the cache; prepare it, or run it unprepared
    prepared,  // PREPARE succeeded: execute it
    finish,    // the execution's results are in: decode them or throw
  };
  // What the command in flight does.
  enum class Command : std::uint8_t { deallocate, prepare, execute };
  // Where the command in flight is.
  enum class Io : std::uint8_t {
    idle,      // nothing in flight
    flushing,  // sending: PQflush until 0
    reading,   // collecting results until PQgetResult gives null
    copy_in,   // a COPY FROM STDIN to refuse: PQputCopyEnd
    copy_out,  // a COPY TO STDOUT to drain: PQgetCopyData
  };

  void start();
  // Advances as far as possible; returns the next wait, or done.
  IoWait step();
  // Sends the next command; false when the statement is complete.
  bool send_next();
  void sent(int ok, Command what);
  // The command's results are all in.
  void command_done();
  void complete();
  // The link failed under libpq (PQconsumeInput, PQflush, ... failed): throws connection_lost
  // with what the server or libpq said.
  [[noreturn]] void link_failed();
  // Back to the connection's earlier blocking mode, unless it is broken.
  void restore_mode() noexcept;
  IoWait wait(IoWait::Kind kind) const;

  PostgresConnection& conn_;
  const std::string sql_;
  const std::vector<Value> params_;  // encoded_ points into these
  const bool want_rows_;

  State state_ = State::not_started;
  Phase phase_ = Phase::lookup;
  Command command_ = Command::execute;
  Io io_ = Io::idle;
  int previous_nonblocking_ = 0;

  pg::EncodedParams encoded_;
  std::string key_;  // the cache key; also the NUL-terminated SQL
  bool cacheable_ = false;
  PostgresConnection::Route route_ = PostgresConnection::Route::unnamed;
  bool hit_ = false;
  bool was_idle_ = false;
  int attempt_ = 0;
  std::string name_;         // the prepared statement to execute
  std::string command_sql_;  // the DEALLOCATE in flight, for its error message
  bool copy_seen_ = false;
  std::vector<pg::ResultPtr> results_;  // of the command in flight

  std::uint64_t affected_ = 0;
  ResultSet rows_;
};

}  // namespace reservoir::drivers
