// postgresql_statement_op.cpp: the non-blocking statement, a state machine over libpq's
// asynchronous API that runs the same steps as PostgresConnection::run().
#include "drivers/postgresql/postgresql_statement_op.hpp"

#include <libpq-fe.h>

#include <thread>
#include <utility>

#include "reservoir/error.hpp"

namespace reservoir::drivers {

PostgresStatementOp::PostgresStatementOp(PostgresConnection& conn, std::string_view sql,
                                         std::span<const Value> params, bool want_rows)
    : conn_(conn), sql_(sql), params_(params.begin(), params.end()), want_rows_(want_rows) {}

PostgresStatementOp::~PostgresStatementOp() { abandon(); }

std::unique_ptr<StatementOp> PostgresConnection::start_statement(std::string_view sql,
                                                                 std::span<const Value> params,
                                                                 bool want_rows) {
  return std::make_unique<PostgresStatementOp>(*this, sql, params, want_rows);
}

IoWait PostgresStatementOp::resume(bool /*timed_out*/) {
  // No timeout of our own is ever asked for; a wake-up without the socket ready (the caller's
  // timer) costs one look at the socket, which libpq's non-blocking calls make harmless.
  try {
    if (state_ == State::not_started) start();
    return step();
  } catch (...) {
    // Every throw below comes after the command's results were drained (the session is at a
    // command boundary) or from a failed link; anything else must not leave it mid-protocol.
    if (io_ != Io::idle) conn_.broken_ = true;
    state_ = State::over;
    restore_mode();
    throw;
  }
}

void PostgresStatementOp::start() {
  state_ = State::running;
  previous_nonblocking_ = PQisnonblocking(conn_.conn_);
  conn_.check_statement(sql_, params_);
  key_.assign(sql_);
  key_ += '\0';
  pg::encode_params(params_, encoded_, key_);
  cacheable_ = conn_.cacheable(sql_);
  if (PQsetnonblocking(conn_.conn_, 1) != 0) link_failed();
}

IoWait PostgresStatementOp::step() {
  pg_conn* const c = conn_.conn_;
  for (;;) {
    switch (io_) {
      case Io::idle:
        if (!send_next()) {
          complete();
          return IoWait{};
        }
        break;
      case Io::flushing: {
        // libpq's advice: while the send is incomplete wait for either direction, and read
        // what arrives, so that a server blocked on its own output cannot deadlock us.
        if (PQconsumeInput(c) == 0) link_failed();
        const int rc = PQflush(c);
        if (rc < 0) link_failed();
        if (rc > 0) return wait(IoWait::Kind::read_write);
        io_ = Io::reading;
        break;
      }
      case Io::reading: {
        if (PQconsumeInput(c) == 0) link_failed();
        while (io_ == Io::reading && PQisBusy(c) == 0) {
          PGresult* const raw = PQgetResult(c);
          if (raw == nullptr) {
            io_ = Io::idle;
            command_done();
            break;
          }
          pg::ResultPtr res(raw);
          const ExecStatusType status = PQresultStatus(raw);
          if (!pg::is_copy(status)) {
            results_.push_back(std::move(res));
            continue;
          }
          copy_seen_ = true;
          if (status == PGRES_COPY_BOTH) {
            conn_.broken_ = true;  // a replication stream: there is no way back
            io_ = Io::idle;
            PostgresConnection::copy_unsupported(sql_);
          }
          io_ = status == PGRES_COPY_IN ? Io::copy_in : Io::copy_out;
        }
        if (io_ == Io::reading) return wait(IoWait::Kind::read);
        break;
      }
      case Io::copy_in: {
        const int rc = PQputCopyEnd(c, PostgresConnection::kCopyRefusal);
        if (rc < 0) link_failed();
        if (rc == 0) return wait(IoWait::Kind::write);
        io_ = Io::flushing;
        break;
      }
      case Io::copy_out: {
        // The API cannot hand the rows out: read them and throw them away.
        if (PQconsumeInput(c) == 0) link_failed();
        int rc = 0;
        char* buffer = nullptr;
        while ((rc = PQgetCopyData(c, &buffer, 1)) > 0) PQfreemem(buffer);
        if (rc == 0) return wait(IoWait::Kind::read);
        if (rc < -1) link_failed();
        io_ = Io::reading;  // -1: the COPY's own result follows
        break;
      }
    }
  }
}

bool PostgresStatementOp::send_next() {
  pg_conn* const c = conn_.conn_;
  // Queued DEALLOCATEs first, one at a time (each may fail on its own), as run() sends them:
  // before the statement, after a PREPARE evicted one, after a failed execution.
  if (conn_.can_deallocate()) {
    command_sql_ = PostgresConnection::deallocate_sql(conn_.pending_deallocations_.front());
    conn_.pending_deallocations_.erase(conn_.pending_deallocations_.begin());
    sent(PQsendQuery(c, command_sql_.c_str()), Command::deallocate);
    return true;
  }
  const int n = static_cast<int>(params_.size());
  switch (phase_) {
    case Phase::lookup: {
      const std::string* name = cacheable_ ? conn_.cache_find(key_) : nullptr;
      hit_ = name != nullptr;
      if (hit_) {
        name_ = *name;
        break;  // execute it
      }
      route_ = conn_.route(sql_, params_.size(), cacheable_);
      if (route_ == PostgresConnection::Route::script) {
        sent(PQsendQuery(c, key_.c_str()), Command::execute);
      } else if (route_ == PostgresConnection::Route::unnamed) {
        sent(PQsendQueryParams(c, key_.c_str(), n, encoded_.types.data(), encoded_.values.data(),
                               encoded_.lengths.data(), encoded_.formats.data(), 0),
             Command::execute);
      } else {
        name_ = conn_.next_statement_name();
        sent(PQsendPrepare(c, name_.c_str(), key_.c_str(), n, encoded_.types.data()),
             Command::prepare);
      }
      return true;
    }
    case Phase::prepared:
      break;
    case Phase::finish:
      return false;
  }
  was_idle_ = PQtransactionStatus(c) == PQTRANS_IDLE;
  sent(PQsendQueryPrepared(c, name_.c_str(), n, encoded_.values.data(), encoded_.lengths.data(),
                           encoded_.formats.data(), 0),
       Command::execute);
  return true;
}

void PostgresStatementOp::sent(int ok, Command what) {
  // A send that fails leaves nothing in flight; the blocking call's PQexec would have returned
  // null here, and fail() tells a dead link from a refused command as it does there.
  if (ok == 0) conn_.fail(nullptr, what == Command::deallocate ? command_sql_ : sql_);
  results_.clear();
  command_ = what;
  io_ = Io::flushing;
}

void PostgresStatementOp::command_done() {
  // The first error, else the last result: what PQexec would have returned.
  PGresult* pick = nullptr;
  for (const pg::ResultPtr& r : results_) {
    if (!pg::ok_status(PQresultStatus(r.get()))) {
      pick = r.get();
      break;
    }
    pick = r.get();
  }
  switch (command_) {
    case Command::deallocate:
      conn_.check_deallocated(pick, command_sql_);
      return;
    case Command::prepare:
      conn_.check_prepared(pick, sql_);
      name_ = conn_.cache_insert(key_, name_);
      phase_ = Phase::prepared;
      return;
    case Command::execute:
      phase_ = Phase::finish;
      if (copy_seen_ || route_ == PostgresConnection::Route::script || !cacheable_) return;
      if (pick != nullptr && PQresultStatus(pick) == PGRES_FATAL_ERROR) {
        // A statement the server forgot runs again after a fresh PREPARE, as in run(); the
        // DEALLOCATE of a stale one goes first.
        if (conn_.forget_failed_statement(pick, key_, hit_, was_idle_, attempt_)) {
          ++attempt_;
          phase_ = Phase::lookup;
        }
      }
      return;
  }
}

void PostgresStatementOp::complete() {
  state_ = State::over;
  restore_mode();
  if (copy_seen_) PostgresConnection::copy_unsupported(sql_);
  ResultSet* const out = want_rows_ ? &rows_ : nullptr;
  if (route_ == PostgresConnection::Route::script && !hit_) {
    affected_ = conn_.finish_script(results_, sql_, out);
    return;
  }
  PGresult* pick = nullptr;
  std::size_t index = 0;
  for (std::size_t i = 0; i < results_.size(); ++i) {
    index = i;
    pick = results_[i].get();
    if (!pg::ok_status(PQresultStatus(pick))) break;
  }
  if (pick != nullptr) results_[index].release();
  affected_ = conn_.finish(pick, sql_, out);
}

void PostgresStatementOp::link_failed() {
  pg_conn* const c = conn_.conn_;
  // What the server said before it went (a FATAL from pg_terminate_backend carries 57P01) is
  // still in libpq's buffer; with the socket gone PQgetResult does not wait.
  pg::ResultPtr error;
  if (PQstatus(c) == CONNECTION_BAD) {
    for (int i = 0; i < 16; ++i) {
      PGresult* const raw = PQgetResult(c);
      if (raw == nullptr) break;
      if (!error && !pg::ok_status(PQresultStatus(raw))) {
        error.reset(raw);
      } else {
        PQclear(raw);
      }
    }
  }
  io_ = Io::idle;
  if (PQstatus(c) != CONNECTION_BAD) conn_.lost("the link failed: " + conn_.one_line_error());
  conn_.fail(error.get(), command_ == Command::deallocate ? command_sql_ : sql_);
}

void PostgresStatementOp::restore_mode() noexcept {
  if (!conn_.broken()) PQsetnonblocking(conn_.conn_, previous_nonblocking_);
}

void PostgresStatementOp::abandon() noexcept {
  if (state_ != State::running) return;
  state_ = State::over;
  if (io_ != Io::idle) {
    // Mid-protocol: the session cannot be handed to anyone else. It stays in non-blocking
    // mode, so that closing it never waits on a server that is not reading.
    conn_.broken_ = true;
    // And the server stops executing. PQcancel connects to the server: not on this thread.
    if (PGcancel* cancel = PQgetCancel(conn_.conn_)) {
      try {
        std::thread([cancel] {
          char error[256];
          PQcancel(cancel, error, sizeof error);  // best effort: the connection is closed anyway
          PQfreeCancel(cancel);
        }).detach();
      } catch (...) {
        PQfreeCancel(cancel);  // no thread to be had: the backend notices the close later
      }
    }
    return;
  }
  restore_mode();
}

IoWait PostgresStatementOp::wait(IoWait::Kind kind) const {
  return IoWait{kind, PQsocket(conn_.conn_), std::chrono::milliseconds(0)};
}

}  // namespace reservoir::drivers
