// mariadb_statement_op.cpp: the statement state machine over Connector/C's non-blocking calls,
// sharing the connection's cache, binding, decoding and error mapping with the blocking path.
#include "drivers/mariadb/mariadb_statement_op.hpp"

#include <errmsg.h>
#include <mysql.h>

#include <utility>

#include "drivers/mariadb/mariadb_connection.hpp"
#include "reservoir/error.hpp"

namespace reservoir::drivers {

MariaDbStatementOp::MariaDbStatementOp(MariaDbConnection& conn, std::string_view sql,
                                       std::span<const Value> params, bool want_rows)
    : conn_(conn), sql_(sql), params_(params.begin(), params.end()), want_rows_(want_rows) {}

MariaDbStatementOp::~MariaDbStatementOp() {
  abandon();
  mysql_free_result(res_ret_);  // NULL-safe
}

IoWait MariaDbStatementOp::resume(bool timed_out) {
  if (over_) return {};
  try {
    MYSQL* const m = conn_.mysql_;
    if (wait_.pending()) {
      const int ready = wait_.ready(timed_out);
      if (ready < 0) return wait_.io_wait(m);  // not Connector/C's timeout: wait on
      wait_.set(m, continue_call(ready));
      if (wait_.pending()) return wait_.io_wait(m);
      finished_call();
    } else if (step_ == Step::begin) {
      begin_statement();
    }
    while (step_ != Step::done) {
      wait_.set(m, start_call());
      if (wait_.pending()) return wait_.io_wait(m);
      finished_call();
    }
  } catch (...) {
    wait_.take();
    over_ = true;
    // Rows still on the wire cannot be drained without blocking: the pool drops the connection.
    if (rows_pending_) conn_.broken_ = true;
    release_statement();
    throw;
  }
  over_ = true;
  release_statement();
  if (has_rows_ && want_rows_) result_ = ResultSet(decoder_.take_names(), std::move(rows_), 0);
  return {};
}

void MariaDbStatementOp::abandon() noexcept {
  if (over_) return;
  over_ = true;
  if (step_ == Step::begin) return;  // nothing sent: the connection is as it was
  conn_.broken_ = true;
  const int pending = wait_.take();
  mariadb::abort_exchange(conn_.mysql_, pending,
                          [this](int ready) { return continue_call(ready); });
  release_statement();
}

void MariaDbStatementOp::begin_statement() {
  conn_.ensure_usable();
  stmt_ = conn_.cache_find(sql_);
  hit_ = stmt_ != nullptr;
  owned_ = !conn_.cacheable(sql_);
  if (hit_) {
    bind_and_execute();
    return;
  }
  stmt_ = mysql_stmt_init(conn_.mysql_);
  if (stmt_ == nullptr) conn_.fail(nullptr, sql_);
  owned_ = true;  // ours until prepared and cached
  step_ = Step::prepare;
}

void MariaDbStatementOp::bind_and_execute() {
  mariadb::check_param_count(stmt_, params_.size(), sql_);
  binds_.bind(params_);
  if (!binds_.empty() && mysql_stmt_bind_param(stmt_, binds_.data()) != 0) fail();
  was_idle_ = !conn_.in_transaction();
  step_ = Step::execute;
}

int MariaDbStatementOp::start_call() {
  MYSQL* const m = conn_.mysql_;
  switch (step_) {
    case Step::prepare:
      return mysql_stmt_prepare_start(&int_ret_, stmt_, sql_.data(),
                                      static_cast<unsigned long>(sql_.size()));
    case Step::execute:
      return mysql_stmt_execute_start(&int_ret_, stmt_);
    case Step::fetch:
      return mysql_stmt_fetch_start(&int_ret_, stmt_);
    case Step::next_result:
      mysql_stmt_free_result(stmt_);  // the previous result is read in full: nothing to send
      return mysql_stmt_next_result_start(&int_ret_, stmt_);
    case Step::store_extra:
      return mysql_stmt_store_result_start(&int_ret_, stmt_);
    case Step::text_query:
      return mysql_real_query_start(&int_ret_, m, sql_.data(),
                                    static_cast<unsigned long>(sql_.size()));
    case Step::text_store:
      return mysql_store_result_start(&res_ret_, m);
    case Step::text_next:
      return mysql_next_result_start(&int_ret_, m);
    case Step::begin:
    case Step::done:
      break;
  }
  return 0;
}

int MariaDbStatementOp::continue_call(int ready) {
  MYSQL* const m = conn_.mysql_;
  switch (step_) {
    case Step::prepare:
      return mysql_stmt_prepare_cont(&int_ret_, stmt_, ready);
    case Step::execute:
      return mysql_stmt_execute_cont(&int_ret_, stmt_, ready);
    case Step::fetch:
      return mysql_stmt_fetch_cont(&int_ret_, stmt_, ready);
    case Step::next_result:
      return mysql_stmt_next_result_cont(&int_ret_, stmt_, ready);
    case Step::store_extra:
      return mysql_stmt_store_result_cont(&int_ret_, stmt_, ready);
    case Step::text_query:
      return mysql_real_query_cont(&int_ret_, m, ready);
    case Step::text_store:
      return mysql_store_result_cont(&res_ret_, m, ready);
    case Step::text_next:
      return mysql_next_result_cont(&int_ret_, m, ready);
    case Step::begin:
    case Step::done:
      break;
  }
  return 0;
}

void MariaDbStatementOp::finished_call() {
  switch (step_) {
    case Step::prepare: {
      if (int_ret_ != 0) {
        MYSQL_STMT* const stmt = std::exchange(stmt_, nullptr);
        if (!conn_.prepare_refused(stmt, sql_)) return;  // not reached: it threw
        if (!params_.empty()) mariadb::throw_unpreparable_with_params(sql_);
        step_ = Step::text_query;
        return;
      }
      owned_ = !conn_.cacheable(sql_);
      if (!owned_) conn_.cache_add(sql_, stmt_);
      bind_and_execute();
      return;
    }
    case Step::execute: {
      if (int_ret_ != 0) {
        if (hit_ && mysql_stmt_errno(stmt_) == CR_NEW_STMT_METADATA) {
          MYSQL_STMT* const stmt = std::exchange(stmt_, nullptr);
          const bool may_retry = std::exchange(may_retry_, false);
          if (conn_.stale_may_rerun(stmt, sql_, was_idle_, may_retry)) {
            step_ = Step::begin;
            begin_statement();  // a miss now: prepares afresh
          }
          return;
        }
        fail();
      }
      MYSQL_RES* const meta = mysql_stmt_result_metadata(stmt_);
      if (meta == nullptr) {
        if (mysql_stmt_field_count(stmt_) != 0) fail();
        const my_ulonglong affected = mysql_stmt_affected_rows(stmt_);
        affected_ = mariadb::affected_count(affected);
        result_ = ResultSet({}, {}, affected);
        after_result();
        return;
      }
      rows_pending_ = true;
      has_rows_ = true;
      const bool bound = decoder_.bind(stmt_, meta);
      mysql_free_result(meta);
      if (!bound) fail();
      step_ = Step::fetch;
      return;
    }
    case Step::fetch:
      if (int_ret_ == MYSQL_NO_DATA) {
        rows_pending_ = false;
        after_result();
        return;
      }
      if (int_ret_ == 1) {
        rows_pending_ = false;  // an error ends the result
        fail();
      }
      if (!decoder_.read(stmt_, rows_)) fail();
      return;  // the next row
    case Step::next_result:
      if (int_ret_ > 0) fail();
      if (int_ret_ == 0 && mysql_stmt_field_count(stmt_) > 0) {
        rows_pending_ = true;
        step_ = Step::store_extra;
        return;
      }
      after_result();
      return;
    case Step::store_extra:
      rows_pending_ = false;
      if (int_ret_ != 0) fail();
      after_result();
      return;
    case Step::text_query:
      if (int_ret_ != 0) fail();
      step_ = Step::text_store;
      return;
    case Step::text_store: {
      MYSQL* const m = conn_.mysql_;
      MYSQL_RES* const res = std::exchange(res_ret_, nullptr);
      const bool first = std::exchange(text_first_, false);
      if (res == nullptr) {
        if (mysql_field_count(m) != 0) fail();
        if (first) {
          const my_ulonglong affected = mysql_affected_rows(m);
          affected_ = mariadb::affected_count(affected);
          result_ = ResultSet({}, {}, affected);
        }
      } else {
        // The first result is the statement's; later ones (a CALL's) are dropped.
        if (first) result_ = mariadb::decode_text_result(res);
        mysql_free_result(res);
      }
      step_ = mysql_more_results(m) ? Step::text_next : Step::done;
      return;
    }
    case Step::text_next:
      if (int_ret_ > 0) fail();
      step_ = int_ret_ == 0 ? Step::text_store : Step::done;
      return;
    case Step::begin:
    case Step::done:
      return;
  }
}

void MariaDbStatementOp::after_result() {
  step_ = mysql_stmt_more_results(stmt_) ? Step::next_result : Step::done;
}

void MariaDbStatementOp::release_statement() noexcept {
  MYSQL_STMT* const stmt = std::exchange(stmt_, nullptr);
  if (stmt == nullptr) return;
  if (owned_) {
    mysql_stmt_close(stmt);  // COM_STMT_CLOSE is sent and never answered
  } else {
    mysql_stmt_free_result(stmt);  // read in full (or broken): nothing to send
  }
}

void MariaDbStatementOp::fail() { conn_.fail(stmt_, sql_); }

}  // namespace reservoir::drivers
